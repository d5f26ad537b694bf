#!/usr/bin/env bash
# Install headless Chromium for the report-rendering test and `swarmtwin certify`'s
# report.png: Debian's `chromium` package (a browser a test tool downloads itself is
# not reachable from machines with only package registries). Idempotent: does nothing
# when Chromium (or $SWARMTWIN_CHROMIUM) is already there.
set -euo pipefail
if [[ -n "${SWARMTWIN_CHROMIUM:-}" && -x "${SWARMTWIN_CHROMIUM}" ]]; then exit 0; fi
for name in chromium chromium-browser google-chrome; do
  if command -v "$name" >/dev/null 2>&1; then exit 0; fi
done
if ! command -v apt-get >/dev/null 2>&1; then
  echo "error: Chromium is missing and this is not a Debian-like system: install Chromium" \
       "and set SWARMTWIN_CHROMIUM to its path" >&2
  exit 1
fi
SUDO=""
if [[ "$(id -u)" != 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "error: installing Chromium needs root: run 'apt-get install -y chromium' as root" >&2
    exit 1
  fi
fi
echo "installing Debian's chromium (once; about 20 s)"
export DEBIAN_FRONTEND=noninteractive
if ! $SUDO apt-get install -y --no-install-recommends chromium >/tmp/swarmtwin-apt.log 2>&1; then
  $SUDO apt-get update >>/tmp/swarmtwin-apt.log 2>&1
  $SUDO apt-get install -y --no-install-recommends chromium >>/tmp/swarmtwin-apt.log 2>&1 || {
    echo "error: apt-get install chromium failed; see /tmp/swarmtwin-apt.log" >&2
    exit 1
  }
fi
command -v chromium >/dev/null

#!/usr/bin/env bash
# Install the portal's chart library (uPlot, pinned in harness/portal/web/package-lock.json)
# from npm and copy its two files into harness/portal/static/vendor, where the page loads
# them. Installs node and npm from Debian first when they are missing. Idempotent: does
# nothing when the copied files match the lock file's version.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
web="$root/harness/portal/web"
vendor="$root/harness/portal/static/vendor"
version="$(sed -n 's/.*"uplot": "\(.*\)".*/\1/p' "$web/package.json" | head -n 1)"
if [[ -f "$vendor/VERSION" && "$(cat "$vendor/VERSION")" == "$version" \
      && -f "$vendor/uPlot.iife.min.js" && -f "$vendor/uPlot.min.css" ]]; then
  exit 0
fi
if ! command -v npm >/dev/null 2>&1; then
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: npm is missing and this is not a Debian-like system: install node and npm" >&2
    exit 1
  fi
  echo "installing node and npm (Debian) for the portal's chart library"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null
fi
(cd "$web" && npm ci --no-audit --no-fund --loglevel=error)
mkdir -p "$vendor"
cp "$web/node_modules/uplot/dist/uPlot.iife.min.js" "$web/node_modules/uplot/dist/uPlot.min.css" \
  "$web/node_modules/uplot/LICENSE" "$vendor/"
echo "$version" > "$vendor/VERSION"
echo "portal assets: uPlot $version in $vendor"

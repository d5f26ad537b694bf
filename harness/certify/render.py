"""Render a report's HTML to PNG in headless Chromium.

How it works. ``find_chromium`` looks for ``$SWARMTWIN_CHROMIUM``, then
``chromium``, ``chromium-browser`` and ``google-chrome`` on the PATH
(``make browser`` installs Debian's ``chromium``). ``render_png`` runs it
once, headless, with a fresh profile in a temporary folder, with background
networking, sync and component updates off (the machine may have no
network) and ``--screenshot`` of a tall window, bounded by a timeout.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

CANDIDATES = ("chromium", "chromium-browser", "google-chrome")
FLAGS = (
    "--headless",
    "--no-sandbox",  # we run as root in CI containers; the page is our own file
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)
RENDER_TIMEOUT_S = 60.0


class RenderError(RuntimeError):
    """Chromium is missing or did not produce the picture."""


def find_chromium() -> str | None:
    configured = os.environ.get("SWARMTWIN_CHROMIUM")
    if configured:
        return configured if Path(configured).exists() else None
    return next((path for name in CANDIDATES if (path := shutil.which(name))), None)


def render_png(html: Path, png: Path, width: int = 1200, height: int = 3400) -> Path:
    """Screenshot ``html`` into ``png``; raise ``RenderError`` when it cannot."""
    chromium = find_chromium()
    if chromium is None:
        raise RenderError("no Chromium found: run `make browser` (or set SWARMTWIN_CHROMIUM)")
    with tempfile.TemporaryDirectory(prefix="swarmtwin-chromium-") as profile:
        command = [
            chromium,
            *FLAGS,
            f"--user-data-dir={profile}",
            f"--window-size={width},{height}",
            f"--screenshot={png.resolve()}",
            html.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=RENDER_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise RenderError(f"Chromium did not finish within {RENDER_TIMEOUT_S:g} s") from exc
    if done.returncode != 0 or not png.is_file() or png.stat().st_size == 0:
        tail = (done.stderr or "").strip().splitlines()[-3:]
        raise RenderError(f"Chromium exited {done.returncode}: {' / '.join(tail)}")
    return png

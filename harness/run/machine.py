"""The machine a measurement was taken on, for reports and baselines.

``describe_machine`` reads the host name, the CPU model (``/proc/cpuinfo``
on Linux, ``platform.processor()`` elsewhere), the cores this process may
use, the Python version, the platform and the checkout's git commit (None
outside a git checkout). ``same_machine`` compares the parts that decide
speed (CPU model, cores, Python), not the host name.
"""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SPEED_KEYS = ("cpu_model", "cores", "python")


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None if out.returncode == 0 else None


def git_dirty() -> bool | None:
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def describe_machine() -> dict[str, Any]:
    """Host, CPU, cores, Python, platform and git commit, as JSON-able data."""
    return {
        "host": socket.gethostname(),
        "cpu_model": cpu_model(),
        "cores": usable_cores(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "commit": git_commit(),
        "dirty": git_dirty(),
    }


def same_machine(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    """True when the CPU model, core count and Python version agree."""
    return all(a.get(key) == b.get(key) for key in SPEED_KEYS)


def one_line(machine: Mapping[str, Any]) -> str:
    """``host: CPU model, 2 cores, Python 3.11.7`` for headers."""
    return (
        f"{machine.get('host')}: {machine.get('cpu_model')}, {machine.get('cores')} cores, "
        f"Python {machine.get('python')}"
    )

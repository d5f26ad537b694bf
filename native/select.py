"""Decide at import whether a package runs its mypyc build or its sources.

``protocol/__init__`` and ``sim/__init__`` call ``compiled_dir(__path__[0])``
and put the folder it returns first on their ``__path__``. One manifest
(``build/core/manifest.json``, a SHA-256 per compiled source of both
packages) decides for both at once: the build is used only when it was made
by this Python and no compiled source has changed since, so a stale build
never runs. ``STATE`` records the choice and why, for run notes and the
test report header.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
ENV = "SWARMTWIN_CORE"


@dataclass
class CoreState:
    """Which core this process runs, and why."""

    compiled: bool = False
    reason: str = "not chosen yet"
    modules: tuple[str, ...] = ()  # "protocol/bus.py", ...

    def describe(self) -> str:
        if not self.compiled:
            return f"pure Python ({self.reason})"
        counts: dict[str, int] = {}
        for module in self.modules:
            package = module.split("/")[0]
            counts[package] = counts.get(package, 0) + 1
        parts = ", ".join(f"{n} of {package}/" for package, n in counts.items())
        return f"compiled with mypyc ({parts})"


STATE = CoreState()


def build_root(root: Path) -> Path:
    """Where ``native.build`` puts the compiled packages of the project at ``root``."""
    return root / "build" / "core"


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(root: Path) -> tuple[tuple[str, ...], str]:
    """The compiled modules if the build under ``root`` is usable, else a reason."""
    manifest_path = build_root(root) / MANIFEST
    if not manifest_path.is_file():
        return (), "no compiled build: run `make core`"
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        tag = manifest["cache_tag"]
        sources: dict[str, str] = manifest["sources"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return (), f"unreadable build manifest {manifest_path}: {exc}"
    if tag != sys.implementation.cache_tag:
        return (), f"the build is for {tag}, this is {sys.implementation.cache_tag}"
    for name, digest in sorted(sources.items()):
        path = root / name
        if not path.is_file() or source_hash(path) != digest:
            return (), f"stale build: {name} changed since `make core`"
    return tuple(sorted(sources)), ""


def compiled_dir(package_dir: str | Path) -> str | None:
    """The folder to search first for the package at ``package_dir``, or ``None``."""
    package = Path(package_dir)
    wanted = os.environ.get(ENV, "")
    if wanted not in ("", "pure", "compiled"):
        raise ImportError(f"{ENV}={wanted!r}: expected 'pure' or 'compiled'")
    if wanted == "pure":
        STATE.compiled, STATE.reason, STATE.modules = False, f"{ENV}=pure", ()
        return None
    modules, reason = check(package.parent)
    if not modules:
        if wanted == "compiled":
            raise ImportError(f"{ENV}=compiled, but {reason}")
        STATE.compiled, STATE.reason, STATE.modules = False, reason, ()
        return None
    STATE.compiled, STATE.reason, STATE.modules = True, "", modules
    compiled = build_root(package.parent) / package.name
    return str(compiled) if compiled.is_dir() else None

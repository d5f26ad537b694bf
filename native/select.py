"""Decide at import whether ``protocol`` runs its mypyc build or its sources.

``compiled_dir(source_dir)`` returns the folder of compiled modules to put
first on ``protocol.__path__``, or ``None``; ``STATE`` records the choice
and why, for run notes and the test report header.
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
    modules: tuple[str, ...] = ()

    def describe(self) -> str:
        if self.compiled:
            return f"compiled with mypyc ({len(self.modules)} modules of protocol/)"
        return f"pure Python ({self.reason})"


STATE = CoreState()


def build_dir(source_dir: Path) -> Path:
    """Where ``native.build`` puts the compiled ``protocol`` package."""
    return source_dir.parent / "build" / "core" / "protocol"


def source_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def check(source_dir: Path, compiled: Path) -> tuple[tuple[str, ...], str]:
    """The compiled modules if the build in ``compiled`` is usable, else a reason."""
    manifest_path = compiled / MANIFEST
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
        path = source_dir / name
        if not path.is_file() or source_hash(path) != digest:
            return (), f"stale build: protocol/{name} changed since `make core`"
    return tuple(sorted(sources)), ""


def compiled_dir(source_dir: str | Path) -> str | None:
    """The folder to search first for ``protocol``'s modules, or ``None``."""
    source = Path(source_dir)
    wanted = os.environ.get(ENV, "")
    if wanted not in ("", "pure", "compiled"):
        raise ImportError(f"{ENV}={wanted!r}: expected 'pure' or 'compiled'")
    if wanted == "pure":
        STATE.compiled, STATE.reason, STATE.modules = False, f"{ENV}=pure", ()
        return None
    compiled = build_dir(source)
    modules, reason = check(source, compiled)
    if not modules:
        if wanted == "compiled":
            raise ImportError(f"{ENV}=compiled, but {reason}")
        STATE.compiled, STATE.reason, STATE.modules = False, reason, ()
        return None
    STATE.compiled, STATE.reason, STATE.modules = True, "", modules
    return str(compiled)

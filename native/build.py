"""Compile the hot modules of ``protocol/`` with mypyc: ``python -m native.build``.

The extensions go to ``build/core/protocol/`` (never beside the sources, so a
stale build cannot shadow an edit: ``native.select`` checks the manifest
written here, a SHA-256 per compiled source). The shared runtime library is
named ``protocol.core__mypyc`` so that it is found inside the package.

Not compiled, and why:
- ``__init__``: it chooses between the build and the sources;
- ``messages``: mypyc's dataclasses take a ``ClassVar`` with a value (the wire
  ``TYPE`` code) for a field, and refuse the class;
- ``settings``, ``plan``, ``records``: frozen dataclasses that cross process
  boundaries by pickle, which mypyc's frozen classes do not support.
Exit status 0 on success; on failure the previous build is removed, so the
sources run, and the status is 1.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from native.select import MANIFEST, build_dir, source_hash

ROOT = Path(__file__).resolve().parent.parent
SOURCES = ROOT / "protocol"
NOT_COMPILED = frozenset({"__init__.py", "messages.py", "settings.py", "plan.py", "records.py"})
GROUP = "protocol.core"


def compiled_sources() -> list[Path]:
    return sorted(p for p in SOURCES.glob("*.py") if p.name not in NOT_COMPILED)


def build() -> Path:
    """Compile into a fresh folder, then swap it in and write the manifest."""
    from mypyc.build import mypycify  # imported here: a build-time dependency only
    from setuptools import Distribution

    target = build_dir(SOURCES)
    shutil.rmtree(target, ignore_errors=True)
    sources = compiled_sources()
    work = ROOT / "build" / "core-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    relative = [str(p.relative_to(ROOT)) for p in sources]
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc names modules from paths relative to the working directory
    try:
        extensions = mypycify(relative, group_name=GROUP, target_dir=str(work / "c"))
        dist = Distribution({"name": "swarmtwin-core", "ext_modules": extensions})
        command = dist.get_command_obj("build_ext")
        command.build_lib = str(work / "lib")
        command.build_temp = str(work / "tmp")
        command.ensure_finalized()
        command.run()
    finally:
        os.chdir(cwd)
    built = work / "lib" / "protocol"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(built), str(target))
    manifest = {
        "cache_tag": sys.implementation.cache_tag,
        "sources": {p.name: source_hash(p) for p in sources},
        "seconds": round(time.perf_counter() - start, 1),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return target


def main() -> int:
    try:
        target = build()
    except Exception as exc:  # a missing compiler, headers or mypyc: the sources still run
        shutil.rmtree(build_dir(SOURCES), ignore_errors=True)
        print(f"native.build: compiling protocol/ failed ({exc}); the pure-Python core runs")
        return 1
    count = len(compiled_sources())
    print(f"native.build: {count} modules of protocol/ compiled with mypyc into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

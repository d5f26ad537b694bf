"""Compile the hot modules of ``protocol/`` and ``sim/`` with mypyc:
``python -m native.build``.

The extensions go to ``build/core/<package>/`` (never beside the sources, so
a stale build cannot shadow an edit: ``native.select`` checks the manifest
written here, a SHA-256 per compiled source). The shared runtime library is
named ``protocol.core__mypyc``, so that it is found inside a package.

Not compiled, and why:
- the packages' ``__init__``: they choose between the build and the sources;
- ``protocol/settings``, ``plan``, ``records`` and ``sim/distribution``: frozen
  dataclasses that cross process boundaries by pickle, which mypyc's frozen
  classes do not support;
- the rest of ``sim/`` but the driver: faults, replicas and calibration
  run once per run or per fault, not per message. The driver is compiled:
  it feeds every op and counts every completion (interpreted, those were
  about 10 % of a model run).
On failure the previous build is removed, so the sources run, and the exit
status is 1.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import time
from pathlib import Path

from native.select import MANIFEST, build_root, source_hash

ROOT = Path(__file__).resolve().parent.parent
NOT_COMPILED = frozenset(
    ("protocol/__init__.py", "protocol/settings.py", "protocol/plan.py", "protocol/records.py")
)
SIM_COMPILED = ("sim/engine.py", "sim/nodes.py", "sim/cores.py", "sim/sampler.py", "sim/driver.py")
GROUP = "protocol.core"


def compiled_sources() -> list[str]:
    """Paths relative to the project root, as mypyc names the modules from them."""
    protocol = sorted(f"protocol/{p.name}" for p in (ROOT / "protocol").glob("*.py"))
    return [p for p in protocol if p not in NOT_COMPILED] + list(SIM_COMPILED)


def build() -> Path:
    """Compile into a work folder, then swap the packages in and write the manifest."""
    from mypyc.build import mypycify  # imported here: a build-time dependency only
    from setuptools import Distribution

    target = build_root(ROOT)
    shutil.rmtree(target, ignore_errors=True)
    sources = compiled_sources()
    work = ROOT / "build" / "core-work"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    start = time.perf_counter()
    cwd = os.getcwd()
    os.chdir(ROOT)  # mypyc names modules from paths relative to the working directory
    try:
        extensions = mypycify(sources, group_name=GROUP, target_dir=str(work / "c"))
        dist = Distribution({"name": "swarmtwin-core", "ext_modules": extensions})
        command = dist.get_command_obj("build_ext")
        command.build_lib = str(work / "lib")
        command.build_temp = str(work / "tmp")
        command.ensure_finalized()
        command.run()
    finally:
        os.chdir(cwd)
    target.mkdir(parents=True)
    for package in sorted({source.split("/")[0] for source in sources}):
        shutil.move(str(work / "lib" / package), str(target / package))
    manifest = {
        "cache_tag": sys.implementation.cache_tag,
        "sources": {source: source_hash(ROOT / source) for source in sources},
        "seconds": round(time.perf_counter() - start, 1),
    }
    (target / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    shutil.rmtree(work, ignore_errors=True)
    return target


def main() -> int:
    try:
        target = build()
    except Exception as exc:  # a missing compiler, headers or mypyc: the sources still run
        shutil.rmtree(build_root(ROOT), ignore_errors=True)
        print(f"native.build: compiling failed ({exc}); the pure-Python core runs")
        return 1
    print(f"native.build: {len(compiled_sources())} modules compiled with mypyc into {target}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Build step: a package whose folder has another name (``package-dir``) joins the wheel.

How it works. ``pyproject.toml`` lists the code packages with
``[tool.setuptools.packages.find]``, which finds a package only in a folder
of the same name. The scenarios stay in the top-level ``scenarios/`` folder
(``make run``, the docs and the tests use them there), so ``find`` cannot see
them as ``harness.scenario.files``; ``[tool.setuptools.package-dir]`` maps that
name to the folder and ``[tool.setuptools.package-data]`` names its files.
``[tool.setuptools.cmdclass]`` makes ``BuildPy`` setuptools' ``build_py``:
before the usual set-up it adds every ``package-dir`` entry whose folder
exists and which ``find`` did not list to the distribution's packages. Wheels,
sdists and editable installs all take their files from ``build_py``, so every
one of them carries the scenarios; ``harness.scenario.shipped`` finds them at run time.

Setuptools loads this file by its path while building, before the project is
importable, so it imports nothing from the project.
"""

from __future__ import annotations

from pathlib import Path

from setuptools import Distribution
from setuptools.command.build_py import build_py


def add_mapped_packages(dist: Distribution, root: Path) -> list[str]:
    """Add each ``package_dir`` entry of ``dist`` with a folder under ``root``; return them."""
    packages = list(dist.packages or [])
    added = [
        name
        for name, folder in sorted((dist.package_dir or {}).items())
        if name and name not in packages and (root / folder).is_dir()
    ]
    if added:
        dist.packages = [*packages, *added]
    return added


class BuildPy(build_py):
    """``build_py`` that also builds the packages ``find`` cannot see (see the module doc)."""

    def finalize_options(self) -> None:
        add_mapped_packages(self.distribution, Path(self.distribution.src_root or "."))
        super().finalize_options()

"""The wheel installs anywhere: built, installed in a fresh venv and run from another folder.

How. The checkout's sources are copied to a temporary folder (so no
``build/`` or ``*.egg-info`` lands in the checkout) and built with ``pip
wheel --no-build-isolation --no-index`` (this venv's setuptools; nothing is
downloaded). A new venv, without pip, gets the wheel from this venv's pip
(``pip --python``, ``--no-deps --no-index``); only then does a ``.pth`` line
let it import this venv's dependencies. A ``.pth`` line adds a folder to
``sys.path`` without running the ``.pth`` files in it, so this venv's
editable swarmtwin stays invisible and everything of swarmtwin comes from the
wheel. The commands then run in a folder outside the checkout.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SKIPPED = {"build", "reports", "tests"}  # besides hidden folders and *.egg-info


def _copy_sources(target: Path) -> Path:
    target.mkdir()
    for entry in ROOT.iterdir():
        name = entry.name
        if name.startswith(".") or name in SKIPPED or name.endswith(".egg-info"):
            continue
        if entry.is_dir():
            shutil.copytree(entry, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(entry, target / name)
    return target


def _run(command: list[str | Path], cwd: Path, env: dict[str, str]) -> str:
    proc = subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"{command}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.slow
def test_wheel_installs_and_runs_outside_the_checkout(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH" and not k.startswith("PIP_")}
    env |= {"PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_NO_INPUT": "1"}
    pip = [sys.executable, "-m", "pip"]
    offline = ["-q", "--no-deps", "--no-index"]
    source = _copy_sources(tmp_path / "src")
    wheels = tmp_path / "wheels"
    _run([*pip, "wheel", *offline, "--no-build-isolation", "-w", wheels, source], tmp_path, env)
    (wheel,) = wheels.glob("swarmtwin-*.whl")

    venv = tmp_path / "venv"
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path, env)
    _run([*pip, "--python", python, "install", *offline, wheel], tmp_path, env)
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = Path(_run([python, "-c", purelib], tmp_path, env).strip())
    deps = sorted({sysconfig.get_path("purelib"), sysconfig.get_path("platlib")})
    (site / "swarmtwin-test-deps.pth").write_text("".join(f"{folder}\n" for folder in deps))

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    swarmtwin = venv / "bin" / "swarmtwin"
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert _run([swarmtwin, "--version"], elsewhere, env).strip() == f"swarmtwin {version}"

    modules = "harness", "sim", "harness.certify.run"
    where = f"import {', '.join(modules)}; print({', '.join(f'{m}.__file__' for m in modules)})"
    files = _run([python, "-c", where], elsewhere, env).split()
    assert len(files) == len(modules)
    assert all(Path(file).is_relative_to(site) for file in files), files
    templates = sorted(p.name for p in (ROOT / "harness" / "render" / "templates").glob("*.j2"))
    assert (
        sorted(p.name for p in (site / "harness" / "render" / "templates").glob("*.j2"))
        == templates
    )

    shown = _run([swarmtwin, "check", "scenarios/faults/partition.yaml"], elsewhere, env)
    assert str(site / "harness" / "scenario" / "files" / "faults" / "partition.yaml") in shown

    out = _run(
        [swarmtwin, "run", "smoke", "--backend", "sim", "--duration", "1", "--replications", "1"],
        elsewhere,
        env,
    )
    assert "latency p95" in out
    (run_dir,) = (elsewhere / "reports" / "runs").iterdir()
    notes = json.loads((run_dir / "summary.json").read_text())["backends"]["sim"]["notes"]
    shipped = site / "sim" / "calibrations" / "default.json"
    assert any(note.startswith(f"calibration: {shipped} ") for note in notes), notes

    assert "--require" in _run([swarmtwin, "certify", "--help"], elsewhere, env)

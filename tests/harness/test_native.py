"""The compiled core: when it is used, that it is never stale, and that it agrees
with the pure-Python sources bit for bit on the model."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from importlib.machinery import EXTENSION_SUFFIXES
from pathlib import Path

import pytest

import protocol.bus
import sim.engine
from native.select import ENV, MANIFEST, STATE, build_root, check, compiled_dir

ROOT = Path(__file__).resolve().parents[2]


def fake_build(tmp_path: Path, tag: str | None = None) -> Path:
    """A project with one package of one module, and a build manifest that matches."""
    source = tmp_path / "protocol"
    source.mkdir()
    (source / "bus.py").write_text("x = 1\n")
    compiled = build_root(tmp_path)
    (compiled / "protocol").mkdir(parents=True)
    digest = hashlib.sha256(b"x = 1\n").hexdigest()
    manifest = {
        "cache_tag": tag or sys.implementation.cache_tag,
        "sources": {"protocol/bus.py": digest},
    }
    (compiled / MANIFEST).write_text(json.dumps(manifest))
    return tmp_path


def test_a_fresh_build_is_used(tmp_path: Path) -> None:
    root = fake_build(tmp_path)
    assert check(root) == (("protocol/bus.py",), "")


def test_an_edited_source_makes_the_build_stale(tmp_path: Path) -> None:
    root = fake_build(tmp_path)
    (root / "protocol" / "bus.py").write_text("x = 2\n")
    assert check(root) == ((), "stale build: protocol/bus.py changed since `make core`")


def test_a_build_for_another_python_is_not_used(tmp_path: Path) -> None:
    root = fake_build(tmp_path, tag="cpython-399")
    modules, reason = check(root)
    assert modules == () and "cpython-399" in reason


def test_no_build_says_how_to_make_one(tmp_path: Path) -> None:
    assert check(tmp_path) == ((), "no compiled build: run `make core`")


def test_the_environment_chooses_and_a_bad_value_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = fake_build(tmp_path)
    source = root / "protocol"
    saved = (STATE.compiled, STATE.reason, STATE.modules)
    try:
        monkeypatch.setenv(ENV, "pure")
        assert compiled_dir(source) is None
        monkeypatch.delenv(ENV)
        assert compiled_dir(source) == str(build_root(root) / "protocol")
        assert STATE.describe() == "compiled with mypyc (1 of protocol/)"
        (source / "bus.py").write_text("x = 3\n")
        assert compiled_dir(source) is None and "stale" in STATE.reason
        monkeypatch.setenv(ENV, "compiled")
        with pytest.raises(ImportError, match="stale build"):
            compiled_dir(source)
        monkeypatch.setenv(ENV, "fast")
        with pytest.raises(ImportError, match="expected 'pure' or 'compiled'"):
            compiled_dir(source)
    finally:
        STATE.compiled, STATE.reason, STATE.modules = saved


def test_this_process_runs_the_build_when_there_is_a_fresh_one() -> None:
    modules, reason = check(ROOT)
    if os.environ.get(ENV) == "pure":
        pytest.skip(f"{ENV}=pure")
    if not modules:
        if os.environ.get("CI"):  # CI must test what users run: the compiled core
            pytest.fail(f"CI runs without the compiled core: {reason}")
        pytest.skip(reason)
    assert STATE.compiled
    for module in (protocol.bus, sim.engine):  # extension modules, from the build folder
        origin = module.__spec__.origin
        assert origin is not None and origin.endswith(tuple(EXTENSION_SUFFIXES))
        assert str(build_root(ROOT)) in origin


MODEL_RUN = """
import hashlib, json, sys
from harness.scenario.compile import compile_plan
from harness.run.runner import run_backend
from harness.scenario.schema import load_scenario
from native.select import STATE

scenario = load_scenario(sys.argv[1]).with_overrides(duration=float(sys.argv[2]))
result = run_backend(compile_plan(scenario), "sim", scenario)
digest = hashlib.sha256(repr((result.completions, result.accepted, result.shed, result.probes,
    result.events, result.write_acks, result.end_time, result.status)).encode()).hexdigest()
print(json.dumps({"compiled": STATE.compiled, "digest": digest,
    "completions": len(result.completions), "shed": len(result.shed)}))
"""


def model_run(core: str, scenario: str, duration: float) -> dict[str, object]:
    env = {**os.environ, ENV: core}
    done = subprocess.run(
        [sys.executable, "-c", MODEL_RUN, scenario, str(duration)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=True,
    )
    answer: dict[str, object] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scenario", "duration"),
    [
        ("scenarios/overload.yaml", 1.0),
        ("scenarios/faults/agent-churn.yaml", 4.0),
        ("scenarios/tree-1k.yaml", 1.0),  # a pure core once sent Load.work as an int
    ],
)
def test_the_compiled_and_the_pure_core_give_the_same_model_run(
    scenario: str, duration: float
) -> None:
    modules, reason = check(ROOT)
    if not modules:
        pytest.skip(reason)
    compiled = model_run("compiled", scenario, duration)
    pure = model_run("pure", scenario, duration)
    assert compiled["compiled"] is True and pure["compiled"] is False
    assert compiled["completions"] and compiled == {**pure, "compiled": True}

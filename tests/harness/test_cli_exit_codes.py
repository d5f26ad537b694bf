"""The CLI's one exit-code scheme, command by command, and the options every command shares.

0 success; 1 a target, gate or regression failed; 2 bad input (a scenario,
suite, baseline or argument; argparse's own errors exit 2 too); 3 the run
itself was invalid, or the tool crashed (README.md, "Exit codes").
"""

from __future__ import annotations

import argparse
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from harness import cli
from harness.cli import main, options
from harness.run.folder import read_run
from harness.scenario.schema import load_scenario
from harness.scenario.shipped import resolve
from protocol.records import Completion, DriverResult
from protocol.settings import DEV_TOKEN

TINY = """\
name: tiny
seed: 9
duration: 0.6
warmup: 0.1
agents: {count: 4}
topics: {count: 2, fanout: 2}
workload:
  - kind: direct
    arrival: {process: constant, rate: 200}
"""
INJECTED = "worker-0 failed: injected for the test"


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[tuple[str, argparse.ArgumentParser]]:
    """Every (sub)command's parser, nested ones (``baseline update``) included."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield name, sub
                yield from ((f"{name} {n}", s) for n, s in _subparsers(sub))


def _tiny(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(TINY + extra)
    return path


def _boom(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("boom")


# --------------------------------------------------------------------------- 0


def test_exit_0_on_success(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reports = str(tmp_path / "r")
    assert main(["check", "smoke"]) == 0
    assert main(["--reports", reports, "history"]) == 0
    assert main(["--reports", reports, "run", str(_tiny(tmp_path)), "--backend", "sim"]) == 0
    assert main(["--reports", reports, "history"]) == 0
    assert "tiny" in capsys.readouterr().out


@pytest.mark.parametrize("command", [name for name, _ in _subparsers(cli.build_parser())])
def test_help_of_every_command_exits_0(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        main([*command.split(), "--help"])
    assert done.value.code == 0
    assert "usage: swarmtwin" in capsys.readouterr().out


# --------------------------------------------------------------------------- 1


def test_certify_below_the_required_level_exits_1(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    verdict = SimpleNamespace(level="FAILED", summary="FAILED: score 10.0")
    fake = SimpleNamespace(warnings=[], verdict=verdict, folder=tmp_path)
    monkeypatch.setattr("harness.certify.run.certify", lambda *_a, **_k: fake)
    monkeypatch.setattr("harness.certify.console.render_certification", lambda _c: "")
    args = ["--reports", str(tmp_path), "certify", "--png", "no"]
    assert main([*args, "--require", "PARTIAL"]) == 1
    assert main(args) == 0


# (run --fail-on-targets and regress's 1 are tested in test_cli.py and test_regress.py)


# --------------------------------------------------------------------------- 2

ARGPARSE_ERRORS = [
    ["run", "smoke", "--repetitions", "0"],
    ["run", "smoke", "--duration", "-1"],
    ["run", "smoke", "--seed", "x"],
    ["check"],
    ["validate"],
    ["history", "--limit", "0"],
    ["coordinator", "--port", "70000"],
    ["agents", "--count", "0"],
    ["agents", "--connections", "-1"],
    ["calibrate", "--transport", "udp"],
    ["validate-model", "--replications", "0"],
    ["validate-model", "--repetitions", "101"],
    ["regress"],
    ["regress", "--baseline", "ci", "--alpha", "1"],
    ["regress", "--baseline", "ci", "--repetitions", "x"],
    ["baseline", "update", "x", "--repetitions", "0"],
    ["certify", "--repetitions", "0"],
    ["bench", "--nope"],
]


@pytest.mark.parametrize("argv", ARGPARSE_ERRORS, ids=" ".join)
def test_a_bad_argument_exits_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as refused:
        main(argv)
    assert refused.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_bad_input_files_exit_2(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.yaml")
    reports = ["--reports", str(tmp_path)]
    assert main(["run", missing]) == 2
    assert main(["check", missing]) == 2
    assert main(["validate-model", missing]) == 2
    assert main(["certify", missing]) == 2
    assert main([*reports, "regress", "--baseline", missing]) == 2
    assert main([*reports, "baseline", "update", "../bad-name"]) == 2


def test_a_coordinator_port_in_use_exits_2(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert main(["coordinator", "--port", port, "--db", str(tmp_path / "c.sqlite")]) == 2


def test_agents_rejected_by_the_coordinator_exit_2(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("real.tcp.workers.agents_command", lambda *_a, **_k: 1)
    assert main(["agents", "--token", "wrong"]) == 2


# --------------------------------------------------------------------------- 3

CRASHES = [
    (["run", "smoke", "--backend", "sim"], "harness.run.runner.run_scenario"),
    (["check", "smoke"], "harness.scenario.compile.compile_plan"),
    (["validate", "smoke"], "harness.scenario.compile.compile_plan"),
    (["history"], "harness.run.history.list_runs"),
    (["coordinator"], "real.tcp.server.coordinator_command"),
    (["agents"], "real.tcp.workers.agents_command"),
    (["calibrate"], "harness.calibrate.measure.calibrate"),
    (["validate-model"], "harness.validate.model.validate_model"),
    (["regress", "--baseline", "scenarios/smoke.yaml"], "harness.regress.baseline.read_baseline"),
    (["baseline", "update", "ci"], "harness.regress.update.plan_update"),
    (["certify"], "harness.certify.suite.load_suite"),
    (["bench", "--quick"], "harness.bench.run.main"),
]


@pytest.mark.parametrize(("argv", "target"), CRASHES, ids=[" ".join(a) for a, _ in CRASHES])
def test_a_crash_exits_3_with_a_one_line_error_and_the_traceback(
    argv: list[str],
    target: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])  # for scenarios/smoke.yaml
    monkeypatch.setattr(target, _boom)
    assert main(["--reports", str(tmp_path), *argv]) == 3
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("error: swarmtwin ") and "crashed: RuntimeError: boom" in last


def _failing_real(monkeypatch: pytest.MonkeyPatch, only_call: int | None = None) -> None:
    """Make the inproc driver report an error (on every call, or only on call ``only_call``)."""
    from real.inproc import run as inproc

    original = inproc.run_plan
    calls = []

    def failing(*args: Any, **kwargs: Any) -> DriverResult:
        result = original(*args, **kwargs)
        calls.append(result)
        if only_call is None or len(calls) == only_call:
            result.errors.append(INJECTED)
        return result

    monkeypatch.setattr(inproc, "run_plan", failing)


def test_an_invalid_run_exits_3_and_says_so_everywhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _failing_real(monkeypatch)
    reports = tmp_path / "r"
    scenario = _tiny(tmp_path, "targets:\n  - reliability >= 0.5\n")
    args = ["--reports", str(reports), "run", str(scenario), "--backend", "both"]
    assert main([*args, "--transport", "inproc", "--fail-on-targets"]) == 3  # 3 before 1
    captured = capsys.readouterr()
    assert f"INVALID (real): {INJECTED}" in captured.out
    assert "valid run" in captured.out and "NO" in captured.out
    assert "invalid run" in captured.err and INJECTED in captured.err
    (run_dir,) = list((reports / "runs").iterdir())
    document = json.loads((run_dir / "summary.json").read_text())
    assert document["valid"] is False
    real, sim = document["backends"]["real"], document["backends"]["sim"]
    assert real["valid"] is False and real["invalid_reasons"] == [INJECTED]
    assert sim["valid"] is True and sim["invalid_reasons"] == []
    assert not read_run(run_dir).summaries["real"].valid


def test_one_invalid_repetition_makes_the_run_invalid(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _failing_real(monkeypatch, only_call=2)
    reports = tmp_path / "r"
    args = ["--reports", str(reports), "run", str(_tiny(tmp_path)), "--backend", "real"]
    assert main([*args, "--transport", "inproc", "--repetitions", "2"]) == 3
    (run_dir,) = list((reports / "runs").iterdir())
    real = json.loads((run_dir / "summary.json").read_text())["backends"]["real"]
    assert real["valid"] is False
    assert real["invalid_reasons"] == [f"repetition 2: {INJECTED}"]
    assert [r["valid"] for r in real["repetitions"]] == [True, False]


def _fake_result(valid: bool) -> Any:
    """A driver stand-in: every direct message delivered 1 ms after its scheduled time."""

    def run_backend(plan: Any, backend: str, scenario: Any, *_a: Any, **_k: Any) -> DriverResult:
        result = DriverResult(backend, scenario.transport, end_time=plan.duration)
        result.completions = [
            Completion(op.op_id, op.target, op.at + 0.001, False, True) for op in plan.operations
        ]
        result.registered = {agent.agent_id: 0.0 for agent in plan.agents}
        if not valid and backend == "real":
            result.errors.append(INJECTED)
        return result

    return run_backend


def test_regress_and_baseline_update_refuse_an_invalid_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = _tiny(tmp_path, "backends: [real]\n")
    update = ["--reports", str(tmp_path), "baseline", "update", "t", "--scenario", str(scenario)]
    monkeypatch.setattr("harness.regress.update.run_backend", _fake_result(valid=False))
    assert main([*update, "--repetitions", "4"]) == 3
    assert not (tmp_path / "baselines" / "t.json").exists()
    assert "refused as evidence for a regression baseline" in capsys.readouterr().err

    monkeypatch.setattr("harness.regress.update.run_backend", _fake_result(valid=True))
    assert main([*update, "--repetitions", "4"]) == 0
    monkeypatch.setattr("harness.regress.check.run_backend", _fake_result(valid=False))
    assert main(["--reports", str(tmp_path), "regress", "--baseline", "t"]) == 3
    err = capsys.readouterr().err
    assert "refused as evidence for the regression check" in err and INJECTED in err


def test_certify_refuses_an_invalid_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    monkeypatch.setattr("harness.run.runner.run_backend", _fake_result(valid=False))
    quick = "scenarios/certification/quick/suite.yaml"
    assert main(["--reports", str(tmp_path), "certify", quick, "--png", "no"]) == 3
    err = capsys.readouterr().err
    assert "refused as evidence for certification" in err and INJECTED in err
    assert not (tmp_path / "certifications").exists()
    (run_dir,) = list((tmp_path / "runs").iterdir())  # the run is filed, as invalid
    assert json.loads((run_dir / "summary.json").read_text())["valid"] is False


# --------------------------------------------------------------------------- shared options


def test_reports_is_accepted_after_the_command(tmp_path: Path) -> None:
    before, after = tmp_path / "before", tmp_path / "after"
    scenario = str(_tiny(tmp_path))
    assert main(["run", scenario, "--backend", "sim", "--reports", str(after)]) == 0
    assert len(list((after / "runs").iterdir())) == 1
    assert main(["--reports", str(before), "history", "--reports", str(after)]) == 0
    parser = cli.build_parser()
    assert parser.parse_args(["--reports", "a", "run", "x", "--reports", "b"]).reports == "b"
    assert parser.parse_args(["--reports", "a", "run", "x"]).reports == "a"
    assert parser.parse_args(["run", "x"]).reports == "reports"
    assert parser.parse_args(["baseline", "update", "n", "--reports", "b"]).reports == "b"
    assert not before.exists()


def test_check_is_the_scenario_check_and_validate_a_deprecated_alias(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["check", "smoke"]) == 0
    checked = capsys.readouterr()
    assert checked.out.startswith("ok ") and checked.err == ""
    assert main(["validate", "smoke"]) == 0
    old = capsys.readouterr()
    assert old.out == checked.out
    (notice,) = old.err.strip().splitlines()
    assert "deprecated" in notice and "swarmtwin check" in notice


def test_every_count_option_is_checked_by_the_same_type() -> None:
    seen = []
    for name, sub in _subparsers(cli.build_parser()):
        for action in sub._actions:
            if action.dest in ("repetitions", "replications"):
                assert action.type is options.REPETITIONS, (name, action.dest)
                seen.append(f"{name} --{action.dest}")
    assert len(seen) == 9, seen  # run, locust, validate-model (2 each), regress, baseline update,
    # certify
    for text in ("0", "101", "x", "1.5", "-3"):
        with pytest.raises(argparse.ArgumentTypeError, match="from 1 to 100"):
            options.REPETITIONS(text)
    assert options.REPETITIONS("1") == 1 and options.REPETITIONS("100") == 100


def test_calibrate_defaults_to_the_transport_make_run_uses() -> None:
    default = load_scenario(resolve("scenarios/default.yaml"))
    assert cli.build_parser().parse_args(["calibrate"]).transport == default.transport == "tcp"


@pytest.mark.parametrize("command", ["coordinator", "agents"])
def test_hand_started_commands_explain_every_option_and_its_default(command: str) -> None:
    sub = dict(_subparsers(cli.build_parser()))[command]
    for action in sub._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        assert action.help, action.dest
        assert "default" in action.help, action.dest
    text = sub.format_help()
    for shown in ("127.0.0.1", "7400", DEV_TOKEN):
        assert shown in text.replace("\n", " ").replace("  ", " ")
    if command == "coordinator":
        assert "<reports>/coordinator.sqlite" in text

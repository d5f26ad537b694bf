"""The model's validated range: what the shipped suites sweep, and what leaves it."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness.cli import main
from harness.scenario.schema import load_scenario
from harness.validate.validated import extrapolations, validated_ranges

ROOT = Path(__file__).resolve().parents[2]


def test_the_range_is_read_from_the_shipped_suites() -> None:
    ranges = validated_ranges()
    assert set(ranges) == {"inproc", "tcp"}
    tcp = ranges["tcp"]
    assert tcp.suites == ["scenarios/validation/suite-tcp.yaml"]
    assert (min(tcp.agents), max(tcp.agents)) == (10, 1000)
    assert (min(tcp.sizes), max(tcp.sizes)) == (64, 65536)
    assert (min(tcp.fanouts), max(tcp.fanouts)) == (1, 100)
    assert tcp.kinds == {"publish", "direct", "broadcast", "task", "memory"}  # the default mix
    assert tcp.workers == {2}


def test_the_shipped_default_and_the_suites_own_base_are_inside() -> None:
    for name in ("default.yaml", "validation/base.yaml", "smoke.yaml"):
        assert extrapolations(load_scenario(ROOT / "scenarios" / name)) == [], name


def test_every_way_out_is_named() -> None:
    scenario = load_scenario(ROOT / "scenarios" / "agents-50k.yaml")
    (agents,) = extrapolations(scenario)
    assert agents.startswith("agents.count 50,000: outside the validated 10 to 1,000 agents")
    partition = extrapolations(load_scenario(ROOT / "scenarios" / "faults" / "partition.yaml"))
    assert any(text.startswith("faults: the validation suites run none") for text in partition)
    data = load_scenario(ROOT / "scenarios" / "default.yaml").model_dump(by_alias=True)
    data["agents"]["workers"] = 4
    data["model"] = {"hop_ms": 2.0}
    data["backends"] = ["sim"]
    from harness.scenario.schema import parse_scenario

    found = extrapolations(parse_scenario(data, "test"))
    assert [text.split(":")[0] for text in found] == ["agents.workers 4", "model.hop_ms"]


def test_run_warns_and_records_it_in_the_models_notes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "big.yaml"
    scenario.write_text(
        "name: big\nduration: 0.5\nwarmup: 0.1\nagents: {count: 2000}\ntopics: {fanout: 2}\n"
        "workload:\n  - kind: publish\n    arrival: {process: constant, rate: 20}\n"
    )
    args = ["--reports", str(tmp_path), "run", str(scenario), "--backend", "sim"]
    assert main([*args, "--replications", "1"]) == 0
    err = " ".join(capsys.readouterr().err.split())
    assert "the model extrapolates: agents.count 2,000: outside the validated 10 to 1,000" in err
    (folder,) = (tmp_path / "runs").iterdir()
    import json

    notes = json.loads((folder / "summary.json").read_text())["backends"]["sim"]["notes"]
    assert any(note.startswith("extrapolation: agents.count 2,000") for note in notes)

"""Where the model has been checked against the real system, and where a scenario leaves it.

The model's figures are only known to be as good as the fidelity report says
for configurations the shipped validation suites measure
(``scenarios/validation/suite.yaml`` and ``suite-tcp.yaml``). Outside them a
prediction is an *extrapolation*: it may well be right, but nothing here has
measured that. ``validated_ranges`` reads the suites (the suite files, their
base scenario and their mixes; nothing is compiled, so it is cheap) and
gives, per transport, the range each suite sweeps: agent counts, payload
sizes, fan-out, the kinds of operation, the agent worker layout on tcp.
The suites run without faults and without what-ifs, so a fault or a what-if
is always outside.

``extrapolations(scenario)`` lists, in words a user can act on, every way the
scenario leaves the validated range of its transport. ``swarmtwin run`` and
``certify`` print each as a warning and record it in the model's notes in
``summary.json`` (``harness.run.runner``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from harness.scenario.errors import validate_file
from harness.scenario.schema import Scenario, load_scenario
from harness.scenario.shipped import scenarios_dir
from harness.scenario.source import read_yaml
from harness.validate.suite_file import SuiteFile

SUITES = ("validation/suite.yaml", "validation/suite-tcp.yaml")


@dataclass
class ValidatedRange:
    """What one transport's shipped suites sweep; ``suites`` names them."""

    suites: list[str] = field(default_factory=list)
    agents: list[int] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)
    fanouts: list[int] = field(default_factory=list)
    kinds: set[str] = field(default_factory=set)
    workers: set[int] = field(default_factory=set)
    connections: set[str] = field(default_factory=set)

    def add(self, scenario: Scenario) -> None:
        """Take in a configuration a suite runs (its base or a mix)."""
        self.agents.append(scenario.agents.count)
        self.fanouts.append(scenario.topics.fanout)
        for stream in scenario.workload:
            self.kinds.add(stream.kind)
            self.sizes += [stream.size.min, stream.size.max]
        self.workers.add(scenario.agents.workers)
        self.connections.add(scenario.agents.connections)


@cache
def validated_ranges() -> dict[str, ValidatedRange]:
    """Per transport, the range the shipped suites sweep."""
    ranges: dict[str, ValidatedRange] = {}
    for name in SUITES:
        path = scenarios_dir() / name
        settings = validate_file(SuiteFile, read_yaml(path, str(path)), str(path))
        base = load_scenario(path.parent / settings.base)
        transport = settings.transport or base.transport
        found = ranges.setdefault(transport, ValidatedRange())
        found.suites.append(f"scenarios/{name}")
        found.add(base)
        axes = settings.axes
        found.agents += axes.agents
        found.sizes += axes.size
        found.fanouts += axes.fanout
        for mix in settings.mixes:
            found.add(load_scenario(Path(path.parent / mix.file)))
    return ranges


def extrapolations(scenario: Scenario) -> list[str]:
    """Every way ``scenario`` leaves the range the model was validated on; [] inside."""
    ranges = validated_ranges()
    covered = ranges.get(scenario.transport)
    if covered is None:
        return [f"transport {scenario.transport}: no validation suite runs it"]
    where = " and ".join(covered.suites)
    found = []
    found += _outside("agents.count", [scenario.agents.count], covered.agents, "agents")
    sizes = [size for s in scenario.workload for size in (s.size.min, s.size.max)]
    found += _outside("workload size", sizes, covered.sizes, "B")
    found += _outside("topics.fanout", [scenario.topics.fanout], covered.fanouts, "subscribers")
    kinds = sorted({s.kind for s in scenario.workload} - covered.kinds)
    if kinds:
        found.append(f"workload kind {', '.join(kinds)}: no validation point offers it")
    if scenario.transport == "tcp":
        if scenario.agents.workers not in covered.workers:
            shown = ", ".join(str(n) for n in sorted(covered.workers))
            workers = scenario.agents.workers
            found.append(f"agents.workers {workers}: validated with {shown} worker process(es)")
        if scenario.agents.connections not in covered.connections:
            found.append(f"agents.connections {scenario.agents.connections}: not validated")
    if scenario.faults:
        found.append(
            "faults: the validation suites run none, so recovery, detection and loss "
            "under faults are not validated"
        )
    for name in scenario.model.what_ifs():
        found.append(f"model.{name}: a what-if, which no real run can validate")
    if scenario.topology.tree:
        found.append("topology hierarchical: the validation suites run one coordinator")
    return [f"{text} ({where})" for text in found]


def _outside(name: str, values: list[int], covered: list[int], unit: str) -> list[str]:
    low, high = min(covered), max(covered)
    out = sorted({v for v in values if v < low or v > high})
    if not out:
        return []
    shown = ", ".join(f"{v:,}" for v in out)
    return [f"{name} {shown}: outside the validated {low:,} to {high:,} {unit}"]

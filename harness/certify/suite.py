"""A certification suite file: which scenarios measure which tests, and the targets.

How it works. A suite (``scenarios/certification/suite.yaml``) names four
groups of scenario files, relative to the suite file:

- ``load``: the latency, agents, reliability, uptime, monitoring and
  integrity tests are measured on these runs;
- ``capacity``: throughput, offered well past the target;
- ``recovery``: fault scenarios (crash, kill); recovery and integrity;
- ``resilience``: 1 % loss and a partition; network resilience;
- ``failover`` (optional): a replicated coordinator whose leader is crashed
  under load (a ``consensus`` section and a ``crash_replica`` fault, checked
  here); uptime through the crash, failover time and integrity. A suite without
  it leaves those two tests out, and the report says so.

Each real scenario runs ``repetitions`` times (the model once: it is
deterministic for a seed). ``security`` sets the seed and the number of
fuzzed frames of the security checks. ``targets`` overrides a test's target
by its key (``latency_p95_ms: 20``). Errors name the file and the field and
exit 2 (``ScenarioError``), before anything runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from harness.scenario.errors import did_you_mean, validate_file
from harness.scenario.schema import Scenario, ScenarioError, load_scenario
from harness.scenario.source import read_yaml

GROUPS = ("load", "capacity", "recovery", "resilience", "failover")
DEFAULT_SUITE = "scenarios/certification/suite.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SecuritySettings(_Strict):
    """The security checks: their seed and how many fuzzed frames they send."""

    seed: int = 7
    fuzz_frames: int = Field(default=500, ge=0, le=100_000)


class SuiteFile(_Strict):
    """The suite file's fields (docs/certification.md)."""

    name: str = Field(min_length=1)
    description: str = ""
    repetitions: int = Field(default=3, ge=1, le=100)
    load: list[str] = Field(min_length=1)
    capacity: list[str] = Field(min_length=1)
    recovery: list[str] = Field(min_length=1)
    resilience: list[str] = Field(min_length=1)
    failover: list[str] = Field(default_factory=list)
    security: SecuritySettings = Field(default_factory=SecuritySettings)
    targets: dict[str, float] = Field(default_factory=dict)


@dataclass(frozen=True)
class SuiteScenario:
    """One scenario of a group, loaded, with the file it came from."""

    group: str
    path: Path
    scenario: Scenario


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its settings and every scenario, validated."""

    source: str
    settings: SuiteFile
    scenarios: tuple[SuiteScenario, ...]

    def group(self, name: str) -> list[SuiteScenario]:
        return [s for s in self.scenarios if s.group == name]


def load_suite(
    path: str | Path, targets: dict[str, float] | None = None, known: tuple[str, ...] = ()
) -> Suite:
    """Read and validate a suite; ``targets`` (from ``--targets``) override the file's.

    ``known`` lists the test keys a target may name.
    """
    source = str(path)
    data = read_yaml(Path(path), source)
    if not isinstance(data, dict):
        raise ScenarioError(source, "(file)", "expected a mapping of suite fields")
    settings = validate_file(SuiteFile, data, source)
    merged = {**settings.targets, **(targets or {})}
    _check_target_keys(source, merged, known)
    settings = settings.model_copy(update={"targets": merged})
    scenarios = tuple(
        _load_member(source, Path(path).parent, group, index, name)
        for group in GROUPS
        for index, name in enumerate(getattr(settings, group))
    )
    return Suite(source, settings, scenarios)


def load_targets(path: str | Path, known: tuple[str, ...]) -> dict[str, float]:
    """A ``--targets`` file: a mapping of test key to target value."""
    source = str(path)
    data = read_yaml(Path(path), source)
    if isinstance(data, dict) and "targets" in data:
        data = data["targets"]
    if not isinstance(data, dict):
        raise ScenarioError(source, "targets", "expected a mapping of test key to number")
    for key, value in data.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ScenarioError(source, f"targets.{key}", f"expected a number, got {value!r}")
    _check_target_keys(source, data, known)
    return {str(k): float(v) for k, v in data.items()}


def _check_target_keys(source: str, targets: dict[str, float], known: tuple[str, ...]) -> None:
    for key, value in targets.items():
        if known and key not in known:
            hint = did_you_mean(str(key), known)
            expected = f"expected one of the test keys {', '.join(known)}{hint}"
            raise ScenarioError(source, f"targets.{key}", expected)
        if not value > 0:
            raise ScenarioError(source, f"targets.{key}", f"expected a number > 0, got {value}")


def _load_member(source: str, folder: Path, group: str, index: int, name: str) -> SuiteScenario:
    member = folder / name
    if not member.is_file():
        raise ScenarioError(
            source, f"{group}[{index}]", f"expected a scenario file, {member} is missing"
        )
    scenario = load_scenario(member)
    if group == "failover" and (
        scenario.consensus is None
        or not any(fault.kind == "crash_replica" for fault in scenario.faults)
    ):
        raise ScenarioError(
            source,
            f"{group}[{index}]",
            f"expected a scenario with a consensus section and a crash_replica fault, "
            f"{member} has {'no consensus' if scenario.consensus is None else 'no crash_replica'}",
        )
    return SuiteScenario(group, member, scenario)

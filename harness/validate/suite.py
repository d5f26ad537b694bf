"""``swarmtwin validate-model``: run a sweep of points on both backends.

A suite file (``scenarios/validation/suite.yaml``) names a base scenario and
the axes to sweep. A run goes:

1. **Saturation.** The base scenario is offered ``saturation_factor`` times
   its nominal load, far past what one machine carries, on both backends.
   The system keeps its goodput at capacity under overload, so the
   steady-state delivery rate there is the saturation throughput: measured
   (real) and predicted (sim).
2. **Points.** The ``load`` axis offers each fraction of the *measured*
   saturation throughput. The ``agents``, ``size`` and ``fanout`` axes vary
   one thing of the base scenario each, at ``axis_load`` times the measured
   saturation throughput in deliveries per second.
3. **Real runs** go one after another, ``repetitions`` times each, on a
   quiet machine. **Sim runs** come after them, ``replications`` per point
   with different model seeds (the same plan), spread over worker
   processes; they never overlap a real run, so they cannot steal its CPU.

Each point's figures are aggregated into a mean with a 95 % confidence
interval (``harness.metrics.compare.mean_ci``). ``harness.validate.fidelity`` turns the
points into errors, a report and plots.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from harness.metrics.compare import mean_ci
from harness.metrics.figures import Summary, summarize
from harness.scenario.compile import compile_plan
from harness.scenario.errors import validate_file
from harness.scenario.schema import Scenario, ScenarioError, load_scenario, parse_scenario
from harness.scenario.source import read_yaml

Progress = Callable[[str], None]
COMPARED = ("p50_ms", "p95_ms", "p99_ms", "deliveries_per_s")
KEPT = (*COMPARED, "reliability", "offered_deliveries_per_s")
SEED_STRIDE = 1_000_003  # model seed of replication i: scenario seed + i * stride


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Axes(_Strict):
    """What to sweep. An empty list leaves an axis out."""

    load: list[float] = Field(default=[0.1, 0.25, 0.5, 0.75, 0.9, 1.1, 1.2])
    agents: list[int] = Field(default=[10, 100, 1000])
    size: list[int] = Field(default=[64, 1024, 16384])
    fanout: list[int] = Field(default=[1, 5, 20])


class SuiteFile(_Strict):
    """The suite file's fields (see docs/validation.md)."""

    name: str = Field(min_length=1)
    base: str = Field(min_length=1)
    transport: Literal["inproc", "tcp"] | None = None
    repetitions: int = Field(default=3, ge=1, le=100)
    replications: int = Field(default=3, ge=1, le=100)
    duration: float = Field(default=4.0, gt=0, le=600)
    warmup: float = Field(default=1.0, ge=0)
    saturation_factor: float = Field(default=2.0, gt=1)
    axis_load: float = Field(default=0.5, gt=0, le=1.5)
    axes: Axes = Field(default_factory=Axes)


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its settings and the base scenario, validated."""

    source: str
    settings: SuiteFile
    base: Scenario


@dataclass(frozen=True)
class Point:
    """One configuration to run on both backends."""

    axis: str
    value: float
    scenario: Scenario
    fraction: float  # offered deliveries / measured saturation throughput of the base

    @property
    def label(self) -> str:
        return f"{self.axis}={self.value:g}"


@dataclass
class PointResult:
    """A point's repetitions on each backend."""

    point: Point
    real: list[Summary] = field(default_factory=list)
    sim: list[Summary] = field(default_factory=list)
    refused: list[list[str]] = field(default_factory=list)  # invalid runs' reasons, one each

    def figures(self, backend: str) -> dict[str, dict[str, float | int | None]]:
        """Mean and 95 % CI of each compared figure, plus the offered rate."""
        runs = self.real if backend == "real" else self.sim
        return {name: mean_ci(_values(runs, name)) for name in KEPT}

    def runs(self, backend: str) -> list[dict[str, float | int | None]]:
        """Each repetition's (or replication's) own figures, for re-analysis."""
        runs = self.real if backend == "real" else self.sim
        return [{name: run.figures()[name] for name in KEPT} for run in runs]


def load_suite(path: str | Path, overrides: dict[str, Any] | None = None) -> Suite:
    """Read and validate a suite file; errors name the file and the field (exit 2).

    ``overrides`` (command-line options) replace fields before validation.
    """
    source = str(path)
    data = read_yaml(Path(path), source)
    if isinstance(data, dict) and overrides:
        data = {**data, **overrides}
    settings = validate_file(SuiteFile, data, source)
    if settings.warmup >= settings.duration:
        raise ScenarioError(source, "warmup", f"expected less than duration ({settings.duration})")
    base_path = Path(path).parent / settings.base
    if not base_path.is_file():
        raise ScenarioError(source, "base", f"expected a scenario file, {base_path} is missing")
    base = load_scenario(base_path)
    if base.workload[0].kind != "publish":
        raise ScenarioError(str(base_path), "workload[0].kind", "expected a publish stream")
    changes = {"duration": settings.duration, "warmup": settings.warmup, "repetitions": 1}
    if settings.transport is not None:
        changes["transport"] = settings.transport
    return Suite(source, settings, _variant(base, changes))


def saturation_point(suite: Suite) -> Point:
    """The base scenario at ``saturation_factor`` times its nominal rate."""
    factor = suite.settings.saturation_factor
    rate = _publish_rate(suite.base) * factor
    return Point("saturation", factor, _with_rate(suite.base, rate), fraction=float("nan"))


def sweep_points(suite: Suite, capacity: float) -> list[Point]:
    """Every axis point, with offered load relative to the measured ``capacity``."""
    base, axes = suite.base, suite.settings.axes
    per_publish = deliveries_per_publish(base)
    points = [Point("load", f, _with_rate(base, f * capacity / per_publish), f) for f in axes.load]
    share = suite.settings.axis_load
    for count in axes.agents:
        rooms = max(2, count // 10)
        fanout = min(base.topics.fanout, count)
        changed = _variant(
            base, {"agents": {"count": count}, "topics": {"count": rooms, "fanout": fanout}}
        )
        points.append(_at_share(changed, "agents", count, share, capacity))
    for size in axes.size:
        changed = _variant(base, {"workload": {0: {"size": size}}})
        points.append(_at_share(changed, "size", size, share, capacity))
    for fanout in axes.fanout:
        changed = _variant(base, {"topics": {"fanout": min(fanout, base.agents.count)}})
        points.append(_at_share(changed, "fanout", fanout, share, capacity))
    return points


def deliveries_per_publish(scenario: Scenario) -> float:
    """Expected recipients of one publish (wildcard subscribers included), from the plan."""
    plan = compile_plan(_variant(scenario, {"duration": 1.0, "warmup": 0.0}))
    ops = plan.operations
    return sum(op.expected for op in ops) / max(1, len(ops))


def run_real(point: Point, repetitions: int) -> list[Summary]:
    """``repetitions`` replays of the point's plan on the real system, one at a time."""
    from harness.run.runner import run_backend

    plan = compile_plan(point.scenario)
    return [summarize(plan, run_backend(plan, "real", point.scenario)) for _ in range(repetitions)]


def run_sim(
    points: Sequence[Point], replications: int, workers: int, reports: Path | None = None
) -> list[list[Summary]]:
    """Every point's seeded model replications, spread over ``workers`` processes.

    The model's calibration is picked from ``<reports>/calibrations``
    (``harness.run.runner.run_backend``).
    """
    folder = None if reports is None else str(reports)
    jobs = [
        (point.scenario.model_dump(by_alias=True), i, folder)
        for point in points
        for i in range(replications)
    ]
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        done = list(pool.map(_sim_job, jobs))
    results = [Summary.from_dict(data) for data in done]
    return [results[i * replications : (i + 1) * replications] for i in range(len(points))]


def sim_workers() -> int:
    """Worker processes for the model: every CPU this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _sim_job(job: tuple[dict[str, Any], int, str | None]) -> dict[str, Any]:
    from harness.run.runner import run_backend

    data, replication, folder = job
    scenario = parse_scenario(data, "(validation point)")
    plan = compile_plan(scenario)
    model_plan = dataclasses.replace(plan, seed=plan.seed + replication * SEED_STRIDE)
    reports = None if folder is None else Path(folder)
    result = run_backend(model_plan, "sim", scenario, reports=reports)
    return summarize(plan, result).to_dict(include_timeline=False)


def _at_share(scenario: Scenario, axis: str, value: float, share: float, capacity: float) -> Point:
    rate = share * capacity / deliveries_per_publish(scenario)
    return Point(axis, value, _with_rate(scenario, rate), share)


def _publish_rate(scenario: Scenario) -> float:
    arrival = scenario.workload[0].arrival
    rate = getattr(arrival, "rate", None)
    if rate is None:
        raise ScenarioError(
            "(validation base)", "workload[0].arrival", "expected a constant or poisson rate"
        )
    return float(rate)


def _with_rate(scenario: Scenario, rate: float) -> Scenario:
    arrival = {"process": "poisson", "rate": round(rate, 3)}
    return _variant(scenario, {"workload": {0: {"arrival": arrival}}})


def _variant(scenario: Scenario, changes: dict[str, Any]) -> Scenario:
    """A copy of ``scenario`` with nested ``changes`` merged in, validated again."""
    data = scenario.model_dump(by_alias=True)
    _merge(data, changes)
    return parse_scenario(data, f"(variant of {scenario.name})")


def _merge(data: Any, changes: dict[Any, Any]) -> None:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(data[key], (dict, list)):
            _merge(data[key], value)
        else:
            data[key] = value


def _values(runs: list[Summary], name: str) -> list[float]:
    values = (run.figures()[name] for run in runs)
    return [float(v) for v in values if v is not None]

"""``swarmtwin validate-model``'s suite: what to run on both backends, and at what load.

A suite file (``scenarios/validation/suite.yaml``) names a base scenario, the
axes to sweep around it, and *mixes*: whole scenarios (the default mix of
publish, direct, broadcast, task and memory) to check as they are. Every
configuration the suite names is a *variant*: the base, each axis value (10
agents, 64 KiB payloads, fan-out 1 ...), and each mix. A run goes:

1. **Capacity of the base.** The base is offered ``saturation_factor`` times
   its nominal rate, past what the machine carries. The system keeps its
   goodput under overload (it sheds what it cannot carry), so the
   steady-state delivery rate there is the base's capacity, measured (real)
   and predicted (sim).
2. **Capacity of every other variant**, the same way: each is offered
   ``saturation_factor`` times the larger of the base's measured capacity and
   its own nominal load, in deliveries per second. Every variant therefore
   has a measured and a predicted saturation throughput: the first goal is
   that they agree on every axis.
3. **Points**, each relative to its own variant's *measured* capacity:
   the base at each ``load`` fraction and each ``overload`` multiple; each
   axis variant at ``axis_load``; each mix at its ``load`` fractions and,
   with ``nominal``, at its own rates (the mix exactly as ``swarmtwin run``
   offers it).
4. **Real runs** go one after another, ``repetitions`` times each, on a quiet
   machine. **Sim runs** come after them, ``replications`` per point with
   different model seeds on the same plan, spread over worker processes;
   they never overlap a real run, so they cannot steal its CPU.

A point's figures are the median over its repetitions (or replications),
with the 95 % confidence interval of the mean beside it
(``harness.metrics.compare.repetition_stats``); an invalid real run is
refused and listed, never aggregated. ``harness.validate.fidelity`` turns the
points into errors, goals, a report and plots.

Scaling a scenario to an offered delivery rate multiplies every stream's
rate by one factor (``scale_rates``), so a mix keeps its proportions.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.metrics.compare import repetition_stats
from harness.metrics.figures import Summary, summarize
from harness.scenario.compile import compile_plan
from harness.scenario.errors import validate_file
from harness.scenario.schema import Scenario, ScenarioError, load_scenario, parse_scenario
from harness.scenario.source import read_yaml
from harness.sweep.executor import sweep_executor
from harness.validate.suite_file import Axes, Mix, SuiteFile

if TYPE_CHECKING:
    from sim.calibration import Calibration

Progress = Callable[[str], None]
COMPARED = ("p50_ms", "p95_ms", "p99_ms", "deliveries_per_s")
KEPT = (*COMPARED, "reliability", "offered_deliveries_per_s", "shed_share", "lost")
RATIOS = {"reliability": 1.0, "shed_share": 1.0}  # figures whose interval is clipped to [0, 1]
OFFER_PROBE_SECONDS = 2.0  # how much of a plan is compiled to learn its deliveries per second
BASE = "base"


@dataclass(frozen=True)
class Variant:
    """A configuration whose capacity is measured: the base, an axis value or a mix."""

    name: str  # "base", "agents=10", "default"
    axis: str  # "base", "agents", "size", "fanout" or "mix"
    value: float
    scenario: Scenario
    nominal: float  # the scenario's own offered deliveries per second
    mix: Mix | None = None


@dataclass(frozen=True)
class Suite:
    """A loaded suite: its settings, the base scenario and every variant, validated."""

    source: str
    settings: SuiteFile
    base: Scenario
    variants: tuple[Variant, ...] = ()


@dataclass(frozen=True)
class Point:
    """One configuration at one offered load, to run on both backends.

    ``kind`` is ``capacity`` (offered far past capacity, to measure it),
    ``load`` or ``overload`` (the base at a fraction or multiple of its
    capacity), ``axis`` (an axis variant at ``axis_load``), ``mix`` (a mix at
    a fraction of its capacity) or ``nominal`` (a mix at its own rates).
    ``fraction`` is the offered deliveries over the variant's measured
    capacity (NaN for a capacity point).
    """

    kind: str
    variant: str
    axis: str
    value: float
    scenario: Scenario
    fraction: float

    @property
    def digest(self) -> str:
        """SHA-256 of the point's scenario, every field resolved: the same digest is the
        same point (``validate-model --reuse`` checks it)."""
        text = self.scenario.model_dump_json(by_alias=True)
        return hashlib.sha256(text.encode()).hexdigest()

    @property
    def label(self) -> str:
        if self.kind == "capacity":
            return f"capacity {self.variant}"
        if self.kind == "load":
            return f"load={self.value:g}"
        if self.kind == "overload":
            return f"overload={self.value:g}x"
        if self.kind == "nominal":
            return f"{self.variant} as written"
        if self.kind == "mix":
            return f"{self.variant} at {self.value:g}"
        return self.variant


@dataclass(frozen=True)
class RecordedRun:
    """One run's kept figures as a fidelity report recorded them (``PointResult.runs``),
    standing in for its ``Summary`` when a report's real runs are reused."""

    figures: dict[str, float | int | None]
    infinite: tuple[str, ...] = ()  # the latency percentiles that were infinite

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RecordedRun:
        infinite = tuple(data.get("infinite", ()))
        return cls({name: data.get(name) for name in KEPT}, infinite)


Run = Summary | RecordedRun


@dataclass
class PointResult:
    """A point's runs on each backend; invalid real runs are refused, with their reasons."""

    point: Point
    real: list[Run] = field(default_factory=list)
    sim: list[Run] = field(default_factory=list)
    refused: list[list[str]] = field(default_factory=list)

    def figures(self, backend: str) -> dict[str, dict[str, float | int | None]]:
        """Median, mean and 95 % interval of each kept figure over the runs."""
        runs = self.real if backend == "real" else self.sim
        return {name: repetition_stats(_values(runs, name), RATIOS.get(name)) for name in KEPT}

    def runs(self, backend: str) -> list[dict[str, Any]]:
        """Each repetition's (or replication's) own figures, for re-analysis
        (``validate-model --reuse``); ``infinite`` names the percentiles that were
        infinite (a run that lost its tail), which are None among the figures."""
        runs = self.real if backend == "real" else self.sim
        return [
            {
                **{name: figure(run, name) for name in KEPT},
                "infinite": [name for name in KEPT if name in infinite_figures(run)],
            }
            for run in runs
        ]

    def median(self, backend: str, name: str) -> float | None:
        value = self.figures(backend)[name]["median"]
        return None if value is None else float(value)


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
    base = _read_scenario(Path(path).parent / settings.base, source, "base")
    if base.workload[0].kind != "publish":
        raise ScenarioError(str(settings.base), "workload[0].kind", "expected a publish stream")
    transport = settings.transport or base.transport
    base = _suited(base, settings, transport)
    variants = [Variant(BASE, BASE, 0.0, base, offered_deliveries(base))]
    variants.extend(_axis_variants(base, settings.axes))
    for index, mix in enumerate(settings.mixes):
        where = f"mixes[{index}].file"
        scenario = _read_scenario(Path(path).parent / mix.file, source, where)
        scenario = _suited(scenario, settings, transport)
        if scenario.name in {variant.name for variant in variants}:
            expected = f"a scenario whose name is not already a variant's ({scenario.name!r})"
            raise ScenarioError(source, where, expected)
        offered = offered_deliveries(scenario)
        variants.append(Variant(scenario.name, "mix", 0.0, scenario, offered, mix))
    return Suite(source, settings, base, tuple(variants))


def capacity_point(suite: Suite, variant: Variant, base_capacity: float | None) -> Point:
    """``variant`` offered ``saturation_factor`` times past what it can carry.

    The base is offered that multiple of its nominal rate; every other variant
    that multiple of the larger of its own nominal load and the base's
    measured capacity (``base_capacity``), in deliveries per second.
    """
    factor = suite.settings.saturation_factor
    reference = variant.nominal if base_capacity is None else max(variant.nominal, base_capacity)
    scenario = scale_to(variant.scenario, factor * reference)
    return Point("capacity", variant.name, variant.axis, factor, scenario, math.nan)


def sweep_points(suite: Suite, capacities: dict[str, float]) -> list[Point]:
    """Every point below and past capacity, relative to each variant's measured capacity."""
    settings, axes = suite.settings, suite.settings.axes
    base = suite.variants[0]
    capacity = capacities[BASE]
    points = [
        Point("load", BASE, "load", f, scale_to(base.scenario, f * capacity), f) for f in axes.load
    ]
    points += [
        Point("overload", BASE, "overload", m, scale_to(base.scenario, m * capacity), m)
        for m in axes.overload
    ]
    for variant in suite.variants[1:]:
        own = capacities.get(variant.name)
        if own is None or own <= 0:
            continue  # no valid measurement of its capacity: nothing to place points against
        if variant.mix is None:
            share = settings.axis_load
            scenario = scale_to(variant.scenario, share * own)
            points.append(Point("axis", variant.name, variant.axis, variant.value, scenario, share))
            continue
        for f in variant.mix.load:
            scenario = scale_to(variant.scenario, f * own)
            points.append(Point("mix", variant.name, "mix", f, scenario, f))
        if variant.mix.nominal:
            fraction = variant.nominal / own
            points.append(Point("nominal", variant.name, "mix", 1.0, variant.scenario, fraction))
    return points


def offered_deliveries(scenario: Scenario) -> float:
    """Expected deliveries per second of a scenario: each kind's arrival rate (from its
    streams' arrival processes, exact) times its mean deliveries per op (from a compiled
    stretch of the plan: fan-out, wildcards and broadcasts as the plan has them)."""
    probe = _variant(scenario, {"duration": OFFER_PROBE_SECONDS, "warmup": 0.0, "faults": []})
    per_op: dict[str, list[int]] = {}
    for op in compile_plan(probe).operations:
        per_op.setdefault(op.kind.name.lower(), []).append(op.expected)
    rates: dict[str, float] = {}
    for stream in scenario.workload:
        count = stream.arrival.expected_count(scenario.duration)
        rates[stream.kind] = rates.get(stream.kind, 0.0) + count / scenario.duration
    return sum(
        rate * (sum(per_op[kind]) / len(per_op[kind]))
        for kind, rate in rates.items()
        if per_op.get(kind)
    )


def scale_to(scenario: Scenario, deliveries_per_s: float) -> Scenario:
    """``scenario`` with every stream's rate multiplied so that it offers ``deliveries_per_s``."""
    offered = offered_deliveries(scenario)
    if offered <= 0:
        raise ScenarioError(f"scenario '{scenario.name}'", "workload", "expected a load to scale")
    return scale_rates(scenario, deliveries_per_s / offered)


def scale_rates(scenario: Scenario, factor: float) -> Scenario:
    """Every stream's arrival rate times ``factor`` (constant, Poisson, ramp and steps)."""
    data = scenario.model_dump(by_alias=True)
    for stream in data["workload"]:
        arrival = stream["arrival"]
        for key in ("rate", "from", "to"):
            if arrival.get(key) is not None:
                arrival[key] = round(arrival[key] * factor, 3)
        for step in arrival.get("steps") or ():
            step["rate"] = round(step["rate"] * factor, 3)
    return parse_scenario(data, f"(variant of {scenario.name})")


def run_real(point: Point, repetitions: int) -> list[Summary]:
    """``repetitions`` replays of the point's plan on the real system, one at a time."""
    from harness.run.runner import run_backend

    plan = compile_plan(point.scenario)
    return [summarize(plan, run_backend(plan, "real", point.scenario)) for _ in range(repetitions)]


def run_sim(
    points: Sequence[Point],
    replications: int,
    workers: int,
    reports: Path | None = None,
    calibration: Path | None = None,
    cluster: str | None = None,
) -> list[list[Summary]]:
    """Every point's seeded model replications, spread over ``workers`` local
    processes, or over the Dask cluster at ``cluster`` (``harness.sweep.executor``).

    The model's calibration is the file ``calibration`` when given, else the one
    picked from ``<reports>/calibrations`` (``harness.run.runner.run_backend``),
    read here and sent with each job, so a worker on another host needs no file.
    """
    from sim.calibration import calibrations_dir, load_calibration, read_calibration

    chosen: dict[str, Calibration] = {}
    for point in points:
        transport = point.scenario.transport
        if transport not in chosen:
            if calibration is not None:
                chosen[transport] = read_calibration(calibration)
            else:
                directory = None if reports is None else calibrations_dir(reports)
                chosen[transport] = load_calibration(transport=transport, directory=directory)[0]
    jobs = [
        (point.scenario.model_dump(by_alias=True), i, chosen[point.scenario.transport])
        for point in points
        for i in range(replications)
    ]
    with sweep_executor(cluster, workers) as pool:
        done = list(pool.map(_sim_job, jobs))
    results = [Summary.from_dict(data) for data in done]
    return [results[i * replications : (i + 1) * replications] for i in range(len(points))]


def _sim_job(job: tuple[dict[str, Any], int, Calibration]) -> dict[str, Any]:
    """One model replication of one point, wherever it runs (``run_sim``)."""
    from harness.run.replications import replication_plan
    from harness.run.runner import run_backend

    data, replication, calibration = job
    scenario = parse_scenario(data, "(validation point)")
    plan = compile_plan(scenario)
    model_plan = replication_plan(plan, replication)
    result = run_backend(model_plan, "sim", scenario, calibration=calibration)
    return summarize(plan, result).to_dict(include_timeline=False)


def _read_scenario(path: Path, source: str, field_name: str) -> Scenario:
    if not path.is_file():
        raise ScenarioError(source, field_name, f"expected a scenario file, {path} is missing")
    return load_scenario(path)


def _suited(scenario: Scenario, settings: SuiteFile, transport: str) -> Scenario:
    """The suite's run length and transport, one repetition per run, no faults."""
    changes: dict[str, Any] = {
        "duration": settings.duration,
        "warmup": settings.warmup,
        "repetitions": 1,
        "faults": [],
        "transport": transport,
    }
    return _variant(scenario, changes)


def _axis_variants(base: Scenario, axes: Axes) -> list[Variant]:
    variants = []
    for count in axes.agents:
        rooms = max(2, count // 10)
        fanout = min(base.topics.fanout, count)
        changed = _variant(
            base, {"agents": {"count": count}, "topics": {"count": rooms, "fanout": fanout}}
        )
        variants.append(_axis_variant("agents", count, changed))
    for size in axes.size:
        variants.append(
            _axis_variant("size", size, _variant(base, {"workload": {0: {"size": size}}}))
        )
    for fanout in axes.fanout:
        changed = _variant(base, {"topics": {"fanout": min(fanout, base.agents.count)}})
        variants.append(_axis_variant("fanout", fanout, changed))
    return variants


def _axis_variant(axis: str, value: int, scenario: Scenario) -> Variant:
    return Variant(f"{axis}={value:g}", axis, float(value), scenario, offered_deliveries(scenario))


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


def figure(run: Run, name: str) -> float | int | None:
    """A headline figure of ``run``, or ``shed_share``: the share of the expected
    completions whose op was shed (refused before it was accepted)."""
    if isinstance(run, RecordedRun):
        return run.figures.get(name)
    if name == "shed_share":
        expected = run.reliability.expected
        return run.reliability.shed / expected if expected else None
    return run.figures()[name]


def infinite_figures(run: Run) -> Collection[str]:
    """The figures of ``run`` that are infinite (latency percentiles past its losses)."""
    return run.infinite if isinstance(run, RecordedRun) else run.infinite_figures()


def _values(runs: Sequence[Run], name: str) -> list[float]:
    """A figure over runs; an infinite latency percentile (a run that lost its tail) stays
    in, as infinity, so that the median sees it."""
    values: list[float] = []
    for run in runs:
        value = figure(run, name)
        if value is not None:
            values.append(float(value))
        elif name in infinite_figures(run):
            values.append(math.inf)
    return values

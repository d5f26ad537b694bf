"""The twelve certification tests and how each figure is taken from the runs.

How it works. ``TESTS`` lists each test once: its key, target, direction,
whether it is critical, the group of runs it is measured on and one sentence
on how. ``measure`` turns the runs into one ``Measurement`` per test: one
sample per real repetition (repetition ``i`` of every scenario in the
group), their mean with a 95 % confidence interval (a t interval, clipped to
where the figure can be: not below 0, not above 100 %), and the same figure
computed on the model's run as its prediction. A test passes when the mean
meets the target; a figure that could not be measured fails and says so.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from harness.metrics.compare import mean_ci
from harness.metrics.figures import Summary
from harness.metrics.recovery import outage_recovery_times
from harness.metrics.summary import nearest_rank_percentiles

Direction = Literal[">=", "<="]


@dataclass(frozen=True)
class Criterion:
    """One certification test."""

    key: str
    title: str
    unit: str
    direction: Direction
    target: float
    critical: bool
    group: str  # the runs it is measured on; "security" for the security checks
    method: str

    def passes(self, value: float | None) -> bool:
        if value is None or math.isnan(value):
            return False
        return value >= self.target if self.direction == ">=" else value <= self.target


TESTS: tuple[Criterion, ...] = (
    Criterion(
        "latency_p95_ms",
        "Latency P95",
        "ms",
        "<=",
        10.0,
        True,
        "load",
        "95th percentile of end-to-end latency (scheduled send to each recipient's "
        "handling, nearest rank over exact latencies, an accepted op never completed "
        "counting as infinitely late, corrected for coordinated omission) over each load run's "
        "steady-state window.",
    ),
    Criterion(
        "throughput",
        "Throughput",
        "msg/s",
        ">=",
        100_000.0,
        True,
        "capacity",
        "Deliveries handled by agents per second over the steady-state window, with the "
        "offered load well past the target; every delivery is checksummed and counted once.",
    ),
    Criterion(
        "agents_coordinated",
        "Agents coordinated",
        "agents",
        ">=",
        100.0,
        True,
        "load",
        "Agents registered before the steady-state window that sent or handled a message "
        "in each quarter of it.",
    ),
    Criterion(
        "reliability",
        "Reliability",
        "%",
        ">=",
        99.9,
        True,
        "load",
        "Expected deliveries of the load runs' operations that arrived, each counted once "
        "(from every agent's record log).",
    ),
    Criterion(
        "uptime",
        "Uptime",
        "%",
        ">=",
        99.9,
        True,
        "load",
        "Share of availability probes (a Probe sent every interval over its own "
        "connection) answered within the probe deadline during the load runs.",
    ),
    Criterion(
        "recovery_s",
        "Recovery",
        "s",
        "<=",
        5.0,
        True,
        "recovery",
        "Per repetition, the 95th percentile (nearest rank; with a few faults, the worst) of "
        "the recovery times of every injected fault (coordinator crash, agent kills): from "
        "the fault until throughput and p95 stayed back in the pre-fault band. A fault that "
        "never recovered counts as infinite. The figure is the mean over repetitions.",
    ),
    Criterion(
        "security",
        "Security compliance",
        "%",
        ">=",
        100.0,
        True,
        "security",
        "Share of security checks passed, each run against a live tcp coordinator process: "
        "authentication, malformed and oversized frames, seeded fuzzing, loopback bind and "
        "a flood.",
    ),
    Criterion(
        "data_integrity",
        "Data integrity",
        "%",
        ">=",
        100.0,
        True,
        "integrity",
        "Share of checked items intact: every delivered payload's end-to-end checksum, every "
        "accepted operation delivered, every acknowledged memory write read back from "
        "the store after each coordinator restart, and every key's memory history "
        "linearizable (each request from its submission to its answer on the client).",
    ),
    Criterion(
        "monitoring_coverage",
        "Monitoring coverage",
        "%",
        ">=",
        95.0,
        False,
        "load",
        "Share of components present with a health state and sane metrics in the "
        "coordinator's status reply near the end of each load run: the coordinator's own "
        "(coordinator, bus, tasks, memory, failure detector, journal) and every agent of "
        "the plan that reported for itself (heard from within two heartbeat intervals, "
        "so a hung worker's agents do not count). The server's SQLite does not report yet.",
    ),
    Criterion(
        "failover_uptime",
        "Uptime through a leader crash",
        "%",
        ">=",
        99.9,
        False,
        "failover",
        "Share of availability probes answered within the probe deadline over each failover "
        "run, in which the replicated coordinator's leader is SIGKILLed under load; a probe "
        "refused by a replica that does not lead, or lost with a dead one, is sent again to "
        "the leader named or the next replica while its deadline lasts, as a client would.",
    ),
    Criterion(
        "failover_s",
        "Leader failover",
        "s",
        "<=",
        0.5,
        False,
        "failover",
        "Per repetition, the longest over the failover runs' leader crashes of the time from "
        "the SIGKILL until a memory write issued after it was committed by the replicas "
        "left (first_write_s); a crash after which no write committed counts as infinite.",
    ),
    Criterion(
        "network_resilience",
        "Network resilience",
        "%",
        ">=",
        90.0,
        False,
        "resilience",
        "Share of expected deliveries that arrived in the runs with 1 % frame loss on every "
        "link and with a network partition.",
    ),
)
TEST_KEYS = tuple(spec.key for spec in TESTS)


@dataclass
class ScenarioRuns:
    """One suite scenario's runs: its real repetitions and the model's replications."""

    group: str
    name: str
    run_dir: Path
    real: list[Summary]
    sim: list[Summary] = field(default_factory=list)


@dataclass
class Measurement:
    """One test's figure, its interval, the model's prediction and the verdict."""

    spec: Criterion
    samples: list[float | None]
    value: float | None
    ci_low: float | None
    ci_high: float | None
    model: float | None
    passed: bool
    score: float = 0.0
    model_low: float | None = None  # 95 % interval over the model's seeded replications
    model_high: float | None = None
    runs: list[Path] = field(default_factory=list)
    detail: str = ""

    @property
    def borderline(self) -> bool:
        """True when the 95 % interval straddles the target."""
        low, high, target = self.ci_low, self.ci_high, self.spec.target
        return low is not None and high is not None and low < target < high


Extract = Callable[[Sequence[Summary]], float | None]


def _mean_of(name: str, scale: float = 1.0) -> Extract:
    def extract(runs: Sequence[Summary]) -> float | None:
        values = [runs_value(run, name) for run in runs]
        if not values or any(v is None for v in values):
            return None
        return scale * math.fsum(v for v in values if v is not None) / len(values)

    return extract


def runs_value(run: Summary, name: str) -> float | None:
    value = run.figures().get(name)
    return None if value is None else float(value)


def recovery_p95(runs: Sequence[Summary]) -> float | None:
    """p95 (nearest rank) of every outage's recovery time (a lone fault, or a group
    of overlapping faults measured as one: ``harness.metrics.recovery``); never
    recovered = infinite."""
    times = [t for run in runs for t in outage_recovery_times(run.faults.faults)]
    if not times:
        return None
    return float(nearest_rank_percentiles(times, (95.0,))[0])


def integrity_percent(runs: Sequence[Summary]) -> float | None:
    """Intact share of checksummed deliveries, accepted ops, acknowledged writes and
    keys whose memory history is linearizable."""
    checked = bad = 0
    for run in runs:
        rel, writes = run.reliability, run.integrity
        checked += rel.unique + rel.expected + writes.acked_writes_checked
        checked += writes.history_keys
        bad += rel.corrupted + rel.lost_acked + writes.acked_writes_lost
        bad += writes.keys_failing
    if checked == 0:
        return None
    return 100.0 * (checked - bad) / checked


def failover_worst(runs: Sequence[Summary]) -> float | None:
    """The longest time from a replica crash to the first write committed after it
    (``FaultRecovery.first_write_s``) over ``runs``; none committed = infinite."""
    times = [
        math.inf if row.first_write_s is None else row.first_write_s
        for run in runs
        for row in run.faults.faults
        if row.kind == "crash_replica"
    ]
    return max(times) if times else None


EXTRACTORS: dict[str, Extract] = {
    "latency_p95_ms": _mean_of("p95_ms"),
    "throughput": _mean_of("deliveries_per_s"),
    "agents_coordinated": _mean_of("agents_coordinated"),
    "reliability": _mean_of("reliability", 100.0),
    "uptime": _mean_of("uptime", 100.0),
    "recovery_s": recovery_p95,
    "data_integrity": integrity_percent,
    "monitoring_coverage": _mean_of("monitoring_coverage"),
    "network_resilience": _mean_of("reliability", 100.0),
    "failover_uptime": _mean_of("uptime", 100.0),
    "failover_s": failover_worst,
}
INTEGRITY_GROUPS = ("load", "recovery", "failover")


def with_targets(targets: dict[str, float]) -> tuple[Criterion, ...]:
    """The tests with the suite's target overrides applied."""
    return tuple(replace(s, target=targets.get(s.key, s.target)) for s in TESTS)


def measure(spec: Criterion, runs: list[ScenarioRuns]) -> Measurement:
    """One test's figure from the runs of its group (not the security test)."""
    groups = INTEGRITY_GROUPS if spec.group == "integrity" else (spec.group,)
    chosen = [r for r in runs if r.group in groups]
    extract = EXTRACTORS[spec.key]
    count = min((len(r.real) for r in chosen), default=0)
    samples = [extract([r.real[i] for r in chosen]) for i in range(count)]
    replications = min((len(r.sim) for r in chosen), default=0)
    predicted = [extract([r.sim[i] for r in chosen]) for i in range(replications)]
    return finish(spec, samples, [r.run_dir for r in chosen], predicted)


def finish(
    spec: Criterion,
    samples: list[float | None],
    run_dirs: list[Path],
    predicted: list[float | None] | None = None,
) -> Measurement:
    """Aggregate the real samples, and the model's replications (``predicted``, one
    figure per replication), each into its mean and 95 % interval; judge the real one."""
    value, low, high = _mean_interval(spec, samples)
    model, model_low, model_high = _mean_interval(spec, predicted or [])
    return Measurement(
        spec,
        samples,
        value,
        low,
        high,
        model,
        spec.passes(value),
        runs=run_dirs,
        model_low=model_low,
        model_high=model_high,
    )


def _mean_interval(
    spec: Criterion, samples: list[float | None]
) -> tuple[float | None, float | None, float | None]:
    """The mean and its 95 % interval (clamped to where the figure can be); None when a
    sample is missing, and the largest with no interval when one is infinite."""
    known = [s for s in samples if s is not None]
    if not samples or len(known) < len(samples):
        return None, None, None
    if any(math.isinf(s) for s in known):
        return max(known), None, None
    stats = mean_ci(known)
    low, high = _clamp(spec, _f(stats["ci_low"])), _clamp(spec, _f(stats["ci_high"]))
    return _f(stats["mean"]), low, high


def _f(value: float | int | None) -> float | None:
    return None if value is None else float(value)


def _clamp(spec: Criterion, bound: float | None) -> float | None:
    """Keep an interval's bound where the figure can be: not below 0, not above 100 %."""
    if bound is None:
        return None
    return min(max(bound, 0.0), 100.0) if spec.unit == "%" else max(bound, 0.0)

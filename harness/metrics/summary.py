"""The figures of one run on one backend: ``Summary`` and its sections.

Plain dataclasses, filled in by ``harness.metrics.figures.summarize``.
``Summary.to_dict()`` gives JSON-able data and ``Summary.from_dict`` reads it
back (summaries written before a section existed read back with it empty);
``Summary.figures()`` flattens the headline figures (``p95_ms``,
``deliveries_per_s``, ``reliability`` ...) for comparison, thresholds, tables
and history. ``faults`` holds one row per injected fault and aggregates per
kind (``harness.metrics.recovery``; empty for a run without faults),
``integrity`` the check of acknowledged writes against restarted stores, and
``monitoring`` the coverage of the coordinator's status snapshot
(``harness.metrics.monitoring``), and ``tasks`` the makespan and, in a tree,
the steals and each coordinator's figures (``harness.metrics.tasks``), and
``spawn`` how long agents took from being started to being registered
(``harness.metrics.spawn``).
The encoded HDR histograms live in ``Summary.histograms``, not in
``to_dict()``; the run folder stores them as ``.hdr`` files.

Percentiles are nearest-rank (``nearest_rank_percentiles``, the one
implementation): the value at rank ``ceil(p / 100 * n)`` of the ``n`` sorted
values, never interpolated or bucketed. An expected completion that never
arrived counts as infinitely late in the latency sample, so a latency
percentile can be ``math.inf``. JSON has no infinity, so the
representations are:

- in ``LatencyFigures`` and ``KindLatency``: ``math.inf``, with ``incomplete``
  counting the missing completions;
- in ``to_dict()`` (``summary.json``): null. ``from_dict`` reads it back as
  ``math.inf``, since a percentile of a non-empty sample
  (``count + incomplete > 0``) always exists: null there can only mean
  infinite;
- in ``figures()``: None, as for any figure without a finite value, so
  comparison, history, regression and certification code that does
  arithmetic on figures never meets an infinity (a missing figure already
  fails its target and a checked regression figure). ``infinite_figures()``
  names the figures that are None because they are infinite, for tables and
  targets to show.

``Reliability.overloaded`` is the overload verdict: the run shed ops
(admission control) or delivered less than ``OVERLOAD_DELIVERED_PERCENT`` %
of the completions of the work it accepted (``expected - shed``).

Validity is a separate verdict: ``Summary.invalid_reasons`` says why the run
itself went wrong (``harness.metrics.figures.invalid_reasons`` decides it
from the driver's ``DriverResult.errors``), and ``Summary.valid`` is True
when there is no reason. An invalid run still has figures, for diagnosis,
but they are not evidence: ``require_valid`` raises ``InvalidRunError``
where a run would be used as evidence (regression checks, baselines,
certification), and ``swarmtwin run`` exits 3. ``to_dict()`` writes both
``valid`` and ``invalid_reasons``; a summary written before they existed
reads back as valid.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from fractions import Fraction
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

Figure = float | int | None
FloatArray = npt.NDArray[np.float64]

PERCENTILE_FIGURES: tuple[str, ...] = ("p50_ms", "p95_ms", "p99_ms", "p999_ms")
MISSED_SHOWN = 20  # late or unanswered probes listed in summary.json
OVERLOAD_DELIVERED_PERCENT = 97  # delivering less of the accepted completions is overload


def _rank(percent: float, n: int) -> int:
    """The 1-based nearest rank ``ceil(percent / 100 * n)``, at least 1.

    ``percent`` is taken as written in decimal (``Fraction(str(percent))``):
    in binary floating point ``99.9 / 100 * 3000`` is ``2997.0000000000005``,
    which would round up to the wrong rank.
    """
    exact = Fraction(str(float(percent)))
    if not 0 <= exact <= 100:
        raise ValueError(f"a percentile must be between 0 and 100, got {percent}")
    return max(1, math.ceil(exact * n / 100))


def nearest_rank_percentiles(values: npt.ArrayLike, percents: Sequence[float]) -> FloatArray:
    """Nearest-rank percentiles of ``values``, one per entry of ``percents``.

    Each is the value at 1-based rank ``ceil(p / 100 * n)`` of the ``n``
    sorted values (rank 1 for ``p = 0``): always one of the values, chosen
    exactly with ``np.partition``. ``+inf`` values sort last, so a
    percentile whose rank lands on one is ``inf``. Raises ``ValueError`` for
    no values, a NaN, or a percent outside ``[0, 100]``.
    """
    sample = np.asarray(values, dtype=np.float64).ravel()
    if len(sample) == 0:
        raise ValueError("a percentile of no values is undefined")
    if bool(np.isnan(sample).any()):
        raise ValueError("values must not contain NaN")
    index = np.array([_rank(p, len(sample)) - 1 for p in percents], dtype=np.int64)
    if len(index) == 0:
        return np.empty(0, dtype=np.float64)
    chosen: FloatArray = np.partition(sample, np.unique(index))[index]
    return chosen


@dataclass(slots=True)
class LatencyFigures:
    """Latency over the steady-state window, in milliseconds.

    ``count`` latencies were measured; ``incomplete`` more expected
    completions of ops scheduled in the window never arrived (ops that were
    shed, or whose origin was down, are owed none). The percentiles are
    nearest-rank over those ``count + incomplete`` values, each missing one
    counting as infinitely late: a percentile whose rank lands on one is
    ``math.inf`` (more than 5 % missing makes p95 infinite). ``max_ms`` and
    ``mean_ms`` are over the measured latencies only (None without any).
    """

    count: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    p999_ms: float | None = None
    max_ms: float | None = None
    mean_ms: float | None = None
    incomplete: int = 0


@dataclass(slots=True)
class KindLatency:
    """Latency of one operation kind over the steady-state window (as ``LatencyFigures``)."""

    count: int = 0
    p50_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    incomplete: int = 0


_Latency = TypeVar("_Latency", LatencyFigures, KindLatency)


def _latency_to_json(data: dict[str, Any]) -> dict[str, Any]:
    """``asdict`` output of a latency section with every infinite percentile as None."""
    return {k: None if isinstance(v, float) and math.isinf(v) else v for k, v in data.items()}


def _latency_from_json(cls: type[_Latency], data: Mapping[str, Any]) -> _Latency:
    """A latency section from ``summary.json``: null percentiles of a sample are infinite."""
    section = cls(**data)
    if section.count + section.incomplete > 0:
        for item in fields(section):
            if item.name in PERCENTILE_FIGURES and getattr(section, item.name) is None:
                setattr(section, item.name, math.inf)
    return section


def _finite(value: float | None) -> float | None:
    return None if value is None or math.isinf(value) else value


@dataclass(slots=True)
class Throughput:
    """Rates over the steady-state window, with the counts they came from."""

    window_s: float = 0.0
    deliveries: int = 0
    ops_completed: int = 0
    completions: int = 0
    offered_ops: int = 0
    offered_deliveries: int = 0
    deliveries_per_s: float = 0.0
    ops_per_s: float = 0.0
    completions_per_s: float = 0.0
    offered_ops_per_s: float = 0.0
    offered_deliveries_per_s: float = 0.0


@dataclass(slots=True)
class Reliability:
    """Unique, lost, duplicated and corrupted completions over the whole plan.

    ``excess`` counts unique completions beyond an op's ``expected`` (a
    delivery to a node that should not have received it); ``unknown_op``
    counts records naming an op id that is not in the plan. ``lost`` splits
    into ``lost_acked`` (the origin saw the op accepted, or its memory reply),
    ``lost_origin_down`` (the origin was killed or paused when the op was due,
    so it was never sent) and ``lost_unaccepted`` (the rest); all three count
    expected completions, like ``lost``.

    ``shed_ops`` are ops their origin gave up before the coordinator accepted
    them (admission control under overload; ``DriverResult.shed``) that were
    not accepted after all and completed nowhere; ``shed`` counts their
    expected completions. Shed work is neither delivered nor lost: ``lost``
    and its split leave it out, and ``reliability`` is delivered over
    ``expected - shed``, the accepted work. ``overloaded`` is True when the
    run shed any op or delivered less than ``OVERLOAD_DELIVERED_PERCENT`` %
    of ``expected - shed``.
    """

    expected: int = 0
    unique: int = 0
    lost: int = 0
    duplicates: int = 0
    suppressed_duplicates: int = 0
    handler_duplicates: int = 0
    excess: int = 0
    unknown_op: int = 0
    corrupted: int = 0
    reliability: float = 1.0
    data_integrity: float = 1.0
    lost_acked: int = 0
    lost_unaccepted: int = 0
    lost_origin_down: int = 0
    shed_ops: int = 0
    shed: int = 0
    overloaded: bool = False


@dataclass(slots=True)
class Availability:
    """Availability probes: answered in time, late, or never."""

    probes: int = 0
    on_time: int = 0
    late: int = 0
    unanswered: int = 0
    deadline_s: float = 0.0
    uptime: float | None = None
    missed: list[list[float | None]] = field(default_factory=list)
    """The first ``MISSED_SHOWN`` probes not answered in time, as ``[sent, delay]``
    (run seconds; delay None if never answered): when the system was unavailable."""


@dataclass(slots=True)
class Agents:
    """Registered agents and those coordinated during the window."""

    registered: int = 0
    registered_before_window: int = 0
    coordinated: int = 0


@dataclass(slots=True)
class TimelineBin:
    """One 100 ms bin starting at ``t`` seconds."""

    t: float
    deliveries: int
    completions: int
    p95_ms: float | None
    offered: int


@dataclass(slots=True)
class Resource:
    """Resource use of one process: MiB of peak RSS, CPU seconds, and the seconds it
    was ready to run but waited for a core (None: not measured, as in the model)."""

    name: str
    peak_rss_mb: float
    cpu_seconds: float
    cpu_wait_seconds: float | None = None


@dataclass(slots=True)
class WriteIntegrity:
    """Acknowledged memory writes checked against the store a coordinator restarted
    from, and the run's memory history checked for linearizability.

    ``restarts`` is how many snapshots were checked; ``lost_keys`` names (up to
    a few dozen) ``namespace/key`` whose acknowledged write was missing.
    ``linearizable`` is the verdict on every memory request of the run (its
    invocation and response on the client, ``harness.metrics.linearizable``):
    True, False (``linearizability`` then shows a failing sub-history), or None
    (not checked, or a key's search exceeded its budget), over ``history_ops``
    requests; ``history_keys`` keys got a verdict, ``keys_failing`` of them no.
    """

    restarts: int = 0
    acked_writes_checked: int = 0
    acked_writes_lost: int = 0
    lost_keys: list[str] = field(default_factory=list)
    note: str = ""
    # the memory history (``harness.metrics.linearizable``): True, False, or None
    # when it was not checked (``linearizability`` says why) or the search gave up
    linearizable: bool | None = None
    history_ops: int = 0
    history_keys: int = 0  # keys whose history got a verdict (yes or no)
    keys_failing: int = 0  # keys whose history is not linearizable
    linearizability: str = ""


@dataclass(slots=True)
class MonitoringFigures:
    """Which components reported health and metrics in the run's status snapshot.

    ``expected`` counts the core's fixed components plus one per agent of the
    plan; ``reporting`` those present with a valid health state and
    non-empty, sane metrics; ``coverage`` is ``reporting / expected`` in
    percent (0 when no reply came; None when the plan took no snapshot).
    ``missing`` names (up to a few dozen) components that did not report and
    ``problems`` says why; ``health`` counts the reporting components per
    health state.
    """

    expected: int = 0
    reporting: int = 0
    coverage: float | None = None
    answered: bool = False
    missing: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    health: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class FaultRecovery:
    """What one fault did and how long the system took to get over it (seconds).

    ``recovery_s`` is None when the figures never came back into band
    (``status`` says why). ``ops`` were scheduled in ``[at, end)``; ``lost``
    counts their expected completions that never arrived; ``origin_down_ops``
    are ops whose origin was down, left out of the recovery windows.
    """

    fault_id: int
    kind: str
    at: float
    end: float
    agents: int = 0
    recovery_s: float | None = None
    status: str = ""
    detection_s: float | None = None
    reassigned_s: float | None = None
    coordinator_live_s: float | None = None  # a replica crash: until a leader served again
    reregistered_s: float | None = None
    first_write_s: float | None = None  # a replica crash: until a write issued after it committed
    baseline: str = ""
    baseline_completions_per_s: float | None = None
    baseline_p95_ms: float | None = None
    ops: int = 0
    lost: int = 0
    origin_down_ops: int = 0
    group: int | None = None  # overlapping faults: fault_id of the group's first (recovery)


@dataclass(slots=True)
class KindRecovery:
    """Recovery figures of every fault of one kind (or of all faults).

    Percentiles are nearest-rank; an unrecovered fault counts as infinitely
    slow, so a recovery percentile that lands on one is None.
    """

    count: int = 0
    unrecovered: int = 0
    recovery_p50_s: float | None = None
    recovery_p95_s: float | None = None
    recovery_max_s: float | None = None
    detection_p50_s: float | None = None
    detection_p95_s: float | None = None
    reassign_p95_s: float | None = None
    reregistered_p95_s: float | None = None
    lost: int = 0


@dataclass(slots=True)
class FaultSection:
    """Per-fault rows, per-kind aggregates and the aggregate over all faults."""

    faults: list[FaultRecovery] = field(default_factory=list)
    by_kind: dict[str, KindRecovery] = field(default_factory=dict)
    overall: KindRecovery = field(default_factory=KindRecovery)
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> FaultSection:
        """Rebuild the section from ``asdict`` output (an empty one from None)."""
        if not data:
            return cls()
        return cls(
            faults=[FaultRecovery(**f) for f in data.get("faults", [])],
            by_kind={k: KindRecovery(**v) for k, v in data.get("by_kind", {}).items()},
            overall=KindRecovery(**data.get("overall", {})),
            notes=list(data.get("notes", [])),
        )


@dataclass(slots=True)
class SpawnFigures:
    """How long agents took from being started to being registered
    (``harness.metrics.spawn``): on tcp from before their worker processes were
    started, so a process's start-up and imports count. None without the times."""

    agents: int = 0
    first_s: float | None = None
    p50_s: float | None = None
    p95_s: float | None = None
    all_s: float | None = None  # until the last one registered


@dataclass(slots=True)
class TaskFigures:
    """Tasks: how long all of them took, and, in a tree, how work moved
    (``harness.metrics.tasks``). Empty for a run without tasks.

    ``makespan_s``: from the first task's scheduled time to the last task's result
    at its submitter (None if a task never finished: ``unfinished`` counts them).
    ``imbalance``: the most tasks run under one leaf coordinator over the mean of
    the leaves (1.0 is perfectly even); ``occupancy_imbalance``, the same for the
    leaves' peak occupancy (the most seconds of work that waited at each, as its
    ``Load`` reports counted it; None when no work ever waited). ``coordinators``:
    one row per coordinator of a tree (``protocol.records.CoordinatorFigures``). The latency of each
    finished task, split (from the coordinators' ``TaskStamp``s; inproc, a tree on
    tcp and the model): *wait*, its time waiting at coordinators for a worker; *service*,
    from its assignment to an agent to that agent's result (the work, and the
    round trip to the agent); *transfer*, the rest (submission, moves between
    coordinators, the result's way back). Percentiles nearest-rank.

    The paths of a tree's publishes, directs and broadcasts, from the
    coordinators' counters: ``coordinators_per_op``, how many coordinators routed
    an op, on average (1 for one that stays at its leaf, 5 for a direct between
    two leaves under different children of a 3-level root; a publish counts every
    branch of its fan-out), and ``root_share``, the share of ops that climbed to
    the root."""

    submitted: int = 0
    unfinished: int = 0
    makespan_s: float | None = None
    steals: int = 0
    steals_granted: int = 0
    steals_refused: int = 0
    tasks_moved: int = 0
    steal_ms_mean: float | None = None
    steal_ms_max: float | None = None
    imbalance: float | None = None
    occupancy_imbalance: float | None = None
    wait_p95_ms: float | None = None
    service_p95_ms: float | None = None
    transfer_p95_ms: float | None = None
    wait_mean_ms: float | None = None
    service_mean_ms: float | None = None
    transfer_mean_ms: float | None = None
    coordinators_per_op: float | None = None
    root_share: float | None = None
    coordinators: list[dict[str, Any]] = field(default_factory=list)


class InvalidRunError(Exception):
    """A run that is not evidence (``Summary.valid`` is False) was offered as evidence."""


@dataclass(slots=True)
class Summary:
    """Every figure of one backend's run. ``histograms`` is kept out of ``to_dict``."""

    backend: str
    transport: str
    seed: int
    duration: float
    warmup: float
    wall_seconds: float
    end_time: float
    latency: LatencyFigures
    latency_by_kind: dict[str, KindLatency]
    throughput: Throughput
    reliability: Reliability
    availability: Availability
    agents: Agents
    timeline: list[TimelineBin] = field(default_factory=list)
    resources: list[Resource] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    faults: FaultSection = field(default_factory=FaultSection)
    integrity: WriteIntegrity = field(default_factory=WriteIntegrity)
    monitoring: MonitoringFigures = field(default_factory=MonitoringFigures)
    tasks: TaskFigures = field(default_factory=TaskFigures)
    spawn: SpawnFigures = field(default_factory=SpawnFigures)
    invalid_reasons: list[str] = field(default_factory=list)
    histograms: dict[str, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def valid(self) -> bool:
        """True when nothing went wrong with the run itself (its figures are evidence)."""
        return not self.invalid_reasons

    def figures(self) -> dict[str, Figure]:
        """The headline figures as one flat mapping (names as in thresholds).

        Every figure is finite or None: an infinite latency percentile is None
        here (``infinite_figures()`` names those).
        """
        lat, thr, rel = self.latency, self.throughput, self.reliability
        return {
            "p50_ms": _finite(lat.p50_ms),
            "p95_ms": _finite(lat.p95_ms),
            "p99_ms": _finite(lat.p99_ms),
            "p999_ms": _finite(lat.p999_ms),
            "max_ms": lat.max_ms,
            "mean_ms": lat.mean_ms,
            "latency_count": lat.count,
            "latency_incomplete": lat.incomplete,
            "deliveries_per_s": thr.deliveries_per_s,
            "ops_per_s": thr.ops_per_s,
            "completions_per_s": thr.completions_per_s,
            "offered_ops_per_s": thr.offered_ops_per_s,
            "offered_deliveries_per_s": thr.offered_deliveries_per_s,
            "reliability": rel.reliability,
            "expected": rel.expected,
            "unique": rel.unique,
            "lost": rel.lost,
            "duplicates": rel.duplicates,
            "handler_duplicates": rel.handler_duplicates,
            "corrupted": rel.corrupted,
            "data_integrity": rel.data_integrity,
            "lost_acked": rel.lost_acked,
            "lost_unaccepted": rel.lost_unaccepted,
            "lost_origin_down": rel.lost_origin_down,
            "shed_ops": rel.shed_ops,
            "shed": rel.shed,
            "overloaded": int(rel.overloaded),
            "acked_writes_checked": self.integrity.acked_writes_checked,
            "acked_writes_lost": self.integrity.acked_writes_lost,
            "linearizable": _yes_no(self.integrity.linearizable),
            "faults": len(self.faults.faults),
            "recovery_p95_s": self.faults.overall.recovery_p95_s,
            "detection_p95_s": self.faults.overall.detection_p95_s,
            "reregistered_p95_s": self.faults.overall.reregistered_p95_s,
            "uptime": self.availability.uptime,
            "agents_coordinated": self.agents.coordinated,
            "monitoring_coverage": self.monitoring.coverage,
            "task_p95_ms": self._task_p95(),
            "makespan_s": self.tasks.makespan_s,
            "steals_granted": self.tasks.steals_granted,
            "imbalance": self.tasks.imbalance,
            "occupancy_imbalance": self.tasks.occupancy_imbalance,
            "coordinators_per_op": self.tasks.coordinators_per_op,
            "root_share": self.tasks.root_share,
            "spawn_p95_s": self.spawn.p95_s,
            "spawn_all_s": self.spawn.all_s,
            "wall_seconds": self.wall_seconds,
        }

    def _task_p95(self) -> float | None:
        task = self.latency_by_kind.get("task")
        return None if task is None else _finite(task.p95_ms)

    def infinite_figures(self) -> set[str]:
        """Names of the ``figures()`` that are None because they are infinite."""
        lat = self.latency
        return {name for name in PERCENTILE_FIGURES if getattr(lat, name) == math.inf}

    def to_dict(self, *, include_timeline: bool = True) -> dict[str, Any]:
        """Plain JSON-able data (no histograms; optionally no timeline).

        Infinite latency percentiles become None (``from_dict`` restores them).
        """
        data = asdict(self)
        del data["histograms"]
        data["latency"] = _latency_to_json(data["latency"])
        data["latency_by_kind"] = {
            kind: _latency_to_json(section) for kind, section in data["latency_by_kind"].items()
        }
        if not include_timeline:
            del data["timeline"]
        data["valid"] = self.valid
        return data

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], histograms: Mapping[str, str] | None = None
    ) -> Summary:
        """Rebuild a summary from ``to_dict()`` output."""
        return cls(
            backend=data["backend"],
            transport=data["transport"],
            seed=data["seed"],
            duration=data["duration"],
            warmup=data["warmup"],
            wall_seconds=data["wall_seconds"],
            end_time=data["end_time"],
            latency=_latency_from_json(LatencyFigures, data["latency"]),
            latency_by_kind={
                k: _latency_from_json(KindLatency, v) for k, v in data["latency_by_kind"].items()
            },
            throughput=Throughput(**data["throughput"]),
            reliability=Reliability(**data["reliability"]),
            availability=Availability(**data["availability"]),
            agents=Agents(**data["agents"]),
            timeline=[TimelineBin(**b) for b in data.get("timeline", [])],
            resources=[Resource(**r) for r in data.get("resources", [])],
            notes=list(data.get("notes", [])),
            faults=FaultSection.from_dict(data.get("faults")),
            integrity=WriteIntegrity(**data.get("integrity", {})),
            monitoring=MonitoringFigures(**data.get("monitoring", {})),
            tasks=TaskFigures(**data.get("tasks", {})),
            spawn=SpawnFigures(**data.get("spawn", {})),
            invalid_reasons=list(data.get("invalid_reasons", [])),
            histograms=dict(histograms or {}),
        )


def require_valid(runs: Mapping[str, Summary], purpose: str) -> None:
    """Raise ``InvalidRunError`` when any of ``runs`` (label to summary) is invalid.

    ``purpose`` says what the runs were to be evidence for, for the message.
    """
    bad = {label: summary for label, summary in runs.items() if not summary.valid}
    if bad:
        reasons = "; ".join(
            f"{label}: {', '.join(summary.invalid_reasons)}" for label, summary in bad.items()
        )
        raise InvalidRunError(f"invalid run, refused as evidence for {purpose}: {reasons}")


def _yes_no(answer: bool | None) -> float | None:
    """A verdict as a figure: 1 yes, 0 no, None unknown or not checked."""
    return None if answer is None else float(answer)

"""``make bench``: swarmtwin's speed as ratios against raw baselines from the same run.

For each backend it measures capacity with a short open-loop sweep: a
fan-out-4 publish workload offered at rising rates, each point replayed
end to end and summarised by ``harness.metrics.figures``. Capacity is the highest
steady-state delivery rate reached at a point where reliability stayed at
least 99.9 %. It then replays the workload at half that capacity and
reports p95 there (measured from the scheduled send time).

Then, in each of ``OVERLOAD_ROUNDS`` rounds, it offers that capacity again and
3 and 10 times it, back to back, and reports goodput (the delivery rate achieved,
over the rate the same round's capacity point achieved; the median over
rounds, with its range), p95 of the ops that were admitted (shed ops are not
admitted; accepted ones that never completed count as infinitely late), how
many ops were shed, and false failure detections: live agents the coordinator
declared failed for silence, read from its status snapshot taken while the load
runs (no agent is killed in these runs, so every detection is false).

Ratios printed:
- inproc deliveries/s divided by a bare ``asyncio.Queue``'s messages/s
- tcp deliveries/s divided by a bare framed-msgpack loopback stream
- simulated messages per wall second divided by a trivial SimPy model

Absolute figures are printed too, but only the ratios are comparable
between machines. Every run is bounded by its plan's duration.

Each raw baseline is measured ``BASELINE_RUNS`` times and its median taken,
with the range printed beside it: on the shared 2-core VM one bare
``asyncio.Queue`` run gave anything from 1.06M to 1.52M msg/s within an hour,
and a single run made the ratios swing with it.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

from harness.bench.baselines import queue_baseline, simpy_baseline, stream_baseline
from harness.metrics.figures import Summary, summarize
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.records import DriverResult
from protocol.settings import ProtocolSettings

AGENTS = 100
FANOUT = 4
TOPICS = 25
Driver = Callable[[Plan], DriverResult]


@dataclass
class Point:
    """One offered rate and what it achieved."""

    offered: float
    achieved: float
    p95_ms: float | None
    reliability: float


def bench_plan(deliveries_per_s: float, duration: float, seed: int = 7) -> Plan:
    """Publishes to ``TOPICS`` topics with ``FANOUT`` subscribers each, constant rate."""
    rng = random.Random(seed)
    ids = [f"agent-{i:05d}" for i in range(AGENTS)]
    subs: dict[str, list[str]] = {agent: [] for agent in ids}
    for t in range(TOPICS):
        for agent in rng.sample(ids, FANOUT):
            subs[agent].append(f"bench.t{t}")
    agents = tuple(AgentSpec(a, ("compute",), tuple(sorted(subs[a]))) for a in ids)
    rate = deliveries_per_s / FANOUT
    count = int(rate * duration)
    ops = tuple(
        Operation(
            i + 1,
            i / rate,
            OpKind.PUBLISH,
            rng.choice(ids),
            f"bench.t{rng.randrange(TOPICS)}",
            64,
            FANOUT,
        )
        for i in range(count)
    )
    settings = ProtocolSettings(ack_timeout=2.0, request_timeout=4.0)
    return Plan(seed, duration, duration / 4, agents, ops, settings, drain_timeout=3.0)


def measure(driver: Driver, deliveries_per_s: float, duration: float) -> tuple[Point, Summary]:
    point, summary, _ = measure_run(driver, deliveries_per_s, duration)
    return point, summary


def measure_run(
    driver: Driver, deliveries_per_s: float, duration: float
) -> tuple[Point, Summary, DriverResult]:
    plan = bench_plan(deliveries_per_s, duration)
    result = driver(plan)
    summary = summarize(plan, result)
    figures = summary.to_dict(include_timeline=False)
    point = Point(
        deliveries_per_s,
        figures["throughput"]["deliveries_per_s"],
        figures["latency"]["p95_ms"],
        figures["reliability"]["reliability"],
    )
    return point, summary, result


def false_failures(result: DriverResult) -> int | None:
    """Agents declared failed for silence, from the status snapshot taken under load."""
    if result.status is None:
        return None
    detector = result.status.get("failure_detector", {}).get("metrics", {})
    count = detector.get("failures_detected")
    return None if count is None else int(count)


OVERLOAD_ROUNDS = 3  # rounds of (capacity, 3x, 10x), back to back


@dataclass
class OverloadRun:
    """What one run offered a multiple of capacity (or capacity itself) gave."""

    achieved: float
    p95_ms: float | None
    shed_ops: int
    reliability: float
    false_failures: int | None


def overload_run(
    driver: Driver, plans: dict[float, Plan], rate: float, duration: float
) -> OverloadRun:
    """One run at ``rate``; its plan is built once and kept in ``plans`` for the next round."""
    plan = plans.get(rate)
    if plan is None:
        plan = plans[rate] = bench_plan(rate, duration)
    result = driver(plan)
    figures = summarize(plan, result).to_dict(include_timeline=False)
    return OverloadRun(
        figures["throughput"]["deliveries_per_s"],
        figures["latency"]["p95_ms"],
        int(figures["reliability"]["shed_ops"]),
        figures["reliability"]["reliability"],
        false_failures(result),
    )


def bench_overload(
    name: str,
    run_at: Callable[[float], OverloadRun],
    capacity: float,
    log: Callable[[str], None],
    rounds: int = OVERLOAD_ROUNDS,
) -> dict[str, dict[str, float | None]]:
    """Goodput, admitted p95, shed ops and false failures at 3x and 10x ``capacity``.

    Each of ``rounds`` rounds offers the capacity again, then 3 and 10 times it,
    back to back, and a round's goodput is its overload point's delivery rate over
    its own capacity point's. This machine's speed drifts by a quarter within
    minutes, and the sweep's capacity is the best of several points: set against
    it, one later run read as lost goodput what was a slower minute (goodput from
    0.72 to 1.23 between runs of one build; pairs run back to back gave 0.94, 1.04
    and 0.94 at 10x where the bench had printed 0.72). The median over the rounds
    is reported, with its range; false failures are summed over every run."""
    runs: dict[int, list[tuple[OverloadRun, OverloadRun]]] = {3: [], 10: []}
    failures: list[int | None] = []
    for round_ in range(1, rounds + 1):
        base = run_at(capacity)
        failures.append(base.false_failures)
        log(
            f"{name}: round {round_}: capacity offered again {capacity:>9,.0f}/s  achieved "
            f"{base.achieved:>9,.0f}/s  p95 {_ms(base.p95_ms)}"
        )
        for factor in runs:
            run = run_at(factor * capacity)
            failures.append(run.false_failures)
            runs[factor].append((base, run))
            log(
                f"{name}: round {round_}: {factor:>2}x offered {factor * capacity:>9,.0f}/s  "
                f"achieved {run.achieved:>9,.0f}/s  goodput {_ratio(run, base):.2f}  admitted "
                f"p95 {_ms(run.p95_ms)}  shed {run.shed_ops:,} ops  reliability "
                f"{run.reliability:.4f}  false failures {_count(run.false_failures)}"
            )
    known = [f for f in failures if f is not None]
    total_failures = float(sum(known)) if known else None
    figures: dict[str, dict[str, float | None]] = {}
    for factor, pairs in runs.items():
        goodputs = [_ratio(run, base) for base, run in pairs]
        p95s = [run.p95_ms for _, run in pairs if run.p95_ms is not None]
        figures[f"{factor}x"] = {
            "offered": factor * capacity,
            "achieved": statistics.median(run.achieved for _, run in pairs),
            "goodput": statistics.median(goodputs),
            "goodput_min": min(goodputs),
            "goodput_max": max(goodputs),
            "p95_ms": statistics.median(p95s) if p95s else None,
            "p95_ms_max": max(p95s) if p95s else None,
            "shed_ops": statistics.median(float(run.shed_ops) for _, run in pairs),
            "reliability": min(run.reliability for _, run in pairs),
            "false_failures": total_failures,
        }
        point = figures[f"{factor}x"]
        log(
            f"{name}: {factor:>2}x capacity: goodput {point['goodput']:.2f} (median of "
            f"{len(goodputs)} round{'s' if len(goodputs) != 1 else ''}; {min(goodputs):.2f} to "
            f"{max(goodputs):.2f})  admitted "
            f"p95 {_ms(point['p95_ms'])} (worst {_ms(point['p95_ms_max'])})  false failures "
            f"{_count(None if total_failures is None else int(total_failures))} in all "
            f"{len(failures)} runs"
        )
    return figures


def _ratio(run: OverloadRun, base: OverloadRun) -> float:
    return run.achieved / base.achieved if base.achieved else 0.0


def _count(value: int | None) -> str:
    return "n/a" if value is None else str(value)


SATURATED_POINTS = 2  # the sweep stops after this many saturated points in a row


def sweep(
    measure_point: Callable[[float], Point], rates: list[float], log: Callable[[str], None]
) -> float:
    """Capacity: the best delivery rate reached while reliability held.

    The sweep stops once ``SATURATED_POINTS`` points in a row delivered less
    than 80 % of what they were offered: one slow point (this machine's noise)
    does not end it, which once left capacity at half of what 3 times it
    delivered."""
    best = 0.0
    saturated = 0
    for rate in rates:
        point = measure_point(rate)
        log(
            f"  offered {point.offered:>9,.0f}/s  achieved {point.achieved:>9,.0f}/s  "
            f"p95 {_ms(point.p95_ms)}  reliability {point.reliability:.4f}"
        )
        if point.reliability >= 0.999:
            best = max(best, point.achieved)
        saturated = saturated + 1 if point.achieved < 0.8 * point.offered else 0
        if saturated >= SATURATED_POINTS:
            break  # saturated: higher rates only queue up
    return best


def _ms(value: float | None) -> str:
    return "   n/a" if value is None else f"{value:7.2f} ms"


def inproc_driver(plan: Plan) -> DriverResult:
    from real.inproc.run import run_plan

    return run_plan(plan)


def tcp_driver(plan: Plan) -> DriverResult:
    from real.tcp.run import run_plan

    return run_plan(plan, workers=2, connections=2)


def bench_real(
    name: str,
    driver: Driver,
    rates: list[float],
    baseline: float,
    duration: float,
    log: Callable[[str], None],
    rounds: int = OVERLOAD_ROUNDS,
) -> dict[str, float | None]:
    log(f"{name}: capacity sweep (fan-out {FANOUT} publishes, {AGENTS} agents)")
    capacity = sweep(lambda rate: measure(driver, rate, duration)[0], rates, log)
    half, _ = measure(driver, capacity / 2, duration) if capacity else (None, None)
    p95 = half.p95_ms if half else None
    log(
        f"{name}: capacity {capacity:,.0f} deliveries/s; p95 at 50 % = {_ms(p95)}; "
        f"ratio to baseline {capacity / baseline:.3f}"
    )
    plans: dict[float, Plan] = {}
    overload = (
        bench_overload(
            name, lambda rate: overload_run(driver, plans, rate, duration), capacity, log, rounds
        )
        if capacity
        else {}
    )
    return {
        "capacity": capacity,
        "baseline": baseline,
        "ratio": capacity / baseline,
        "p95_ms_at_half": p95,
        **{
            f"{key}_{factor}": value
            for factor, point in overload.items()
            for key, value in point.items()
        },
    }


BASELINE_RUNS = 5


def median_baseline(
    name: str, measure_once: Callable[[], float], log: Callable[[str], None]
) -> float:
    """The median of ``BASELINE_RUNS`` runs of a raw baseline, logged with their range."""
    runs = [measure_once() for _ in range(BASELINE_RUNS)]
    middle = statistics.median(runs)
    log(
        f"baseline: {name} {middle:,.0f} msg/s (median of {len(runs)}; "
        f"{min(runs):,.0f} to {max(runs):,.0f})"
    )
    return middle


def bench_sim(duration: float, log: Callable[[str], None]) -> dict[str, float | None]:
    from sim import last_stats, run_plan
    from sim.calibration import load_calibration

    calibration, _ = load_calibration(transport="inproc")
    plan = bench_plan(100_000, duration)
    baseline = median_baseline("trivial SimPy model", simpy_baseline, log)
    run_plan(plan, calibration)
    stats = last_stats()
    rate = stats["messages"] / stats["wall_seconds"]
    log(
        f"sim: {stats['messages']:,} simulated messages in {stats['wall_seconds']:.2f} s wall = "
        f"{rate:,.0f}/s; trivial SimPy {baseline:,.0f}/s; ratio {rate / baseline:.3f}"
    )
    return {"messages_per_wall_s": rate, "baseline": baseline, "ratio": rate / baseline}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter points, fewer rates")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    duration = 2.0 if args.quick else 4.0
    rates = [25_000, 50_000, 100_000, 150_000, 200_000, 300_000, 400_000]

    def log(line: str) -> None:
        print(line, flush=True)

    queue = median_baseline("bare asyncio.Queue", queue_baseline, log)
    stream = median_baseline("bare framed-msgpack loopback stream", stream_baseline, log)
    rounds = 1 if args.quick else OVERLOAD_ROUNDS
    figures = {
        "inproc": bench_real("inproc", inproc_driver, rates, queue, duration, log, rounds),
        "tcp": bench_real("tcp", tcp_driver, rates, stream, duration, log, rounds),
        "sim": bench_sim(duration, log),
    }
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(figures, handle, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Small synthetic runs with known answers, for the metrics tests: a plan of a few ops
on four agents, a driver result around given completions, and one completion."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from harness.metrics.figures import Summary, summarize
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.records import Completion, DriverResult, ProbeResult, ProcessUsage

AGENTS = ("a", "b", "c", "d")
ROOT = Path(__file__).resolve().parents[2]


def make_plan(
    ops: list[tuple[float, OpKind, str, int]],
    duration: float = 10.0,
    warmup: float = 1.0,
    first_id: int = 1,
    step: int = 1,
) -> Plan:
    """Ops given as (at, kind, origin, expected), numbered in order of ``at``."""
    operations = tuple(
        Operation(first_id + i * step, at, kind, origin, "t", 64, expected)
        for i, (at, kind, origin, expected) in enumerate(sorted(ops, key=lambda o: o[0]))
    )
    return Plan(
        seed=7,
        duration=duration,
        warmup=warmup,
        agents=tuple(AgentSpec(a) for a in AGENTS),
        operations=operations,
        probe_deadline=0.05,
    )


def make_result(
    completions: list[Completion],
    probes: list[ProbeResult] | None = None,
    registered: dict[str, float] | None = None,
    end_time: float = 10.0,
) -> DriverResult:
    return DriverResult(
        backend="sim",
        transport="inproc",
        completions=completions,
        probes=probes or [],
        registered=dict.fromkeys(AGENTS, 0.0) if registered is None else registered,
        end_time=end_time,
        wall_seconds=1.5,
        processes=[ProcessUsage("coordinator", 100 * 1024 * 1024, 2.5)],
    )


def done(op_id: int, node: str, at: float, *, dup: bool = False, ok: bool = True) -> Completion:
    return Completion(op_id, node, at, dup, ok)


def summary_with(p95: float, deliveries: float, reliability: float) -> Summary:
    """A one-op run whose headline figures are then set to the given values."""
    plan = make_plan([(2.0, OpKind.DIRECT, "a", 1)])
    summary = summarize(plan, make_result([done(1, "b", 2.001)], [ProbeResult(1, 1.0, 1.01)]))
    summary.latency.p50_ms = p95 / 2
    summary.latency.p95_ms = p95
    summary.latency.p99_ms = p95 * 2
    summary.throughput.deliveries_per_s = deliveries
    summary.throughput.ops_per_s = 0.0
    summary.reliability.reliability = reliability
    return summary


def render_text(table: object) -> str:
    """A rich table as plain text, 200 columns wide."""
    console = Console(width=200, record=True, color_system=None)
    console.print(table)
    return console.export_text()

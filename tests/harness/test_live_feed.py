"""Live feeds (``protocol.records.LiveFeed``): every backend hands a watcher each
unique completion once, while the run goes, and the model's figures do not change."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

import pytest

from harness.metrics.figures import summarize
from harness.run.runner import run_backend
from harness.scenario.compile import compile_plan
from harness.scenario.schema import Scenario, load_scenario
from harness.scenario.shipped import scenarios_dir
from protocol.plan import Plan
from protocol.records import LIVE_INTERVAL, DriverResult, LiveBatch, ProbeResult


class Watcher:
    def __init__(self) -> None:
        self.calls: list[float] = []
        self.ids: list[int] = []
        self.ats: list[float] = []
        self.nodes: list[str] = []
        self.shed: list[int] = []
        self.probes: Sequence[ProbeResult] = ()

    def __call__(self, batch: LiveBatch) -> None:
        assert len(batch.ids) == len(batch.ats) == len(batch.nodes)
        self.calls.append(batch.now)
        self.ids.extend(batch.ids)
        self.ats.extend(batch.ats)
        self.nodes.extend(batch.nodes)
        self.shed.extend(batch.shed)
        if batch.probes:
            assert len(batch.probes) >= len(self.probes)  # as they stand: never fewer
            self.probes = batch.probes


def smoke(transport: str = "inproc", duration: float = 2.0) -> tuple[Scenario, Plan]:
    scenario = load_scenario(scenarios_dir() / "smoke.yaml").with_overrides(
        duration=duration, transport=transport
    )
    return scenario, compile_plan(scenario)


def unique(result: DriverResult) -> list[tuple[int, float]]:
    return sorted((c.op_id, c.at) for c in result.completions if not c.duplicate)


def unique_nodes(result: DriverResult) -> list[tuple[int, str, float]]:
    return sorted((c.op_id, c.node, c.at) for c in result.completions if not c.duplicate)


def check(watcher: Watcher, result: DriverResult, plan: Plan) -> None:
    fed = Counter(zip(watcher.ids, watcher.ats, strict=True))
    # each completion fed at most once (two nodes of one tcp worker can complete an op at
    # the same instant: one read delivered it to both), and nearly all were fed
    assert not fed - Counter(unique(result))
    assert fed and fed.total() >= 0.99 * len(unique(result))  # the last report may be cut
    assert set(watcher.ids) <= {op.op_id for op in plan.operations}
    during = [now for now in watcher.calls if 0 <= now <= plan.duration]
    assert len(during) >= 0.5 * plan.duration / LIVE_INTERVAL  # about ten a second
    assert set(watcher.shed) <= set(result.shed)
    # the probes as they stood: each one the run sent, answered no later than in the end
    final = {p.probe_id: p for p in result.probes}
    assert watcher.probes and all(p.probe_id in final for p in watcher.probes)
    assert all(p.answered is None or p == final[p.probe_id] for p in watcher.probes)


def test_the_model_feeds_every_completion_and_its_figures_do_not_change() -> None:
    scenario, plan = smoke()
    watcher = Watcher()
    watched = run_backend(plan, "sim", scenario, live=watcher)
    fed = sorted(zip(watcher.ids, watcher.nodes, watcher.ats, strict=True))
    assert fed == unique_nodes(watched)
    check(watcher, watched, plan)
    plain = run_backend(plan, "sim", scenario)
    figures = [summarize(plan, run).figures() for run in (watched, plain)]
    for found in figures:
        found.pop("wall_seconds")
    assert figures[0] == figures[1]


def test_the_inproc_system_feeds_every_completion() -> None:
    scenario, plan = smoke()
    watcher = Watcher()
    result = run_backend(plan, "real", scenario, live=watcher)
    assert sorted(zip(watcher.ids, watcher.nodes, watcher.ats, strict=True)) == unique_nodes(result)
    check(watcher, result, plan)


@pytest.mark.slow
def test_the_tcp_system_feeds_its_workers_completions() -> None:
    scenario, plan = smoke("tcp")
    watcher = Watcher()
    result = run_backend(plan, "real", scenario, live=watcher)
    check(watcher, result, plan)  # the times are the plan's, as the merged records' are

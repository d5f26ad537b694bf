"""Run a scenario on the real system, the model, or both, and file the results.

``run_scenario`` compiles the scenario into one plan, replays it on each
requested backend (``real.inproc``, ``real.tcp`` or ``sim``) for each
repetition, turns every ``DriverResult`` into a ``Summary`` with the one
metrics module, compares real with sim, writes the run folder and appends
to the run history. Drivers are imported lazily so that ``validate`` and
``history`` start fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from harness.compare import ComparisonRow, aggregate, compare
from harness.history import record_run
from harness.metrics import Summary, summarize
from harness.plan import compile_plan
from harness.plots import plot_timeline
from harness.rundir import new_run_id, write_run
from harness.scenario import Scenario
from protocol.plan import Plan
from protocol.records import DriverResult

Progress = Callable[[str, float], None]
BACKENDS = ("real", "sim")
LINKS_PER_WORKER = 2  # multiplexed tcp: connections each agent worker process opens


@dataclass
class RunOutcome:
    """Everything one ``swarmtwin run`` produced."""

    run_id: str
    run_dir: Path
    plan: Plan
    summaries: dict[str, Summary]
    repetitions: dict[str, list[Summary]] = field(default_factory=dict)
    comparison: list[ComparisonRow] | None = None
    warnings: list[str] = field(default_factory=list)


def run_backend(
    plan: Plan,
    backend: str,
    scenario: Scenario,
    progress: Callable[[float], None] | None = None,
    warnings: list[str] | None = None,
) -> DriverResult:
    """Replay ``plan`` once on ``backend`` (``real`` uses the scenario's transport)."""
    if backend == "sim":
        from sim import run_plan as sim_run
        from sim.calibration import load_calibration

        calibration, warning = load_calibration(transport=scenario.transport)
        if warning and warnings is not None:
            warnings.append(warning)
        if scenario.transport == "tcp":  # agents share their worker process's CPU
            return sim_run(plan, calibration, progress, agent_processes=scenario.agents.workers)
        one_loop = calibration.with_changes(cpu_sharing="one-loop")  # inproc: one event loop
        return sim_run(plan, one_loop, progress)
    if scenario.transport == "tcp":
        from real.tcp import run_plan as tcp_run

        per_agent = scenario.agents.connections == "per_agent"
        connections = 0 if per_agent else LINKS_PER_WORKER
        return tcp_run(
            plan, workers=scenario.agents.workers, connections=connections, progress=progress
        )
    from real.inproc import run_plan as inproc_run

    return inproc_run(plan, progress)


def run_scenario(
    scenario: Scenario,
    backends: tuple[str, ...],
    reports: Path = Path("reports"),
    progress: Progress | None = None,
) -> RunOutcome:
    """Compile, replay on each backend, summarize, compare and file one run."""
    plan = compile_plan(scenario)
    warnings: list[str] = []
    reps: dict[str, list[Summary]] = {}
    for backend in backends:
        for rep in range(scenario.repetitions):
            label = backend if scenario.repetitions == 1 else f"{backend} #{rep + 1}"
            tick = _bind(progress, label)
            result = run_backend(plan, backend, scenario, tick, warnings)
            reps.setdefault(backend, []).append(summarize(plan, result))
            if tick is not None:
                tick(1.0)
    summaries = {backend: runs[-1] for backend, runs in reps.items()}
    comparison = None
    if "real" in summaries and "sim" in summaries:
        comparison = compare(summaries["real"], summaries["sim"])
    created = datetime.now(UTC)
    run_id = new_run_id(scenario.name, created)
    run_dir = write_run(reports / "runs", run_id, scenario.resolved_yaml(), summaries, comparison)
    if scenario.repetitions > 1:
        write_repetitions(run_dir, reps)
    plot_timeline(run_dir, summaries, f"{scenario.name} ({scenario.transport})")
    record_run(
        reports / "history.sqlite", run_id, scenario.name, created, summaries, run_dir=run_dir
    )
    return RunOutcome(run_id, run_dir, plan, summaries, reps, comparison, warnings)


def write_repetitions(run_dir: Path, reps: dict[str, list[Summary]]) -> Path:
    """Every repetition's figures, and their mean with a 95 % confidence interval."""
    data = {
        backend: {
            "repetitions": [s.to_dict(include_timeline=False) for s in runs],
            "aggregate": aggregate(runs),
        }
        for backend, runs in reps.items()
    }
    path = run_dir / "repetitions.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
    return path


def labelled_repetitions(outcome: RunOutcome) -> dict[str, Summary]:
    """Each repetition under its own label (``real #2``), or the plain summaries."""
    if all(len(runs) == 1 for runs in outcome.repetitions.values()):
        return outcome.summaries
    return {
        f"{backend} #{index + 1}": summary
        for backend, runs in outcome.repetitions.items()
        for index, summary in enumerate(runs)
    }


def _bind(progress: Progress | None, label: str) -> Callable[[float], None] | None:
    if progress is None:
        return None
    return lambda fraction: progress(label, fraction)

"""Run a scenario on the real system, the model, or both, and file the results.

``run_scenario`` compiles the scenario into one plan, replays it on each
requested backend (``real.inproc.hub``, ``real.tcp.run`` or ``sim``) for each
repetition, turns every ``DriverResult`` into a ``Summary`` with the one
metrics module, compares real with sim, writes the run folder and appends
to the run history. Drivers are imported lazily so that ``validate`` and
``history`` start fast.

With ``repetitions > 1`` the real backend runs that many times, and the model
runs ``model.replications`` (3) seeded replications of the same plan
(``replication_plan``: same operations, different draws of its service
times, hops and losses; each replication is deterministic). The run folder
then describes each backend by all of its runs: the median of every figure
with a 95 % interval, and each run's own figures and files
(``harness.run.folder``); the comparison is median against median, with
both intervals (``compare_runs``), and the history gets a row per run
(``real #1``, ``sim #2`` ...).

Validity: a run whose driver reported errors is invalid
(``harness.metrics.figures.invalid_reasons``). ``RunOutcome.valid`` is False
when any backend's run (any repetition) was; it is still filed, with
``"valid": false`` in ``summary.json``, and the CLI exits 3.

The scenario's ``model:`` section reaches the model only: ``hop_ms``
replaces the calibration's hop with a constant (``Calibration.with_changes``),
and ``tree_hop_ms`` and ``coordinator_hosts`` go to ``sim.run_plan``; each what-if in force is
added to the sim result's notes. Asking the real backend to run a scenario
with a what-if raises ``ScenarioError`` before anything runs. On tcp
without a what-if, the model's processes share the calibration's ``cores``
(this machine's); a what-if describes other machines, so it does not.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.metrics.compare import ComparisonRow, aggregate, compare_runs
from harness.metrics.figures import CompletionColumns, Summary, completion_columns, summarize
from harness.render.plots import plot_recovery, plot_timeline
from harness.run.folder import (
    filed_summaries,
    new_run_id,
    repeated_reasons,
    write_run,
)
from harness.run.history import record_run
from harness.run.replications import (
    Job,
    add_model_notes,
    farm_out,
    replication_plan,
)
from harness.scenario.compile import compile_plan
from harness.scenario.errors import num
from harness.scenario.schema import ModelSection, Scenario, ScenarioError, parse_scenario
from native.heap import gc_paused
from protocol.plan import Plan
from protocol.records import DriverResult, LiveBatch, LiveFeed

if TYPE_CHECKING:
    from sim.calibration import Calibration
    from sim.distribution import Distribution

Progress = Callable[[str, float], None]
# a live feed of every run of a ``run_scenario``: the run's label and a ``LiveBatch``
LabelledFeed = Callable[[str, LiveBatch], None]
BACKENDS = ("real", "sim")
LINKS_PER_WORKER = 2  # multiplexed tcp: connections each agent worker process opens
WATCHED_NOTE = {
    "real": "watched live: the run handed its completions to a live view every 0.1 s; "
    "in process that work shares the run's event loop and adds to its latency "
    "(docs/portal.md, 'What watching costs')",
    "sim": "watched live: the model handed its completions to a live view every 0.1 s "
    "of simulated time, which changes none of its figures",
}


@dataclass
class RunOutcome:
    """Everything one ``swarmtwin run`` produced."""

    run_id: str
    run_dir: Path
    plan: Plan
    summaries: dict[str, Summary]  # each backend's last run (its only one, unless repeated)
    repetitions: dict[str, list[Summary]] = field(default_factory=dict)  # every run
    comparison: list[ComparisonRow] | None = None
    warnings: list[str] = field(default_factory=list)

    def invalid_reasons(self) -> dict[str, list[str]]:
        """Why each backend's run was invalid (every repetition's reasons); empty when valid."""
        runs = self.repetitions or {name: [s] for name, s in self.summaries.items()}
        found = {backend: repeated_reasons(items) for backend, items in runs.items()}
        return {backend: reasons for backend, reasons in found.items() if reasons}

    @property
    def valid(self) -> bool:
        """True when no backend's run (no repetition) was invalid."""
        return not self.invalid_reasons()


def run_backend(
    plan: Plan,
    backend: str,
    scenario: Scenario,
    progress: Callable[[float], None] | None = None,
    warnings: list[str] | None = None,
    calibration: Calibration | None = None,
    reports: Path | None = None,
    live: LiveFeed | None = None,
    driver: Callable[[Plan], DriverResult] | None = None,
) -> DriverResult:
    """Replay ``plan`` once on ``backend`` (``real`` uses the scenario's transport,
    or ``driver`` when given: ``swarmtwin locust`` passes Locust's).

    ``calibration`` (sim only) replaces the one ``load_calibration`` would pick
    for this host; ``swarmtwin regress`` passes the one its baseline embeds.
    Otherwise it is picked from ``<reports>/calibrations`` (the CLI's
    ``--reports``; ``reports/calibrations`` when ``reports`` is None).
    A real run made with the test-only slowdown hook on says so in its notes.
    ``live`` gets the run's completions as it goes (``protocol.records.LiveFeed``).
    """
    from native.select import STATE

    if backend == "sim":
        result = _run_model(plan, scenario, progress, warnings, calibration, reports, live)
        result.notes.append(f"core: {STATE.describe()}")
        return result
    check_backends(scenario, (backend,))
    result = driver(plan) if driver is not None else _run_real(plan, scenario, progress, live)
    result.notes.append(f"core: {STATE.describe()}")
    from real.slowdown import note as slowdown_note

    note = slowdown_note()
    if note is not None:  # a slowed build's figures must never pass for a normal one's
        result.notes.insert(0, note)
    return result


def _run_real(
    plan: Plan,
    scenario: Scenario,
    progress: Callable[[float], None] | None,
    live: LiveFeed | None = None,
) -> DriverResult:
    if scenario.transport == "tcp":
        from real.tcp.run import run_plan as tcp_run

        per_agent = scenario.agents.connections == "per_agent"
        connections = 0 if per_agent else LINKS_PER_WORKER
        return tcp_run(
            plan,
            workers=scenario.agents.workers,
            connections=connections,
            progress=progress,
            live=live,
            coordinator_processes=scenario.topology.processes,
        )
    from real.inproc.run import run_plan as inproc_run

    return inproc_run(plan, progress, live=live)


def _run_model(
    plan: Plan,
    scenario: Scenario,
    progress: Callable[[float], None] | None,
    warnings: list[str] | None,
    calibration: Calibration | None = None,
    reports: Path | None = None,
    live: LiveFeed | None = None,
) -> DriverResult:
    from sim import run_plan as sim_run
    from sim.calibration import calibrations_dir, load_calibration

    if calibration is None:
        directory = None if reports is None else calibrations_dir(reports)
        calibration, warning = load_calibration(transport=scenario.transport, directory=directory)
        if warning and warnings is not None:
            warnings.append(warning)
    model = scenario.model
    if model.hop_ms is not None:
        calibration = calibration.with_changes(hop=constant_hop(model.hop_ms))
    hosts = model.coordinator_hosts
    tree_hop = (model.tree_hop_ms or 0.0) / 1000
    if scenario.transport == "tcp":  # agents share their worker process's CPU
        workers = scenario.agents.workers
        # this machine's cores are shared by its processes; a what-if is about other
        # machines, and so is a tree with a process per coordinator (processes: 0)
        topology = scenario.topology
        spread_out = topology.tree and topology.processes == 0
        elsewhere = model.what_ifs() or spread_out
        cores = calibration.cores if calibration.cores and not elsewhere else None
        hosting = topology.processes if topology.tree and not spread_out else None
        links = 0 if scenario.agents.connections == "per_agent" else LINKS_PER_WORKER
        result = sim_run(
            plan,
            calibration,
            progress,
            workers,
            coordinator_hosts=hosts,
            cores=cores,
            links=links,
            live=live,
            tree_hop=tree_hop,
            coordinator_processes=hosting,
        )
    else:
        one_loop = calibration.with_changes(cpu_sharing="one-loop")  # inproc: one event loop
        result = sim_run(plan, one_loop, progress, live=live, tree_hop=tree_hop)
    result.notes.extend(what_if_notes(model))
    return result


def constant_hop(hop_ms: float) -> Distribution:
    """The hop distribution of ``model.hop_ms``: every one-way delay exactly that."""
    from sim.distribution import Distribution

    return Distribution.constant(hop_ms / 1000, f"scenario model.hop_ms: {num(hop_ms)} ms")


def what_if_notes(model: ModelSection) -> list[str]:
    """One note per what-if the model ran, for the report."""
    notes = []
    if model.hop_ms is not None:
        notes.append(f"what-if: every hop takes {num(model.hop_ms)} ms (model.hop_ms)")
    if model.tree_hop_ms is not None:
        notes.append(
            f"what-if: every hop between two coordinators of the tree takes "
            f"{num(model.tree_hop_ms)} ms more (model.tree_hop_ms)"
        )
    if model.coordinator_hosts > 1:
        notes.append(
            f"what-if: the coordinator's work is spread over {model.coordinator_hosts} hosts, "
            "each agent's messages served by one of them (model.coordinator_hosts)"
        )
    return notes


def check_backends(scenario: Scenario, backends: tuple[str, ...]) -> None:
    """Refuse to run a scenario's what-ifs on the real system (``ScenarioError``)."""
    asked = scenario.model.what_ifs()
    if "real" in backends and asked:
        expected = "the real system cannot run this what-if; run it with --backend sim"
        raise ScenarioError(f"scenario '{scenario.name}'", f"model.{asked[0]}", expected)


def run_scenario(
    scenario: Scenario,
    backends: tuple[str, ...],
    reports: Path = Path("reports"),
    progress: Progress | None = None,
    operations: bool = True,
    live: LabelledFeed | None = None,
    executor: Executor | None = None,
    real_driver: Callable[[Plan], DriverResult] | None = None,
) -> RunOutcome:
    """Compile, replay on each backend, summarize, compare and file one run.

    The model takes its calibration from ``<reports>/calibrations`` when one
    was measured here (``swarmtwin --reports DIR calibrate`` writes there).
    ``operations=False`` (``run --no-operations``) skips the per-operation
    records (``operations-<label>.parquet``) and does not keep them in memory.
    ``live`` gets each run's completions as it goes, under the run's label
    (``real``, ``sim #2`` ...), as the progress does. With ``executor``, every
    model replication but the last runs on it (``harness.run.replications``).
    ``real_driver`` replays the real runs instead of the scenario's transport's
    driver (``swarmtwin locust``: ``real.locust.run``).
    """
    check_backends(scenario, backends)
    plan = compile_plan(scenario)
    warnings: list[str] = []
    outside = model_extrapolations(scenario) if "sim" in backends else []
    warnings += [f"the model extrapolates: {text}" for text in outside]
    reps: dict[str, list[Summary]] = {}
    results: dict[str, DriverResult] = {}  # the last repetition's records, per backend
    columns: dict[str, CompletionColumns] = {}  # and those records as columns
    for backend in backends:
        runs = scenario.model.replications if backend == "sim" else scenario.repetitions
        farmed = {}
        if backend == "sim" and executor is not None and live is None:
            farmed = farm_out(executor, replication_job, scenario, reports, outside)
        done: dict[int, Summary] = {}
        # the replications run here first, while the farmed ones run elsewhere
        for rep in sorted(range(runs), key=lambda k: k in farmed):
            label = backend if runs == 1 else f"{backend} #{rep + 1}"
            tick = _bind(progress, label)
            if rep in farmed:
                done[rep] = Summary.from_dict(farmed[rep].result())
                if tick is not None:
                    tick(1.0)
                continue
            replayed = replication_plan(plan, rep) if backend == "sim" else plan
            feed = _bind_feed(live, label)
            result = run_backend(
                replayed,
                backend,
                scenario,
                tick,
                warnings,
                reports=reports,
                live=feed,
                driver=real_driver,
            )
            if backend == "sim":
                add_model_notes(result, outside, rep, plan, replayed)
            if feed is not None:
                result.notes.append(WATCHED_NOTE[backend])
            # the records as columns once, for the summary and the operations table
            made = completion_columns(result.completions)
            done[rep] = summarize(plan, result, made)
            results = {k: v for k, v in results.items() if not k.startswith(backend)}
            columns = {k: v for k, v in columns.items() if not k.startswith(backend)}
            if operations:
                results[label] = result  # one run's records held at a time per backend
                columns[label] = made
            if tick is not None:
                tick(1.0)
        reps[backend] = [done[rep] for rep in range(runs)]
    return _file_run(scenario, plan, reports, reps, results, columns, warnings)


@gc_paused()  # the last runs' records are alive: a collection would touch each of them
def _file_run(
    scenario: Scenario,
    plan: Plan,
    reports: Path,
    reps: dict[str, list[Summary]],
    results: dict[str, DriverResult],
    columns: dict[str, CompletionColumns],
    warnings: list[str],
) -> RunOutcome:
    """Compare the backends, write the run folder and its plots, add the history row.

    With the collector running, this phase spent 7.6 s of the default scenario's
    ``make run`` in collections over the records (importing scipy.stats for an
    interval alone took as long); paused, under a second."""
    summaries = {backend: runs[-1] for backend, runs in reps.items()}
    comparison = None
    if "real" in summaries and "sim" in summaries:
        comparison = compare_runs(reps["real"], reps["sim"])
    created = datetime.now(UTC)
    run_id = new_run_id(scenario.name, created)
    run_dir = write_run(
        reports / "runs",
        run_id,
        scenario.resolved_yaml(),
        summaries,
        comparison,
        created=created,
        repetitions=reps,
        plan=plan,
        results=results,
        columns=columns,
    )
    if len(reps.get("real", ())) > 1 or len(reps.get("sim", ())) > 1:
        write_repetitions(run_dir, reps)
    every_run = filed_summaries(summaries, reps)  # real #1, real #2 ... when repeated
    plot_title = f"{scenario.name} ({scenario.transport})"
    plot_timeline(run_dir, every_run, plot_title)
    plot_recovery(run_dir, every_run, plot_title)  # only when the run had faults
    record_run(
        reports / "history.sqlite", run_id, scenario.name, created, every_run, run_dir=run_dir
    )
    once = list(dict.fromkeys(warnings))  # a replication repeats its calibration's warning
    return RunOutcome(run_id, run_dir, plan, summaries, reps, comparison, once)


def model_extrapolations(scenario: Scenario) -> list[str]:
    """Where ``scenario`` leaves the range the model was validated on
    (``harness.validate.validated``)."""
    from harness.validate.validated import extrapolations

    return extrapolations(scenario)


def write_repetitions(run_dir: Path, reps: dict[str, list[Summary]]) -> Path:
    """Every repetition's figures, and their median and mean with a 95 % confidence
    interval (``repetitions.json``; ``summary.json`` has the same since it describes
    every repetition, and this file is kept for the readers of the old one)."""
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
    """Every run: a repeated backend's under each repetition's label (``real #2``),
    a backend that ran once under its own name."""
    return filed_summaries(outcome.summaries, outcome.repetitions)


def _bind_feed(live: LabelledFeed | None, label: str) -> LiveFeed | None:
    if live is None:
        return None
    return lambda batch: live(label, batch)


def _bind(progress: Progress | None, label: str) -> Callable[[float], None] | None:
    if progress is None:
        return None
    return lambda fraction: progress(label, fraction)


def replication_job(job: Job) -> dict[str, Any]:
    """Replication ``rep`` of a scenario's model, wherever it runs (an executor's
    process, a Dask worker): its summary (``harness.run.replications``)."""
    data, rep, calibration, outside = job
    scenario = parse_scenario(data, f"(scenario {data.get('name', '?')})")
    plan = compile_plan(scenario)
    replayed = replication_plan(plan, rep)
    result = run_backend(replayed, "sim", scenario, calibration=calibration)
    add_model_notes(result, outside, rep, plan, replayed)
    return summarize(plan, result).to_dict()

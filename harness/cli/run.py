"""``run``, ``check`` (``validate``, deprecated) and ``history``: scenarios and their runs."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    EXIT_OK,
    PORT,
    REPETITIONS,
    SCENARIO_HELP,
    SEED,
    positive_number,
    whole_number,
)
from harness.cli.output import console, error, progress_bar, warn
from harness.cli.portal import PORTAL_PORT
from harness.scenario.schema import load_scenario
from harness.scenario.shipped import resolve
from harness.sweep.executor import ClusterError

if TYPE_CHECKING:
    from harness.cli.options import Subcommands
    from harness.metrics.figures import Summary
    from protocol.plan import Plan
    from protocol.records import DriverResult


@contextmanager
def _model_executor(cluster: str | None, replications: int) -> Iterator[Executor | None]:
    """Where the model's replications but the last run: the Dask cluster's executor
    with ``--cluster``, else this machine's process pool (one process per CPU), or
    none (all here) for a single replication."""
    if cluster is None and replications < 2:
        yield None
        return
    from harness.sweep.executor import local_workers, sweep_executor

    with sweep_executor(cluster, local_workers()) as executor:
        yield executor


def cmd_run(args: argparse.Namespace) -> int:
    from harness.render.table import render_summary_table
    from harness.run.runner import BACKENDS, labelled_repetitions, run_scenario
    from harness.scenario.targets import evaluate_targets, render_targets

    scenario = load_scenario(resolve(args.scenario)).with_overrides(
        seed=args.seed, duration=args.duration, transport=args.transport
    )
    if args.repetitions is not None:
        scenario = scenario.model_copy(update={"repetitions": args.repetitions})
    if args.replications is not None:
        model = scenario.model.model_copy(update={"replications": args.replications})
        scenario = scenario.model_copy(update={"model": model})
    layout = getattr(args, "layout", None)  # ``locust``'s: the agents as Locust runs them
    if layout is not None:
        scenario = layout(scenario)
    backends = (
        tuple(scenario.backends)
        if args.backend is None
        else (BACKENDS if args.backend == "both" else (args.backend,))
    )
    if args.dashboard:
        return cmd_dashboard(args)
    console.print(
        f"[bold]{scenario.name}[/]: {scenario.agents.count} agents, {scenario.duration:g} s "
        f"({scenario.warmup:g} s warm-up), transport {scenario.transport}, seed {scenario.seed}"
    )
    bar, update = progress_bar()
    # ``locust`` sets another real driver (harness.cli.locust.locust_driver): a context
    # giving the driver and the folder of its own files; none here for ``run``
    real_driver_of = getattr(args, "real_driver", None) or _own_driver
    try:
        replications = scenario.model.replications if "sim" in backends else 1
        with (
            bar,
            _model_executor(args.cluster, replications) as executor,
            real_driver_of(args) as (real_driver, driver_files),
        ):
            outcome = run_scenario(
                scenario,
                backends,
                Path(args.reports),
                update,
                operations=args.operations,
                executor=executor,
                real_driver=real_driver,
            )
            if driver_files is not None:  # Locust's csv, html and log beside the run's files
                shutil.copytree(driver_files, outcome.run_dir / "locust")
    except ClusterError as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    for warning in outcome.warnings:
        warn(warning)
    table = render_summary_table(
        outcome.summaries, outcome.comparison, repetitions=outcome.repetitions
    )
    console.print(table)
    labelled = labelled_repetitions(outcome)
    for label, note in shared_notes(outcome.repetitions, labelled):
        console.print(f"[dim]{label}: {note}[/]", highlight=False)
    repeated = {b: len(runs) for b, runs in outcome.repetitions.items() if len(runs) > 1}
    if repeated:
        what = {"real": "repetitions", "sim": "seeded model replications"}
        shown = " and ".join(f"{b}: {n} {what.get(b, 'runs')}" for b, n in repeated.items())
        console.print(
            f"a column of several runs is their median ({shown}), beside the 95 % confidence "
            "interval of their mean; summary.json has both and every run's figures "
            "(backends.<backend>.repetitions); targets are checked on each run"
        )
    verdicts = evaluate_targets(scenario, labelled)
    if verdicts:
        console.print(render_targets(verdicts))
    console.print(f"run folder: {outcome.run_dir}")
    if not outcome.valid:
        reasons = "; ".join(
            f"{backend}: {', '.join(found)}" for backend, found in outcome.invalid_reasons().items()
        )
        error(f"invalid run, its figures are not evidence ({reasons})")
        return EXIT_INVALID
    failed = [v for v in verdicts if v.critical and not v.passed]
    return EXIT_FAILED if failed and args.fail_on_targets else EXIT_OK


def cmd_dashboard(args: argparse.Namespace) -> int:
    """``run --dashboard``: the run as a portal job (``harness.portal.dashboard``)."""
    from harness.jobs.manager import JobRequest
    from harness.portal.dashboard import Dashboard

    given = {"--replications": args.replications, "--fail-on-targets": args.fail_on_targets}
    given["--cluster"] = args.cluster
    given["--no-operations"] = not args.operations
    refused = [flag for flag, value in given.items() if value not in (None, False)]
    if refused:
        error(f"run --dashboard: {', '.join(refused)} cannot go with --dashboard")
        return EXIT_BAD_INPUT
    request = JobRequest(
        str(resolve(args.scenario).resolve()),
        args.backend,
        args.transport,
        args.seed,
        args.duration,
        repetitions=args.repetitions,
    )
    dashboard = Dashboard(Path(args.reports), args.port)
    try:
        job = dashboard.start(request)
    except OSError as exc:
        error(f"run --dashboard: {exc}")
        return EXIT_BAD_INPUT
    console.print(f"watch it at {dashboard.url} (job {job.job_id})")
    try:
        dashboard.wait(job)
        result = job.result or {}
        if result.get("table"):
            console.print(result["table"], markup=False, highlight=False)
        if job.error:
            error(job.error)
        if result.get("run_dir"):
            console.print(f"run folder: {result['run_dir']}")
        console.print(f"{job.state}; the portal stays up at {dashboard.url} until Ctrl-C")
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        if not job.finished:
            loop = dashboard.state.loop
            if loop is not None:
                asyncio.run_coroutine_threadsafe(dashboard.state.jobs.stop(job), loop).result(15)
        dashboard.stop()
    if job.state == "failed":  # a bad scenario (2) or a crash (3), as the CLI would exit
        return EXIT_BAD_INPUT if job.exit_code == EXIT_BAD_INPUT else EXIT_INVALID
    return {"done": EXIT_OK, "invalid": EXIT_INVALID}.get(job.state, EXIT_INTERRUPTED)


def cmd_check(args: argparse.Namespace) -> int:
    from harness.scenario.compile import compile_plan, plan_stats

    path = resolve(args.scenario)
    scenario = load_scenario(path)
    plan = compile_plan(scenario)
    console.print(f"[green]ok[/] {path}: scenario {scenario.name!r}")
    for key, value in plan_stats(plan).items():
        if isinstance(value, list):
            console.print(f"  {key}:")
            for line in value:
                console.print(f"    {line}", markup=False)
            continue
        shown = f"{value:,.1f}" if isinstance(value, float) else value
        console.print(f"  {key}: {shown}")
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from harness.render.table import render_history
    from harness.run.history import list_runs

    rows = list_runs(Path(args.reports) / "history.sqlite", limit=args.limit)
    if not rows:
        console.print("no runs recorded yet")
        return EXIT_OK
    console.print(render_history(rows))
    return EXIT_OK


def shared_notes(
    repetitions: dict[str, list[Summary]], labelled: dict[str, Summary]
) -> list[tuple[str, str]]:
    """Each run's notes, a note every run of a backend has shown once under the
    backend's name (``sim: calibration ...``), the others under their run's label."""
    common = {
        backend: set.intersection(*(set(run.notes) for run in runs)) if len(runs) > 1 else set()
        for backend, runs in repetitions.items()
    }
    shown: list[tuple[str, str]] = []
    for backend, runs in repetitions.items():
        if len(runs) > 1:
            shown += [(backend, note) for note in runs[0].notes if note in common[backend]]
    for label, summary in labelled.items():
        backend = label.split(" #")[0]
        shown += [(label, n) for n in summary.notes if n not in common.get(backend, set())]
    return shown


@contextmanager
def _own_driver(
    args: argparse.Namespace,
) -> Iterator[tuple[Callable[[Plan], DriverResult] | None, Path | None]]:
    """``run``'s real driver: the scenario's own (none given to the runner)."""
    yield None, None


def run_options(parser: argparse.ArgumentParser) -> None:
    """The options ``run`` and ``locust`` share."""
    parser.add_argument("--seed", type=SEED, default=None, help="default: the scenario's")
    parser.add_argument(
        "--duration", type=positive_number, default=None, help="seconds of offered load"
    )
    parser.add_argument(
        "--repetitions", type=REPETITIONS, default=None, help="real runs (default: the scenario's)"
    )
    parser.add_argument(
        "--replications",
        type=REPETITIONS,
        default=None,
        help="the model's seeded runs (default: the scenario's model.replications, 3)",
    )
    parser.add_argument(
        "--fail-on-targets", action="store_true", help="exit 1 when a critical target fails"
    )
    parser.add_argument(
        "--no-operations",
        dest="operations",
        action="store_false",
        help="skip operations-BACKEND.parquet, the per-operation records (about 2 s per "
        "100k operations); the timelines, the summary and the history are written as always",
    )


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    run = sub.add_parser("run", help="run a scenario on real, sim or both", parents=common)
    run.add_argument("scenario", help=SCENARIO_HELP)
    run.add_argument(
        "--backend",
        choices=["real", "sim", "both"],
        default=None,
        help="default: the scenario's backends",
    )
    run.add_argument("--transport", choices=["inproc", "tcp"], default=None)
    run_options(run)
    run.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the model's replications but the last on the Dask cluster whose "
        "scheduler is at ADDRESS (tcp://host:8786; docs/scale-out.md); default: a process "
        "pool on this machine, one process per CPU, once the real runs are over",
    )
    run.add_argument(
        "--dashboard",
        action="store_true",
        help="run it as a job of the web portal, served on loopback while it runs and "
        "after, until Ctrl-C (docs/portal.md)",
    )
    run.add_argument(
        "--port", type=PORT, default=PORTAL_PORT, help="the portal's port (default: %(default)s)"
    )
    run.set_defaults(func=cmd_run)

    for name, text in (
        ("check", "check a scenario file and show the plan it compiles to"),
        ("validate", "deprecated: use check"),
    ):
        check = sub.add_parser(name, help=text, description=text, parents=common)
        check.add_argument("scenario", help=SCENARIO_HELP)
        check.set_defaults(func=cmd_check)

    history = sub.add_parser("history", help="list recorded runs", parents=common)
    history.add_argument(
        "--limit", type=whole_number(1), default=20, help="rows shown (default: %(default)s)"
    )
    history.set_defaults(func=cmd_history)

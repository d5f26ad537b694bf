"""One job: ``python -m harness.jobs.child run|certify|regress|validate ...``.

``harness.jobs.manager`` (for the portal or the MCP server) starts this module as
a subprocess in a session of its own (so a stop can end it with every process it
started) and reads its standard output, one JSON object per line:

    {"type": "started", "scenario": ..., "labels": [...], "duration": ..., ...}
    {"type": "progress", "label": "real", "fraction": 0.42}
    {"type": "point", "label": "real", "t": ..., "deliveries_per_s": ..., "p95_ms": ...}
    {"type": "log", "line": "..."}                       (certify and regress)
    {"type": "done", "run_id": ..., "run_dir": ..., "valid": true, "table": "..."}
    {"type": "error", "message": "..."}                  (and exit status 2)

``run`` is ``harness.run.runner.run_scenario``, as ``swarmtwin run`` calls it,
with a live feed that turns each driver's completions into points
(``harness.jobs.live``); it files the run folder and the history row as the
CLI does. ``certify SUITE`` is ``harness.certify.run.certify`` and ends with the
report's folder (``report``: kind and id) and its verdict; ``regress BASELINE``
is ``harness.regress.check.run_regress`` against
``<reports>/baselines/BASELINE.json``, writes ``<reports>/regress-job-<time>.json``
and ends with whether it regressed.

Before anything else the module moves file descriptor 1 to standard error and
keeps the original for these lines, so that nothing the run's child processes
print can break the stream.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from harness.cli.options import EXIT_BAD_INPUT, EXIT_INVALID, EXIT_OK
from harness.scenario.errors import ScenarioError


class Lines:
    """JSON lines on a stream of their own, flushed one by one."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream

    def send(self, line_type: str, /, **fields: Any) -> None:
        self.stream.write(json.dumps({"type": line_type, **fields}, allow_nan=False) + "\n")
        self.stream.flush()


def own_stdout() -> IO[str]:
    """The original standard output, for our lines; fd 1 now goes to standard error."""
    sys.stdout.flush()
    stream = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    return stream


def labels(backends: Sequence[str], repetitions: int, replications: int) -> list[str]:
    """The labels ``run_scenario`` gives each run, in the order they go."""
    found: list[str] = []
    for backend in backends:
        runs = replications if backend == "sim" else repetitions
        found += [backend] if runs == 1 else [f"{backend} #{i + 1}" for i in range(runs)]
    return found


def certify_job(args: argparse.Namespace, lines: Lines) -> int:
    import dataclasses

    from harness.certify.catalog import TEST_KEYS
    from harness.certify.console import render_certification
    from harness.certify.run import certify
    from harness.certify.suite import load_suite
    from harness.render.table import as_text
    from harness.scenario.shipped import resolve

    suite = load_suite(resolve(args.scenario, "certification suite"), None, TEST_KEYS)
    if args.repetitions is not None:
        settings = suite.settings.model_copy(update={"repetitions": args.repetitions})
        suite = dataclasses.replace(suite, settings=settings)
    lines.send("started", scenario=suite.settings.name, labels=[], kind="certify")
    command = f"swarmtwin certify {args.scenario} (as a job: the portal or the MCP server)"
    cert = certify(
        suite,
        Path(args.reports),
        command,
        lambda line: lines.send("log", line=str(line)),
        lambda label, fraction: lines.send("progress", label=label, fraction=round(fraction, 4)),
    )
    lines.send(
        "done",
        valid=True,
        report={"kind": "certification", "id": cert.folder.name},
        verdict=cert.verdict.summary,
        warnings=cert.warnings,
        table=as_text(render_certification(cert)),
    )
    return EXIT_OK


def regress_job(args: argparse.Namespace, lines: Lines) -> int:
    import time

    from harness.regress.baseline import read_baseline
    from harness.regress.check import RegressOptions, run_regress
    from harness.regress.decide import RULES
    from harness.regress.report import render_real, render_sim, verdict_lines, write_json
    from harness.regress.update import baseline_path
    from harness.render.table import as_text

    reports = Path(args.reports)
    path = baseline_path(reports, args.scenario)
    baseline = read_baseline(path, tuple(RULES))
    lines.send("started", scenario=args.scenario, labels=[], kind="regress")
    options = RegressOptions(repetitions=args.repetitions)
    result = run_regress(baseline, str(path), options, lambda line: lines.send("log", line=line))
    out = write_json(result, reports / f"regress-job-{time.strftime('%Y%m%d-%H%M%S')}.json")
    tables = [as_text(t) for t in (render_sim(result), render_real(result)) if t is not None]
    lines.send(
        "done",
        valid=True,
        report={"kind": "regression", "id": out.stem},
        regressed=result.regressed,
        warnings=result.warnings,
        table="\n".join([*tables, *verdict_lines(result)]),
    )
    return EXIT_OK


def run(args: argparse.Namespace, lines: Lines) -> int:
    from harness.jobs.live import LivePoints
    from harness.render.table import as_text, render_summary_table
    from harness.run.runner import BACKENDS, run_scenario
    from harness.scenario.compile import compile_plan
    from harness.scenario.schema import ScenarioError, load_scenario
    from harness.scenario.shipped import resolve
    from protocol.records import LiveBatch

    try:
        scenario = load_scenario(resolve(args.scenario)).with_overrides(
            seed=args.seed, duration=args.duration, transport=args.transport
        )
        if args.repetitions is not None:
            scenario = scenario.model_copy(update={"repetitions": args.repetitions})
        backends = (
            tuple(scenario.backends)
            if args.backend is None
            else (BACKENDS if args.backend == "both" else (args.backend,))
        )
        plan = compile_plan(scenario)
    except ScenarioError as exc:
        lines.send("error", message=str(exc))
        return EXIT_BAD_INPUT
    points = LivePoints(plan)

    def live(label: str, batch: LiveBatch) -> None:
        point = points.point(label, batch)
        if point is not None:
            lines.send("point", **point.to_dict())

    def progress(label: str, fraction: float) -> None:
        lines.send("progress", label=label, fraction=round(fraction, 4))

    lines.send(
        "started",
        scenario=scenario.name,
        agents=scenario.agents.count,
        duration=scenario.duration,
        warmup=scenario.warmup,
        transport=scenario.transport,
        seed=scenario.seed,
        labels=labels(backends, scenario.repetitions, scenario.model.replications),
        faults=[fault.model_dump(mode="json") for fault in scenario.faults],
    )
    outcome = run_scenario(scenario, backends, Path(args.reports), progress, live=live)
    table = render_summary_table(
        outcome.summaries, outcome.comparison, repetitions=outcome.repetitions
    )
    lines.send(
        "done",
        run_id=outcome.run_id,
        run_dir=str(outcome.run_dir),
        valid=outcome.valid,
        invalid_reasons=outcome.invalid_reasons(),
        warnings=outcome.warnings,
        table=as_text(table),
    )
    return EXIT_OK if outcome.valid else EXIT_INVALID


def validate_job(args: argparse.Namespace, lines: Lines) -> int:
    from harness.scenario.shipped import resolve
    from harness.validate.model import validate_model
    from harness.validate.suite import load_suite

    overrides = {"repetitions": args.repetitions, "replications": args.replications}
    suite = load_suite(
        resolve(args.scenario, "validation suite"),
        {k: v for k, v in overrides.items() if v is not None},
    )
    lines.send("started", scenario=suite.settings.name, labels=[], kind="validate")
    command = f"swarmtwin validate-model {args.scenario}" + "".join(
        f" --{k} {v}" for k, v in overrides.items() if v is not None
    )
    folder, report = validate_model(
        suite, Path(args.reports), lambda line: lines.send("log", line=str(line)), command
    )
    goals = [
        f"{'met' if g['met'] else 'missed'}  {g['goal']}: "
        + ("n/a" if g["value"] is None else f"{g['value']:.1f} %")
        for g in report["goals"]
    ]
    lines.send(
        "done",
        valid=True,
        report={"kind": "validation", "id": folder.name},
        goals=report["goals"],
        warnings=[report["calibration"]["warning"]] if report["calibration"]["warning"] else [],
        table="\n".join(goals),
    )
    return EXIT_OK


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("kind", choices=["run", "certify", "regress", "validate"])
    parser.add_argument(
        "scenario",
        help="run: a scenario; certify: a suite; regress: a baseline; validate: a validation suite",
    )
    parser.add_argument("--reports", default="reports")
    parser.add_argument("--repetitions", type=int, default=None)
    parser.add_argument("--replications", type=int, default=None)
    parser.add_argument("--backend", choices=["real", "sim", "both"], default=None)
    parser.add_argument("--transport", choices=["inproc", "tcp"], default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--duration", type=float, default=None)
    args = parser.parse_args(argv)
    lines = Lines(own_stdout())
    jobs = {"run": run, "certify": certify_job, "regress": regress_job, "validate": validate_job}
    job = jobs[args.kind]
    try:
        return job(args, lines)
    except ScenarioError as exc:  # a bad suite or baseline: said, as the CLI says it
        lines.send("error", message=str(exc))
        return EXIT_BAD_INPUT
    except Exception as exc:  # the page shows it; the traceback goes to the job's log
        lines.send("error", message=f"{type(exc).__name__}: {exc}")
        raise


if __name__ == "__main__":
    sys.exit(main())

"""``regress`` and ``baseline update``: fail CI when this build is slower than a baseline."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import EXIT_FAILED, EXIT_OK, REPETITIONS, fraction
from harness.cli.output import console, warn
from harness.scenario.errors import ScenarioError

if TYPE_CHECKING:
    from harness.cli.options import Subcommands


def cmd_regress(args: argparse.Namespace) -> int:
    from harness.regress.baseline import read_baseline
    from harness.regress.check import RegressOptions, run_regress
    from harness.regress.decide import RULES, parse_min_effects
    from harness.regress.report import render_real, render_sim, verdict_lines, write_json

    baseline_file = baseline_argument(args.baseline, Path(args.reports))
    baseline = read_baseline(baseline_file, tuple(RULES))
    options = RegressOptions(
        repetitions=args.repetitions,
        sim=not args.real_only,
        real=not args.sim_only,
        alpha=args.alpha,
        min_effects=parse_min_effects(args.min_effect),
        only=tuple(args.only),
        gate_real_anywhere=args.gate_real_anywhere,
    )
    commit = (baseline.git_commit or "unknown")[:12]
    console.print(
        f"[bold]regress[/] against {baseline_file}: measured {baseline.created} on "
        f"{baseline.machine.hostname}, commit {commit}"
    )
    log = lambda line: console.print(line, highlight=False)  # noqa: E731
    result = run_regress(baseline, str(baseline_file), options, log)
    for warning in result.warnings:
        warn(warning)
    for table in (render_sim(result), render_real(result)):
        if table is not None:
            console.print(table)
    for line in verdict_lines(result):
        console.print(line, highlight=False)
    if args.json:
        console.print(f"result: {write_json(result, Path(args.json))}")
    return EXIT_FAILED if result.regressed else EXIT_OK


def baseline_argument(argument: str, reports: Path) -> Path:
    """``--baseline``: a file, or a baseline's NAME for ``<reports>/baselines/NAME.json``."""
    from harness.regress.update import NAME_PATTERN, baseline_path

    given = Path(argument)
    if given.exists():
        return given
    expected = f"file not found: no {argument} in the working directory {Path.cwd()}"
    name = argument.removesuffix(".json")
    if NAME_PATTERN.match(name) and given.name == argument:  # a bare name, not a path
        named = baseline_path(reports, name)
        if named.is_file():
            return named
        expected += f", and no {named}"
    raise ScenarioError(argument, "(file)", expected)


def cmd_baseline_update(args: argparse.Namespace) -> int:
    from harness.regress.baseline import write_baseline
    from harness.regress.update import baseline_path, make_baseline, plan_update

    path = baseline_path(Path(args.reports), args.name)
    log = lambda line: console.print(line, highlight=False)  # noqa: E731
    planned, reps, sources = plan_update(args.name, args.scenario, path, args.repetitions, log)
    baseline = make_baseline(
        args.name, planned, reps, sources, log, args.calibration, reports=Path(args.reports)
    )
    console.print(f"baseline written to {write_baseline(path, baseline)}")
    return EXIT_OK


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    regress = sub.add_parser(
        "regress", help="compare this build with a regression baseline", parents=common
    )
    regress.add_argument(
        "--baseline",
        required=True,
        help="a baseline file, or NAME for <reports>/baselines/NAME.json",
    )
    regress.add_argument(
        "--repetitions", type=REPETITIONS, default=None, help="real runs per scenario"
    )
    only = regress.add_mutually_exclusive_group()
    only.add_argument("--sim-only", action="store_true", help="only the exact sim comparison")
    only.add_argument("--real-only", action="store_true", help="only the real runs")
    regress.add_argument(
        "--alpha", type=fraction, default=0.05, help="significance level (default: %(default)s)"
    )
    regress.add_argument("--min-effect", action="append", default=[], metavar="METRIC=PCT")
    regress.add_argument("--only", action="append", default=[], metavar="SCENARIO")
    regress.add_argument("--json", default=None, metavar="FILE", help="also write the result")
    regress.add_argument(
        "--gate-real-anywhere",
        action="store_true",
        help="let real figures fail the check even when this machine differs from the baseline's",
    )
    regress.set_defaults(func=cmd_regress)

    baseline = sub.add_parser("baseline", help="regression baselines")
    baseline_sub = baseline.add_subparsers(dest="baseline_command", required=True)
    update = baseline_sub.add_parser(
        "update", help="measure and write reports/baselines/NAME.json", parents=common
    )
    update.add_argument("name")
    update.add_argument("--scenario", action="append", default=[], help="scenario or suite file")
    update.add_argument(
        "--repetitions", type=REPETITIONS, default=None, help="real runs per scenario"
    )
    update.add_argument("--calibration", default=None, help="calibration file for the sim")
    update.set_defaults(func=cmd_baseline_update)

"""``calibrate`` and ``validate-model``: measure this machine, then the model against it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import DEFAULT_TRANSPORT, EXIT_OK, REPETITIONS
from harness.cli.output import console, warn
from harness.scenario.shipped import resolve

if TYPE_CHECKING:
    from harness.cli.options import Subcommands


def cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.calibrate.measure import calibrate
    from sim.calibration import calibrations_dir

    path = calibrate(transport=args.transport, out_dir=calibrations_dir(Path(args.reports)))
    console.print(f"calibration written to {path}")
    return EXIT_OK


def cmd_validate_model(args: argparse.Namespace) -> int:
    from harness.validate.model import validate_model
    from harness.validate.suite import load_suite

    overrides = {"repetitions": args.repetitions, "replications": args.replications}
    suite_path = resolve(args.suite, "validation suite")
    suite = load_suite(suite_path, {k: v for k, v in overrides.items() if v is not None})
    settings = suite.settings
    console.print(
        f"[bold]{settings.name}[/]: {suite.base.transport}, {settings.repetitions} real "
        f"repetitions and {settings.replications} sim replications per point, "
        f"{settings.duration:g} s each"
    )
    command = f"swarmtwin validate-model {args.suite}" + "".join(
        f" --{k} {v}" for k, v in overrides.items() if v is not None
    )
    folder, report = validate_model(
        suite, Path(args.reports), lambda line: console.print(line, highlight=False), command
    )
    if report["calibration"]["warning"]:
        warn(report["calibration"]["warning"])
    for goal in report["goals"]:
        value = "n/a" if goal["value"] is None else f"{goal['value']:.1f} %"
        mark = "[green]met[/]" if goal["met"] else "[red]missed[/]"
        console.print(f"  {mark}  {goal['goal']}: {value}")
    console.print(f"fidelity report: {folder / 'report.md'}")
    return EXIT_OK


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    cal = sub.add_parser("calibrate", help="measure this machine for the model", parents=common)
    cal.add_argument(
        "--transport",
        choices=["inproc", "tcp"],
        default=DEFAULT_TRANSPORT,
        help="default: %(default)s, the transport of scenarios/default.yaml (make run)",
    )
    cal.set_defaults(func=cmd_calibrate)

    model = sub.add_parser(
        "validate-model",
        help="measure the model against the real system: a sweep of a suite on both "
        "backends, and a fidelity report (about 20 minutes for a shipped suite on 2 cores)",
        parents=common,
    )
    model.add_argument(
        "suite",
        nargs="?",
        default="scenarios/validation/suite.yaml",
        help="a suite file or a shipped suite's name (default: the shipped validation/suite)",
    )
    model.add_argument("--repetitions", type=REPETITIONS, default=None, help="real runs per point")
    model.add_argument("--replications", type=REPETITIONS, default=None, help="sim runs per point")
    model.set_defaults(func=cmd_validate_model)

"""``calibrate`` and ``validate-model``: measure this machine, then the model against it."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.cli.options import DEFAULT_TRANSPORT, EXIT_BAD_INPUT, EXIT_OK, REPETITIONS
from harness.cli.output import console, error, warn
from harness.scenario.shipped import resolve

if TYPE_CHECKING:
    from harness.cli.options import Subcommands


def cmd_calibrate(args: argparse.Namespace) -> int:
    from rich.table import Table

    from harness.calibrate.measure import calibrate
    from harness.calibrate.moved import THRESHOLD, against_shipped, show
    from sim.calibration import calibrations_dir

    path = calibrate(transport=args.transport, out_dir=calibrations_dir(Path(args.reports)))
    shipped, found = against_shipped(path)
    console.print(f"calibration written to {path}")
    where = f"the shipped default ({shipped.host}, {shipped.date})"
    if not found:
        console.print(f"no figure moved by more than {THRESHOLD:.0%} from {where}")
        return EXIT_OK
    table = Table(title=f"figures that moved by more than {THRESHOLD:.0%} from {where}")
    for column in ("figure", "shipped", "here", "change"):
        table.add_column(column, justify="left" if column == "figure" else "right")
    for figure in found:
        change = "—" if figure.change is None else f"{figure.change * 100:+.0f} %"
        table.add_row(
            figure.name, show(figure.old, figure.unit), show(figure.new, figure.unit), change
        )
    console.print(table)
    return EXIT_OK


def cmd_validate_model(args: argparse.Namespace) -> int:
    from harness.sweep.executor import ClusterError

    try:
        return _validate_model(args) if args.reuse is None else _reuse(args)
    except ClusterError as exc:
        error(str(exc))
        return EXIT_BAD_INPUT


def _validate_model(args: argparse.Namespace) -> int:
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
    if args.calibration is not None:
        command += f" --calibration {args.calibration}"
    if args.cluster is not None:
        command += f" --cluster {args.cluster}"
    folder, report = validate_model(
        suite,
        Path(args.reports),
        lambda line: console.print(line, highlight=False),
        command,
        args.calibration,
        args.cluster,
    )
    return _show(folder, report)


def _reuse(args: argparse.Namespace) -> int:
    from harness.validate.reuse import reuse_report

    if args.repetitions is not None:
        error("--repetitions has no meaning with --reuse: the real runs are the report's")
        return EXIT_BAD_INPUT
    command = f"swarmtwin validate-model --reuse {args.reuse}"
    if args.replications is not None:
        command += f" --replications {args.replications}"
    if args.calibration is not None:
        command += f" --calibration {args.calibration}"
    if args.cluster is not None:
        command += f" --cluster {args.cluster}"
    folder, report = reuse_report(
        args.reuse,
        Path(args.reports),
        lambda line: console.print(line, highlight=False),
        command,
        args.replications,
        args.calibration,
        args.cluster,
    )
    return _show(folder, report)


def _show(folder: Path, report: dict[str, Any]) -> int:
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
    model.add_argument(
        "--reuse",
        type=Path,
        metavar="REPORT",
        help="predict the points of an earlier fidelity report again, sim only, with its "
        "recorded real runs (a few minutes): for work on the model",
    )
    model.add_argument(
        "--calibration",
        type=Path,
        metavar="FILE",
        help="the model's calibration file (default: this machine's newest, else the shipped one)",
    )
    model.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the model's replications on the Dask cluster whose scheduler is at "
        "ADDRESS (tcp://host:8786; docs/scale-out.md) instead of this machine's processes",
    )
    model.set_defaults(func=cmd_validate_model)

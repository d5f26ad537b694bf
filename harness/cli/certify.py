"""``certify``: the certification suite, its verdict, and its report (HTML, Markdown, JSON)."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import EXIT_BAD_INPUT, EXIT_FAILED, EXIT_OK, REPETITIONS
from harness.cli.output import console, error, progress_bar, warn
from harness.scenario.shipped import resolve

LEVELS = ("FULL", "PARTIAL", "FAILED")


if TYPE_CHECKING:
    from harness.cli.options import Subcommands


def cmd_certify(args: argparse.Namespace) -> int:
    from harness.certify.catalog import TEST_KEYS
    from harness.certify.console import render_certification
    from harness.certify.run import certify
    from harness.certify.suite import load_suite, load_targets
    from harness.sweep.executor import ClusterError

    targets = load_targets(args.targets, TEST_KEYS) if args.targets else None
    suite = load_suite(resolve(args.suite, "certification suite"), targets, TEST_KEYS)
    if args.repetitions is not None:
        settings = suite.settings.model_copy(update={"repetitions": args.repetitions})
        suite = dataclasses.replace(suite, settings=settings)
    command = " ".join(["swarmtwin", *sys.argv[1:]]) if sys.argv[1:] else "swarmtwin certify"
    bar, update = progress_bar()
    try:
        with bar:
            cert = certify(
                suite, Path(args.reports), command, bar.console.print, update, args.cluster
            )
    except ClusterError as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    for warning in cert.warnings:
        warn(warning)
    console.print(render_certification(cert))
    console.print(f"[bold]{cert.verdict.summary}[/]")
    _render_png(cert.folder, args.png)
    console.print(f"report: {cert.folder / 'report.html'} (and report.md, report.json)")
    below = args.require and LEVELS.index(cert.verdict.level) > LEVELS.index(args.require)
    return EXIT_FAILED if below else EXIT_OK


def _render_png(folder: Path, wanted: str) -> None:
    from harness.certify.render import RenderError, find_chromium, render_png

    if wanted == "no" or (wanted == "auto" and find_chromium() is None):
        return
    try:
        console.print(f"rendered {render_png(folder / 'report.html', folder / 'report.png')}")
    except RenderError as exc:
        warn(f"report.png not rendered: {exc}")


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    cert = sub.add_parser(
        "certify", help="run the certification suite; report in reports/", parents=common
    )
    cert.add_argument(
        "suite",
        nargs="?",
        default="scenarios/certification/suite.yaml",
        help="a suite file or a shipped suite's name (default: the shipped certification/suite)",
    )
    cert.add_argument("--targets", default=None, help="YAML mapping of test key to target")
    cert.add_argument(
        "--repetitions", type=REPETITIONS, default=None, help="real runs per scenario"
    )
    cert.add_argument(
        "--png",
        choices=["auto", "yes", "no"],
        default="auto",
        help="render report.png in headless Chromium (auto: when Chromium is installed)",
    )
    cert.add_argument(
        "--require",
        choices=["FULL", "PARTIAL"],
        default=None,
        help="exit 1 when the level is below this",
    )
    cert.add_argument(
        "--cluster",
        metavar="ADDRESS",
        help="run the model's replications on the Dask cluster whose scheduler is at "
        "ADDRESS (tcp://host:8786; docs/scale-out.md); default: this machine's processes",
    )
    cert.set_defaults(func=cmd_certify)

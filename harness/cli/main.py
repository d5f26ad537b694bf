"""The ``swarmtwin`` command line: parse arguments, load the scenario, call the library.

Exit codes, the same for every command (README.md, "Exit codes"):

- 0 (``EXIT_OK``): success;
- 1 (``EXIT_FAILED``): a target, gate or regression failed (``run
  --fail-on-targets``, ``certify --require``, ``regress``);
- 2 (``EXIT_BAD_INPUT``): bad input: a scenario, suite, baseline or argument
  (a ``ScenarioError`` names the file, the field and what was expected;
  argparse's own errors exit 2 as well);
- 3 (``EXIT_INVALID``): the run itself was invalid (``InvalidRunError``, or
  ``swarmtwin run`` whose ``RunOutcome.valid`` is False), or the tool crashed:
  ``main`` turns any other exception into the traceback and then a one-line
  error on stderr.

Each subcommand is a small function that returns its exit code; ``main``
maps the exceptions. Every number-valued option is checked by one argparse
type (``whole_number``, ``positive_number``, ``fraction``): ``--repetitions``
and ``--replications`` take ``REPETITIONS`` everywhere. ``--reports DIR``
goes before or after the subcommand (``COMMON``); after it wins.

``check`` checks a scenario file; ``validate`` is its deprecated alias for one
release (``DEPRECATED``: a one-line notice on stderr, then the same command).

A scenario or suite argument that is not an existing path names a file
shipped with swarmtwin (``smoke``, ``faults/partition``,
``scenarios/default.yaml`` from any directory: ``harness.scenario.shipped``), and the
defaults (the validation and certification suites) resolve the same way.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import tomllib
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

from harness.metrics.summary import InvalidRunError
from harness.scenario.schema import ScenarioError, load_scenario
from harness.scenario.shipped import resolve
from protocol.settings import DEV_TOKEN, ProtocolSettings

EXIT_OK = 0
EXIT_FAILED = 1  # a target, gate or regression failed
EXIT_BAD_INPUT = 2  # a bad scenario, suite, baseline or argument
EXIT_INVALID = 3  # the run itself was invalid, or the tool crashed
EXIT_INTERRUPTED = 130
LEVELS = ("FULL", "PARTIAL", "FAILED")
SCENARIO_HELP = "a scenario file, or a shipped scenario's name: smoke, faults/partition, ..."
DEFAULT_TRANSPORT = "tcp"  # scenarios/default.yaml's, which `make run` runs
DEFAULT_PORT = 7400
DEPRECATED = {"validate": "check"}  # old command: new one (kept for one release)
console = Console(width=None if sys.stdout.isatty() else 160)
errors = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _progress_bar() -> tuple[Progress, Callable[[str, float], None]]:
    bar = Progress(
        TextColumn("[bold]{task.description:<10}"),
        BarColumn(),
        TextColumn("{task.percentage:>5.1f}%"),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )
    tasks: dict[str, int] = {}

    def update(label: str, fraction: float) -> None:
        if label not in tasks:
            tasks[label] = bar.add_task(label, total=1.0)
        bar.update(tasks[label], completed=fraction)

    return bar, update


def cmd_run(args: argparse.Namespace) -> int:
    from harness.render.table import render_summary_table
    from harness.run.runner import BACKENDS, labelled_repetitions, run_scenario
    from harness.scenario.targets import evaluate_targets, render_targets

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
    console.print(
        f"[bold]{scenario.name}[/]: {scenario.agents.count} agents, {scenario.duration:g} s "
        f"({scenario.warmup:g} s warm-up), transport {scenario.transport}, seed {scenario.seed}"
    )
    bar, update = _progress_bar()
    with bar:
        outcome = run_scenario(scenario, backends, Path(args.reports), update)
    for warning in outcome.warnings:
        errors.print(f"[yellow]warning:[/] {warning}")
    table = render_summary_table(
        outcome.summaries, outcome.comparison, repetitions=outcome.repetitions
    )
    console.print(table)
    labelled = labelled_repetitions(outcome)
    for label, summary in labelled.items():
        for note in summary.notes:
            console.print(f"[dim]{label}: {note}[/]", highlight=False)
    if scenario.repetitions > 1:
        console.print(
            f"the real column is the median of {scenario.repetitions} repetitions, beside "
            "the 95 % confidence interval of their mean; summary.json has both and every "
            "repetition's figures (backends.real.repetitions); targets are checked on each"
        )
    verdicts = evaluate_targets(scenario, labelled)
    if verdicts:
        console.print(render_targets(verdicts))
    console.print(f"run folder: {outcome.run_dir}")
    if not outcome.valid:
        reasons = "; ".join(
            f"{backend}: {', '.join(found)}" for backend, found in outcome.invalid_reasons().items()
        )
        _error(f"invalid run, its figures are not evidence ({reasons})")
        return EXIT_INVALID
    failed = [v for v in verdicts if v.critical and not v.passed]
    return EXIT_FAILED if failed and args.fail_on_targets else EXIT_OK


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
    return 0


def cmd_history(args: argparse.Namespace) -> int:
    from harness.render.table import render_history
    from harness.run.history import list_runs

    rows = list_runs(Path(args.reports) / "history.sqlite", limit=args.limit)
    if not rows:
        console.print("no runs recorded yet")
        return 0
    console.print(render_history(rows))
    return 0


def cmd_coordinator(args: argparse.Namespace) -> int:
    from real.tcp.server import coordinator_command

    settings = ProtocolSettings(token=args.token)
    db = args.db if args.db is not None else str(Path(args.reports) / "coordinator.sqlite")
    code = coordinator_command(args.host, args.port, args.token, db, settings)
    # it returns 1 for an address it cannot listen on or a database it cannot
    # open: arguments that cannot be used, which is bad input here (2 stays 2)
    return EXIT_BAD_INPUT if code == 1 else code


def cmd_agents(args: argparse.Namespace) -> int:
    from real.tcp.workers import agents_command

    code = agents_command(
        args.host,
        args.port,
        args.token,
        args.count,
        args.prefix,
        tuple(args.capability),
        tuple(args.subscribe),
        args.connections,
    )
    # 1 is the coordinator rejecting the agents (a wrong token or name): bad input
    return EXIT_BAD_INPUT if code == 1 else code


def cmd_calibrate(args: argparse.Namespace) -> int:
    from harness.calibrate.measure import calibrate
    from sim.calibration import calibrations_dir

    path = calibrate(transport=args.transport, out_dir=calibrations_dir(Path(args.reports)))
    console.print(f"calibration written to {path}")
    return 0


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
        errors.print(f"[yellow]warning:[/] {report['calibration']['warning']}")
    for goal in report["goals"]:
        value = "n/a" if goal["value"] is None else f"{goal['value']:.1f} %"
        mark = "[green]met[/]" if goal["met"] else "[red]missed[/]"
        console.print(f"  {mark}  {goal['goal']}: {value}")
    console.print(f"fidelity report: {folder / 'report.md'}")
    return 0


def cmd_certify(args: argparse.Namespace) -> int:
    from harness.certify.catalog import TEST_KEYS
    from harness.certify.console import render_certification
    from harness.certify.run import certify
    from harness.certify.suite import load_suite, load_targets

    targets = load_targets(args.targets, TEST_KEYS) if args.targets else None
    suite = load_suite(resolve(args.suite, "certification suite"), targets, TEST_KEYS)
    if args.repetitions is not None:
        settings = suite.settings.model_copy(update={"repetitions": args.repetitions})
        suite = dataclasses.replace(suite, settings=settings)
    command = " ".join(["swarmtwin", *sys.argv[1:]]) if sys.argv[1:] else "swarmtwin certify"
    bar, update = _progress_bar()
    with bar:
        cert = certify(suite, Path(args.reports), command, bar.console.print, update)
    for warning in cert.warnings:
        errors.print(f"[yellow]warning:[/] {warning}")
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
        errors.print(f"[yellow]warning:[/] report.png not rendered: {exc}")


def cmd_regress(args: argparse.Namespace) -> int:
    from harness.regress.baseline import read_baseline
    from harness.regress.check import RegressOptions, run_regress
    from harness.regress.decide import RULES, parse_min_effects
    from harness.regress.report import render_real, render_sim, verdict_lines, write_json

    baseline_file = _baseline_file(args.baseline, Path(args.reports))
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
        errors.print(f"[yellow]warning:[/] {warning}", highlight=False)
    for table in (render_sim(result), render_real(result)):
        if table is not None:
            console.print(table)
    for line in verdict_lines(result):
        console.print(line, highlight=False)
    if args.json:
        console.print(f"result: {write_json(result, Path(args.json))}")
    return EXIT_FAILED if result.regressed else EXIT_OK


def _baseline_file(argument: str, reports: Path) -> Path:
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
    return 0


# --- option types: every number-valued option is checked here, the same way -----------


def whole_number(low: int, high: int | None = None) -> Callable[[str], int]:
    """An argparse type: a whole number from ``low`` (to ``high``), else exit 2 saying so."""
    expected = (
        f"a whole number from {low} to {high}" if high is not None else f"a whole number >= {low}"
    )

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0 (seconds, for example)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def fraction(text: str) -> float:
    """An argparse type: a number strictly between 0 and 1 (a significance level)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"expected a number between 0 and 1, got {text!r}")
    return value


REPETITIONS = whole_number(1, 100)  # --repetitions and --replications, on every command
PORT = whole_number(0, 65535)
SEED = whole_number(0)


def package_version() -> str:
    """The installed distribution's version, else the checkout's ``pyproject.toml`` version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swarmtwin")
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parent.parent / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return "unknown"


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench.run import main as bench_main

    return bench_main(
        [*(["--quick"] if args.quick else []), *(["--json", args.json] if args.json else [])]
    )


def _common() -> argparse.ArgumentParser:
    """Options every subcommand also takes after its name (``run smoke --reports DIR``)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--reports",
        default=argparse.SUPPRESS,  # only when given: the top-level one stays otherwise
        help="output folder, also accepted before the command (default: reports)",
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="swarmtwin", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"swarmtwin {package_version()}")
    parser.add_argument("--reports", default="reports", help="output folder (default: reports)")
    sub = parser.add_subparsers(dest="command", required=True)
    common = [_common()]

    run = sub.add_parser("run", help="run a scenario on real, sim or both", parents=common)
    run.add_argument("scenario", help=SCENARIO_HELP)
    run.add_argument(
        "--backend",
        choices=["real", "sim", "both"],
        default=None,
        help="default: the scenario's backends",
    )
    run.add_argument("--transport", choices=["inproc", "tcp"], default=None)
    run.add_argument("--seed", type=SEED, default=None, help="default: the scenario's")
    run.add_argument(
        "--duration", type=positive_number, default=None, help="seconds of offered load"
    )
    run.add_argument(
        "--repetitions", type=REPETITIONS, default=None, help="real runs (default: the scenario's)"
    )
    run.add_argument(
        "--fail-on-targets", action="store_true", help="exit 1 when a critical target fails"
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

    coord = sub.add_parser(
        "coordinator",
        help="start a coordinator server by hand",
        description="Serve a coordinator in the foreground until Ctrl-C (SIGINT) or SIGTERM.",
        parents=common,
    )
    coord.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; any but a loopback one needs a secret --token "
        "(default: %(default)s)",
    )
    coord.add_argument(
        "--port", type=PORT, default=DEFAULT_PORT, help="TCP port, 0 for any (default: %(default)s)"
    )
    coord.add_argument(
        "--token",
        default=DEV_TOKEN,
        help="shared secret agents must present (default: the public development token "
        "%(default)r, accepted on loopback only)",
    )
    coord.add_argument(
        "--db",
        default=None,
        help="SQLite file the memory store is persisted to (default: <reports>/coordinator.sqlite)",
    )
    coord.set_defaults(func=cmd_coordinator)

    agents = sub.add_parser(
        "agents",
        help="start agents against a running coordinator",
        description="Register idle agents with a running coordinator and print their "
        "progress every second until Ctrl-C.",
        parents=common,
    )
    agents.add_argument(
        "--host", default="127.0.0.1", help="the coordinator's address (default: %(default)s)"
    )
    agents.add_argument(
        "--port",
        type=whole_number(1, 65535),
        default=DEFAULT_PORT,
        help="the coordinator's port (default: %(default)s)",
    )
    agents.add_argument(
        "--token",
        default=DEV_TOKEN,
        help="the coordinator's token (default: the public development token %(default)r)",
    )
    agents.add_argument(
        "--count", type=whole_number(1), default=10, help="agents to start (default: %(default)s)"
    )
    agents.add_argument(
        "--prefix",
        default="agent-",
        help="agent ids are PREFIX0, PREFIX1, ... (default: %(default)r)",
    )
    agents.add_argument(
        "--capability",
        action="append",
        default=[],
        metavar="NAME",
        help="a capability every agent advertises, for tasks; repeatable (default: none)",
    )
    agents.add_argument(
        "--subscribe",
        action="append",
        default=[],
        metavar="PATTERN",
        help="a topic pattern every agent subscribes to, e.g. 'swarm.*.events'; "
        "repeatable (default: none)",
    )
    agents.add_argument(
        "--connections",
        type=whole_number(0),
        default=1,
        help="TCP connections the agents share, 0 for one per agent (default: %(default)s)",
    )
    agents.set_defaults(func=cmd_agents)

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
        "backends, and a fidelity report (about 15 minutes)",
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
    cert.set_defaults(func=cmd_certify)

    bench = sub.add_parser(
        "bench", help="speed as ratios against raw baselines (make bench)", parents=common
    )
    bench.add_argument("--quick", action="store_true", help="shorter points, fewer rates")
    bench.add_argument("--json", help="also write the figures to this file")
    bench.set_defaults(func=cmd_bench)
    return parser


def _error(message: str) -> None:
    """One line on stderr: ``error: message``."""
    errors.print("[red]error:[/] ", end="")
    errors.print(message, markup=False, highlight=False, soft_wrap=True)


def _command_name(args: argparse.Namespace) -> str:
    words = ["swarmtwin", args.command]
    if getattr(args, "baseline_command", None):
        words.append(args.baseline_command)
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (module docstring: 0, 1, 2 or 3).

    argparse's own errors exit 2 (``SystemExit``), ``--help`` and ``--version`` 0.
    """
    args = build_parser().parse_args(argv)
    if args.command in DEPRECATED:
        errors.print(
            f"warning: `swarmtwin {args.command}` is deprecated and will be removed in the "
            f"next release; use `swarmtwin {DEPRECATED[args.command]}`",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    try:
        code: int = args.func(args)
    except ScenarioError as exc:
        _error(str(exc))
        return EXIT_BAD_INPUT
    except InvalidRunError as exc:
        _error(str(exc))
        return EXIT_INVALID
    except KeyboardInterrupt:
        errors.print("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        # real.slowdown reads its test-only variable when real/ is first imported,
        # so a bad value fails that import and its class cannot be imported here
        if isinstance(exc, ValueError) and type(exc).__name__ == "SlowdownSettingError":
            _error(str(exc))
            return EXIT_BAD_INPUT
        traceback.print_exc(file=sys.stderr)
        summary = "".join(traceback.format_exception_only(exc)).strip().replace("\n", " ")
        _error(
            f"{_command_name(args)} crashed: {summary} (a bug or a broken environment, "
            "not a result; the traceback is above)"
        )
        return EXIT_INVALID
    return code


if __name__ == "__main__":
    sys.exit(main())

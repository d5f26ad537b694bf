"""``swarmtwin``'s entry point: build the parser from the command groups, run one, map errors.

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
  error on stderr;
- 130 on Ctrl-C, and 141 when the reader of stdout went away (``swarmtwin
  history | head``): quietly, as a shell reports a process that SIGPIPE ended.
  The tool keeps ignoring SIGPIPE itself, so a closed socket never ends a
  coordinator.

Each command group (``harness.cli.run``, ``serve``, ``model``, ``regress``,
``certify``, ``bench``) registers its parsers; each command is a function that
returns its exit code, and ``main`` maps the exceptions. ``--reports DIR`` goes
before or after the subcommand (``options.common``); after it wins.

``check`` checks a scenario file; ``validate`` is its deprecated alias for one
release (``DEPRECATED``: a one-line notice on stderr, then the same command).

A scenario or suite argument that is not an existing path names a file
shipped with swarmtwin (``smoke``, ``faults/partition``,
``scenarios/default.yaml`` from any directory: ``harness.scenario.shipped``), and the
defaults (the validation and certification suites) resolve the same way.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import traceback
from collections.abc import Sequence

from harness.cli import bench, certify, locust, mcp, model, portal, regress, run, serve
from harness.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_INTERRUPTED,
    EXIT_INVALID,
    common,
    package_version,
)
from harness.cli.output import error, errors
from harness.metrics.summary import InvalidRunError
from harness.scenario.errors import ScenarioError

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE
DEPRECATED = {"validate": "check"}  # old command: new one (kept for one release)
GROUPS = (run, locust, serve, portal, mcp, model, regress, certify, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swarmtwin",
        description="A load-testing harness for a multi-agent coordination system, and a "
        "model of it: run a scenario on the real system and on the model, and compare.",
    )
    parser.add_argument("--version", action="version", version=f"swarmtwin {package_version()}")
    parser.add_argument("--reports", default="reports", help="output folder (default: reports)")
    sub = parser.add_subparsers(dest="command", required=True)
    parents = [common()]
    for group in GROUPS:
        group.register(sub, parents)
    return parser


def _command_name(args: argparse.Namespace) -> str:
    words = ["swarmtwin", args.command]
    if getattr(args, "baseline_command", None):
        words.append(args.baseline_command)
    return " ".join(words)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command and return its exit code (module docstring: 0, 1, 2, 3, 130, 141).

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
        sys.stdout.flush()  # inside the try: a reader that left shows here, not at exit
    except BrokenPipeError:
        _stdout_to_devnull()
        return EXIT_BROKEN_PIPE
    except ScenarioError as exc:
        error(str(exc))
        return EXIT_BAD_INPUT
    except InvalidRunError as exc:
        error(str(exc))
        return EXIT_INVALID
    except KeyboardInterrupt:
        errors.print("interrupted")
        return EXIT_INTERRUPTED
    except Exception as exc:
        # real.slowdown reads its test-only variable when real/ is first imported,
        # so a bad value fails that import and its class cannot be imported here
        if isinstance(exc, ValueError) and type(exc).__name__ == "SlowdownSettingError":
            error(str(exc))
            return EXIT_BAD_INPUT
        traceback.print_exc(file=sys.stderr)
        summary = "".join(traceback.format_exception_only(exc)).strip().replace("\n", " ")
        error(
            f"{_command_name(args)} crashed: {summary} (a bug or a broken environment, "
            "not a result; the traceback is above)"
        )
        return EXIT_INVALID
    return code


def _stdout_to_devnull() -> None:
    """After a broken pipe: send what is still buffered for stdout nowhere, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout already closed or replaced (as under pytest)
        pass


def entry() -> int:
    """The ``swarmtwin`` command: ``main``, then ``gc.freeze()`` before the
    interpreter exits, so that its last collection does not walk every object
    a large run left behind (1.5 to 1.9 s after an 8 s model run). Only for a
    process about to exit: ``main`` itself is also called in-process (tests),
    where a freeze would keep every later object from being collected."""
    code = main()
    gc.freeze()
    return code


if __name__ == "__main__":
    sys.exit(entry())

"""What every command shares: the exit codes, the number types, the common options.

Every number-valued option is checked by one argparse type (``whole_number``,
``positive_number``, ``fraction``), so a bad value exits 2 with the same
sentence everywhere; ``--repetitions`` and ``--replications`` take
``REPETITIONS`` on every command. ``common()`` is the parent parser that lets
``--reports DIR`` come after the subcommand as well as before it.
"""

from __future__ import annotations

import argparse
import math
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, TypeAlias

from protocol.settings import DEV_TOKEN

EXIT_OK = 0
EXIT_FAILED = 1  # a target, gate or regression failed
EXIT_BAD_INPUT = 2  # a bad scenario, suite, baseline or argument
EXIT_INVALID = 3  # the run itself was invalid, or the tool crashed
EXIT_INTERRUPTED = 130
SCENARIO_HELP = "a scenario file, or a shipped scenario's name: smoke, faults/partition, ..."
DEFAULT_TRANSPORT = "tcp"  # scenarios/default.yaml's, which `make run` runs
DEFAULT_PORT = 7400


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


def common() -> argparse.ArgumentParser:
    """Options every subcommand also takes after its name (``run smoke --reports DIR``)."""
    parent = argparse.ArgumentParser(add_help=False)
    parent.add_argument(
        "--reports",
        default=argparse.SUPPRESS,  # only when given: the top-level one stays otherwise
        help="output folder, also accepted before the command (default: reports)",
    )
    return parent


def package_version() -> str:
    """The installed distribution's version, else the checkout's ``pyproject.toml`` version."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("swarmtwin")
    except PackageNotFoundError:
        pass
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    try:
        return str(tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["version"])
    except (OSError, KeyError, TypeError, tomllib.TOMLDecodeError):
        return "unknown"


if TYPE_CHECKING:
    # what each command group's ``register(sub, parents)`` receives
    Subcommands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]


def listen_options(
    parser: argparse.ArgumentParser, port: int, port_help: str, token_help: str
) -> None:
    """``--host``, ``--port`` and ``--token`` for a server: loopback unless told
    otherwise, and any other address needs a secret token (``bind_refusal``)."""
    parser.add_argument(
        "--host",
        default="127.0.0.1",
        help="address to listen on; any but a loopback one needs a secret --token "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--port", type=PORT, default=port, help=f"{port_help} (default: %(default)s)"
    )
    parser.add_argument(
        "--token",
        default=DEV_TOKEN,
        help=f"{token_help} (default: the public development token %(default)r, accepted on "
        "loopback only)",
    )

"""``bench``: speed as ratios against raw baselines measured in the same run."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.cli.options import Subcommands


def cmd_bench(args: argparse.Namespace) -> int:
    from harness.bench.run import main as bench_main

    return bench_main(
        [*(["--quick"] if args.quick else []), *(["--json", args.json] if args.json else [])]
    )


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    bench = sub.add_parser(
        "bench", help="speed as ratios against raw baselines (make bench)", parents=common
    )
    bench.add_argument("--quick", action="store_true", help="shorter points, fewer rates")
    bench.add_argument("--json", help="also write the figures to this file")
    bench.set_defaults(func=cmd_bench)

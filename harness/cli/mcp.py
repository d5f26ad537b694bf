"""``mcp``: the MCP server (``harness.mcp``) over stdio, for desktop clients.

Standard output carries the protocol and nothing else; everything this process
or its children would print goes to standard error.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from harness.cli.options import Subcommands


def cmd_mcp(args: argparse.Namespace) -> int:
    from harness.mcp.server import run_stdio

    return run_stdio(Path(args.reports))


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    mcp = sub.add_parser(
        "mcp",
        help="serve the MCP tools over stdio (swarm, memory, runs)",
        description="Serve swarmtwin's MCP server on standard input and output until the "
        "client closes them: tools to start a swarm and act in it, to run scenarios and read "
        "their figures (docs/mcp.md). `swarmtwin serve` also serves it over HTTP at /mcp/.",
        parents=common,
    )
    mcp.set_defaults(func=cmd_mcp)

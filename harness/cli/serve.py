"""``coordinator`` and ``agents``: a real system started by hand, in the foreground."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import DEFAULT_PORT, EXIT_BAD_INPUT, listen_options, whole_number
from protocol.settings import DEV_TOKEN, TOKEN_ENV, ProtocolSettings

if TYPE_CHECKING:
    from harness.cli.options import Subcommands


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

    names = args.name or [f"{args.prefix}{i}" for i in range(args.count)]
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV, DEV_TOKEN)
    code = agents_command(
        args.host,
        args.port,
        token,
        names,
        tuple(args.capability),
        tuple(args.subscribe),
        args.connections,
    )
    # 1 is the coordinator rejecting the agents (a wrong token or name): bad input
    return EXIT_BAD_INPUT if code == 1 else code


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    coord = sub.add_parser(
        "coordinator",
        help="start a coordinator server by hand",
        description="Serve a coordinator in the foreground until Ctrl-C (SIGINT) or SIGTERM.",
        parents=common,
    )
    listen_options(coord, DEFAULT_PORT, "TCP port, 0 for any", "shared secret agents must present")
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
        default=None,
        help=f"the coordinator's token; without it, ${TOKEN_ENV} (default: "
        f"{DEV_TOKEN!r} when that is not set either)",
    )
    agents.add_argument(
        "--count", type=whole_number(1), default=10, help="agents to start (default: %(default)s)"
    )
    agents.add_argument(
        "--name",
        action="append",
        default=[],
        metavar="ID",
        help="an agent id, instead of --count and --prefix; repeatable (default: none)",
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

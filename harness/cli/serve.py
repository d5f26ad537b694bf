"""``coordinator`` and ``agents``: a real system started by hand, in the foreground."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import DEFAULT_PORT, EXIT_BAD_INPUT, listen_options, whole_number
from protocol.nodes import COORDINATOR_ID
from protocol.settings import DEV_TOKEN, TOKEN_ENV, ProtocolSettings

if TYPE_CHECKING:
    from harness.cli.options import Subcommands
    from real.tcp.uplink import TreePlace


def cmd_coordinator(args: argparse.Namespace) -> int:
    from real.tcp.server import coordinator_command

    try:
        tree = tree_place(args.node_id, args.parent)
    except ValueError as exc:
        print(f"swarmtwin coordinator: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    settings = ProtocolSettings(token=args.token)
    db = args.db
    if db is None and tree is None:
        db = str(Path(args.reports) / "coordinator.sqlite")
    code = coordinator_command(args.host, args.port, args.token, db, settings, tree)
    # it returns 1 for an address it cannot listen on or a database it cannot
    # open: arguments that cannot be used, which is bad input here (2 stays 2)
    return EXIT_BAD_INPUT if code == 1 else code


def tree_place(node_id: str | None, parents: list[str]) -> TreePlace | None:
    """Where ``--node-id`` and ``--parent`` put this coordinator: None for the root of
    a tree (or a flat coordinator); ``ValueError`` saying what is wrong."""
    from real.tcp.uplink import TreePlace

    if not parents:
        if node_id not in (None, COORDINATOR_ID):
            raise ValueError(f"--node-id {node_id!r} needs --parent (only the root has none)")
        return None
    if node_id is None or node_id == COORDINATOR_ID:
        raise ValueError(
            "a coordinator with --parent needs its own --node-id "
            f"(not the root's, {COORDINATOR_ID!r})"
        )
    chain: list[str] = []
    addresses: dict[str, tuple[str, int]] = {}
    for text in parents:
        name, _, address = text.rpartition("@")
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(
                f"--parent {text!r}: expected [NODE@]HOST:PORT, e.g. coord.1@127.0.0.1:7401"
            )
        name = name or COORDINATOR_ID
        if name == node_id or name in addresses:
            raise ValueError(f"--parent {text!r}: node {name!r} appears twice in the chain")
        chain.append(name)
        addresses[name] = (host, int(port))
    if chain[-1] != COORDINATOR_ID:
        raise ValueError(
            f"the last --parent must be the root ({COORDINATOR_ID!r}), got {chain[-1]!r}"
        )
    return TreePlace(node_id, tuple(chain), addresses)


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
        help="SQLite file the memory store is persisted to (default: <reports>/coordinator.sqlite "
        "for the root; none for a node with --parent: the root owns the memory)",
    )
    coord.add_argument(
        "--node-id",
        default=None,
        metavar="ID",
        help=f"this coordinator's node id in a tree (default: the root's, {COORDINATOR_ID!r})",
    )
    coord.add_argument(
        "--parent",
        action="append",
        default=[],
        metavar="[NODE@]HOST:PORT",
        help="join a tree under this coordinator; repeat for the grandparent and so on up to "
        f"the root (NODE defaults to the root's id, {COORDINATOR_ID!r}): if the parent dies, "
        "this node re-attaches to the next one (default: none, this is the root)",
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

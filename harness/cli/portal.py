"""``serve``: the web portal (``harness.portal``), in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import EXIT_BAD_INPUT, EXIT_OK, listen_options
from harness.cli.output import console, error, warn
from protocol.settings import DEV_TOKEN

if TYPE_CHECKING:
    from harness.cli.options import Subcommands

PORTAL_PORT = 8089


def cmd_serve(args: argparse.Namespace) -> int:
    from harness.portal.app import missing_assets, serve
    from harness.swarm.console import Coordinator
    from protocol.settings import ProtocolSettings

    refusal = ProtocolSettings(token=args.token).bind_refusal(args.host)
    if refusal:
        error(f"serve: {refusal} (--token)")
        return EXIT_BAD_INPUT
    coordinator = None
    if args.coordinator is not None:
        try:
            coordinator = Coordinator.parse(args.coordinator, args.coordinator_token)
        except ValueError as exc:
            error(f"serve: {exc}")
            return EXIT_BAD_INPUT
    missing = missing_assets()
    if missing:
        warn(
            f"the page's chart library is missing ({', '.join(missing)}): run "
            "`bash scripts/install-web.sh` (make run and make test do)"
        )
    shown = "localhost" if args.host in ("127.0.0.1", "::1") else args.host
    fragment = "" if args.token == DEV_TOKEN else f"#token={args.token}"
    console.print(f"portal: http://{shown}:{args.port}/{fragment}  (Ctrl-C to stop)")
    console.print(f"API: http://{shown}:{args.port}/docs, runs filed under {args.reports}")
    console.print(
        f"MCP: http://{shown}:{args.port}/mcp/ (streamable HTTP, Authorization: Bearer <token>)"
    )
    if coordinator is not None:
        console.print(
            f"attached to the coordinator at {coordinator.host}:{coordinator.port}: "
            f"its status at /api/system, its agents' gateway at ws://{shown}:{args.port}/ws/agent"
        )
    try:
        serve(args.host, args.port, args.token, Path(args.reports), coordinator)
    except OSError as exc:
        error(f"serve: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}")
        return EXIT_BAD_INPUT
    return EXIT_OK


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    serve = sub.add_parser(
        "serve",
        help="the web portal: start runs, watch them live, browse the history",
        description="Serve the portal (HTTP, the live WebSocket and the page) in the "
        "foreground until Ctrl-C.",
        parents=common,
    )
    listen_options(
        serve, PORTAL_PORT, "TCP port", "the secret that starting and stopping jobs needs"
    )
    serve.add_argument(
        "--coordinator",
        default=None,
        metavar="HOST:PORT",
        help="a running tcp coordinator to attach to: its live status and memory in the "
        "portal, and a WebSocket gateway for its agents at /ws/agent (default: none)",
    )
    serve.add_argument(
        "--coordinator-token",
        default=DEV_TOKEN,
        help="the coordinator's token (default: the public development token)",
    )
    serve.set_defaults(func=cmd_serve)

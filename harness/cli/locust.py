"""``locust``: a scenario with Locust's users as the real load (``real.locust``), on
this host or, with ``--master`` and ``--worker``, on several (docs/scale-out.md).

The command is ``run`` with another real driver: ``cmd_locust`` checks what only
Locust needs (the scenario has no faults, consensus or tree yet; a non-loopback
``--host`` has a secret token), then calls ``cmd_run`` with ``locust_driver`` (which
hands ``run_scenario`` Locust's driver) and ``locust_layout`` (the agents as Locust
lays them out, for the model) in its arguments. ``--worker`` starts no run of its
own: its Locust workers get the plan, their agents and the clock from the master.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from harness.cli.options import (
    EXIT_BAD_INPUT,
    EXIT_INVALID,
    EXIT_OK,
    SCENARIO_HELP,
    listen_options,
    positive_number,
    whole_number,
)
from harness.cli.output import console, error
from harness.cli.run import cmd_run, run_options
from harness.scenario.errors import ScenarioError
from harness.scenario.schema import Scenario, load_scenario
from harness.scenario.shipped import resolve
from protocol.settings import DEV_TOKEN, TOKEN_ENV, ProtocolSettings, is_loopback
from real.locust.job import DEFAULT_MASTER_PORT

if TYPE_CHECKING:
    from harness.cli.options import Subcommands
    from protocol.plan import Plan
    from protocol.records import DriverResult


@contextmanager
def locust_driver(
    args: argparse.Namespace,
) -> Iterator[tuple[Callable[[Plan], DriverResult] | None, Path | None]]:
    """``swarmtwin locust``: Locust's driver for the real runs, and the folder where
    Locust writes its own files (``cmd_run`` enters it as ``args.real_driver``)."""
    processes = args.processes
    from real.locust.run import Master
    from real.locust.run import run_plan as locust_run

    master = None
    if args.master:
        master = Master(args.host, args.workers, args.token, args.port, args.wait_workers)
    portal = None
    if args.via == "websocket" or args.http_users:
        from harness.portal.serving import portal_gateway
        from real.locust.run import Portal

        portal = Portal(portal_gateway, args.via == "websocket", args.http_users)
    with tempfile.TemporaryDirectory(prefix="swarmtwin-locust-") as scratch:
        out = Path(scratch)
        driver = partial(locust_run, processes=processes, out_dir=out, master=master, portal=portal)
        yield driver, out


def cmd_locust(args: argparse.Namespace) -> int:
    """``swarmtwin locust``: ``run`` with Locust's users as the real load (real.locust);
    with ``--worker``, Locust workers for a master elsewhere."""
    if args.worker:
        return _locust_worker(args)
    if args.scenario is None:
        error("locust: a scenario is needed (only --worker runs without one)")
        return EXIT_BAD_INPUT
    refusal = ProtocolSettings(token=args.token).bind_refusal(args.host)
    if refusal:
        error(f"locust: {refusal} (--token)")
        return EXIT_BAD_INPUT
    if not args.master and not is_loopback(args.host):
        error("locust: --host other than loopback is for --master (workers on other hosts)")
        return EXIT_BAD_INPUT
    if args.host in ("0.0.0.0", "::"):
        error("locust: --host must be the address the workers reach, not a wildcard")
        return EXIT_BAD_INPUT
    path = resolve(args.scenario)
    refusal = locust_refusal(load_scenario(path))
    if refusal is not None:
        raise ScenarioError(str(path), *refusal)
    args.transport = "tcp"
    args.cluster = None
    args.dashboard = False
    args.real_driver = locust_driver
    args.layout = partial(locust_layout, processes=args.workers if args.master else args.processes)
    return cmd_run(args)


def locust_layout(scenario: Scenario, processes: int) -> Scenario:
    """The scenario as Locust lays its agents out, for the model beside it: one
    process per Locust worker process (one for a single local process), each agent
    on a link of its own (no vouchers). The real run takes its layout from Locust."""
    agents = scenario.agents.model_copy(
        update={"workers": max(1, processes), "connections": "per_agent"}
    )
    return scenario.model_copy(update={"agents": agents})


def _locust_worker(args: argparse.Namespace) -> int:
    """``swarmtwin locust --worker --master-host H``: Locust workers whose users get
    their agents, plan and clock from the master (``real.locust.job``)."""
    from real.locust.run import run_worker

    if args.scenario is not None:
        error("locust --worker takes no scenario: the master sends the plan")
        return EXIT_BAD_INPUT
    if args.master:
        error("locust: --master and --worker exclude each other")
        return EXIT_BAD_INPUT
    token = args.token
    if token == DEV_TOKEN:
        token = os.environ.get(TOKEN_ENV, DEV_TOKEN)
    console.print(
        f"Locust workers for the master at {args.master_host}:{args.port} "
        f"({args.processes or 1} process{'es' if args.processes > 1 else ''}); "
        "they end with the master's run"
    )
    code = run_worker(args.master_host, args.port, args.processes, token, args.timeout)
    if code == 124:
        error(f"locust --worker: no end of run from the master within {args.timeout:g} s")
        return EXIT_INVALID
    return EXIT_OK if code == 0 else EXIT_INVALID


def locust_refusal(scenario: Scenario) -> tuple[str, str] | None:
    """The field and what ``swarmtwin locust`` expects of it, where Locust cannot
    drive ``scenario`` yet; None when it can."""
    if scenario.faults:
        return "faults", "empty: swarmtwin locust runs no fault timeline yet"
    if scenario.consensus is not None:
        return "consensus", "none: swarmtwin locust drives one flat coordinator for now"
    if scenario.topology.tree:
        return "topology.kind", "flat: swarmtwin locust drives one flat coordinator for now"
    return None


def register(sub: Subcommands, common: list[argparse.ArgumentParser]) -> None:
    text = (
        "run a scenario with Locust as the real load: one Locust user per agent, open "
        "loop, against a tcp coordinator on loopback (docs/scale-out.md)"
    )
    locust = sub.add_parser("locust", help=text, description=text, parents=common)
    locust.add_argument("scenario", nargs="?", help=SCENARIO_HELP + " (none with --worker)")
    locust.add_argument(
        "--backend",
        choices=["real", "both"],
        default="both",
        help="both: the model beside it, as run does (default: %(default)s)",
    )
    locust.add_argument(
        "--processes",
        type=whole_number(0, 64),
        default=0,
        help="Locust worker processes beside its master, each with its share of the "
        "users (Locust's --processes); 0: one process (default: %(default)s)",
    )
    locust.add_argument(
        "--via",
        choices=["tcp", "websocket"],
        default="tcp",
        help="how the users reach the coordinator: tcp, or the web portal's agents' "
        "WebSocket gateway (/ws/agent), which this command serves beside it "
        "(default: %(default)s)",
    )
    locust.add_argument(
        "--http-users",
        type=whole_number(0, 1000),
        default=0,
        metavar="N",
        help="N Locust users send the plan's memory operations to the web portal's HTTP "
        "API (POST /api/system/memory), which this command serves beside the "
        "coordinator, instead of their agents (default: %(default)s)",
    )
    run_options(locust)
    hosts = locust.add_argument_group(
        "several hosts", "a master here, Locust workers on other hosts (docs/scale-out.md)"
    )
    hosts.add_argument(
        "--master",
        action="store_true",
        help="run the coordinator and Locust's master here, the users on --workers Locust "
        "workers started elsewhere with --worker",
    )
    hosts.add_argument(
        "--workers",
        type=whole_number(1, 1000),
        default=1,
        help="with --master: the Locust worker processes to wait for, over every "
        "--worker host (each of its --processes counts; default: %(default)s)",
    )
    hosts.add_argument(
        "--wait-workers",
        type=positive_number,
        default=120.0,
        metavar="SECONDS",
        help="with --master: how long to wait for them (default: %(default)g)",
    )
    hosts.add_argument(
        "--worker",
        action="store_true",
        help="run Locust workers (--processes of them) for the master at --master-host",
    )
    hosts.add_argument(
        "--master-host",
        default="127.0.0.1",
        help="with --worker: the master's address (default: %(default)s)",
    )
    hosts.add_argument(
        "--timeout",
        type=positive_number,
        default=3600.0,
        metavar="SECONDS",
        help="with --worker: give up if the master's run has not ended by then "
        "(default: %(default)g)",
    )
    listen_options(
        hosts,
        DEFAULT_MASTER_PORT,
        "Locust master's port, to listen on (--master) or to reach (--worker)",
        "the coordinator's token (--master), or the one the workers' agents present "
        f"(--worker; default there: ${TOKEN_ENV} when set)",
    )
    locust.set_defaults(func=cmd_locust)

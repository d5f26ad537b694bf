"""Security checks: the coordinator binds loopback by default; the CLI guards public binds.

How it works. ``loopback_check`` reads ``real.server.DEFAULT_HOST`` and the
host defaults of ``serve`` and ``coordinator_command``, then looks at the
running coordinator child (started with those defaults) from outside: psutil
lists the sockets it listens on, a connection to 127.0.0.1 on its port must
succeed, and a connection to each non-loopback address of this machine
(from ``psutil.net_if_addrs``) on the same port must fail. With no
non-loopback address that part is skipped and the detail says so.

``cli_check`` calls ``harness.cli.main`` in this process with
``coordinator --host 0.0.0.0`` and the default (public) token, with
``real.server.coordinator_command`` replaced for the duration by a stub that
records the call, so a regression could never start a public server. It
must return 2 without reaching the stub; two controls (a loopback host, and
a public host with a secret token) must reach it, which shows the stub is
really in the path. ``harness`` is imported lazily, only here: the rest of
``real/`` never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import inspect
import io
import ipaddress
import socket

import psutil

import real.server as server_module
from protocol.settings import ProtocolSettings
from real.security_base import SecurityCheck, Target

CONNECT_TIMEOUT = 1.0


def non_loopback_addresses() -> list[str]:
    """This machine's IPv4 and global IPv6 addresses that are not loopback."""
    found: list[str] = []
    for addrs in psutil.net_if_addrs().values():
        for addr in addrs:
            if addr.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = addr.address.split("%")[0]
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or ip.is_unspecified:
                continue
            if text not in found:
                found.append(text)
    return found


async def _connects(host: str, port: int) -> str:
    """ "accepted", "refused" or "no answer" for a connection to ``host:port``."""
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), CONNECT_TIMEOUT)
    except TimeoutError:
        return "no answer"
    except OSError:
        return "refused"
    writer.close()
    return "accepted"


def _listening(pid: int, port: int) -> list[str]:
    try:
        conns = psutil.Process(pid).net_connections(kind="inet")
    except (psutil.Error, OSError) as exc:
        return [f"unreadable ({type(exc).__name__})"]
    return sorted(
        c.laddr.ip for c in conns if c.status == psutil.CONN_LISTEN and c.laddr.port == port
    )


async def loopback_check(target: Target) -> list[SecurityCheck]:
    default_host = server_module.DEFAULT_HOST
    defaults = {
        "serve": inspect.signature(server_module.serve).parameters["host"].default,
        "coordinator_command": inspect.signature(server_module.coordinator_command)
        .parameters["host"]
        .default,
    }
    port = target.port
    pid = target.server.pid
    listening = _listening(pid, port) if pid is not None else ["no process"]
    local = await _connects("127.0.0.1", port)
    others = non_loopback_addresses()
    outside = {addr: await _connects(addr, port) for addr in others}
    reachable = [addr for addr, result in outside.items() if result == "accepted"]
    passed = (
        default_host == "127.0.0.1"
        and all(value == "127.0.0.1" for value in defaults.values())
        and listening == ["127.0.0.1"]
        and local == "accepted"
        and not reachable
    )
    if others:
        outside_text = ", ".join(f"{addr}: {result}" for addr, result in outside.items())
        outside_text = f"connections to this machine's other addresses on that port: {outside_text}"
    else:
        outside_text = "this machine has no non-loopback address, so that part was skipped"
    detail = (
        f"DEFAULT_HOST is {default_host!r}; host defaults {defaults}; the coordinator "
        f"(pid {pid}) listens on {listening} port {port}; a connection to 127.0.0.1 was "
        f"{local}; {outside_text}"
    )
    return [
        SecurityCheck(
            "default_bind_loopback",
            passed,
            detail,
            "The coordinator child was started with the default host; psutil listed its "
            "listening sockets and connections were tried to 127.0.0.1 and to every "
            "non-loopback address of the machine on its port.",
        )
    ]


def cli_check() -> list[SecurityCheck]:
    calls: list[tuple[object, ...]] = []

    def stub(*args: object, **kwargs: object) -> int:
        calls.append(args)
        return 0

    cli = importlib.import_module("harness.cli")
    default_token = ProtocolSettings().token
    runs = {
        "public host, default token": ["coordinator", "--host", "0.0.0.0"],
        "public host, default token given": [
            "coordinator",
            "--host",
            "0.0.0.0",
            "--token",
            default_token,
        ],
        "loopback host (control)": ["coordinator", "--host", "127.0.0.1"],
        "public host, secret token (control)": [
            "coordinator",
            "--host",
            "0.0.0.0",
            "--token",
            "a-secret-token",
        ],
    }
    results: dict[str, tuple[int, bool]] = {}
    original = server_module.coordinator_command
    server_module.coordinator_command = stub
    try:
        for label, argv in runs.items():
            before = len(calls)
            with (
                contextlib.redirect_stderr(io.StringIO()),
                contextlib.redirect_stdout(io.StringIO()),
            ):
                code = cli.main(argv)
            results[label] = (code, len(calls) > before)
    finally:
        server_module.coordinator_command = original
    refused = [results[k] == (2, False) for k in list(runs)[:2]]
    controls = [results[k] == (0, True) for k in list(runs)[2:]]
    passed = all(refused) and all(controls)
    detail = "; ".join(
        f"{label}: exit {code}, {'would start' if started else 'did not start'}"
        for label, (code, started) in results.items()
    )
    return [
        SecurityCheck(
            "cli_refuses_public_bind_with_default_token",
            passed,
            detail,
            "harness.cli.main was called in this process with real.server.coordinator_command "
            "replaced by a stub that records whether the server would have started.",
        )
    ]

"""Security check: the coordinator binds loopback by default.

How it works. ``loopback_check`` reads ``real.tcp.server.DEFAULT_HOST`` and the
host defaults of ``serve`` and ``coordinator_command``, then looks at the
running coordinator child (started with those defaults) from outside: psutil
lists the sockets it listens on, a connection to 127.0.0.1 on its port must
succeed, and a connection to each non-loopback address of this machine
(from ``psutil.net_if_addrs``) on the same port must fail. With no
non-loopback address that part is skipped and the detail says so. (That the
CLI refuses a public bind with the default token is checked by
``harness.certify.cli_check``: ``real/`` never imports ``harness``.)
"""

from __future__ import annotations

import asyncio
import inspect
import ipaddress
import socket

import psutil

import real.tcp.server as server_module
from harness.certify.security.base import SecurityCheck, Target

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

"""The fault proxies' child process: one event loop, ``count`` proxies, driven by a pipe.

``real.tcp.faults.LinkProxies`` starts it (through ``real.tcp.children``), one proxy
per worker, and sends it each link fault as it starts and ends;
``real.tcp.replicaservers.ReplicaServers`` starts one with a proxy per ordered
pair of replicas, each to its own upstream port. The proxy itself is
``real.netfault.proxy.FaultProxy``.
"""

from __future__ import annotations

import asyncio
import random
from multiprocessing.connection import Connection
from typing import Any

from real.clock import new_event_loop
from real.netfault.proxy import LOOPBACK, FaultProxy
from real.tcp.framing import PipeChannel


def proxy_process_main(
    conn: Connection,
    upstream_port: int | list[int],
    count: int,
    seed: int,
    use_uvloop: bool = True,
) -> None:
    """Child-process entry: ``count`` proxies to 127.0.0.1:``upstream_port`` on one loop
    (or, when ``upstream_port`` is a list, one proxy to each port of it).

    Proxy ``i`` draws from ``random.Random(f"{seed}:proxy:{i}")``. Pipe
    protocol: sends ``("ready", [port, ...])`` once every proxy listens, then
    obeys ``("fault", i, delay, loss, partitioned)``, ``("clear", i)``,
    ``"stats"`` (reply ``("stats", [dict, ...])`` and carry on) and
    ``"stop"`` (close every proxy, reply ``("stats", [dict, ...])``, one
    ``ProxyStats.as_dict`` per proxy, and return). A command it cannot obey
    is answered ``("error", reason)``. Commands are read by a loop reader
    callback, so the pipe never blocks the proxies. If the parent's end of
    the pipe closes, the proxies are closed and the function returns.
    """
    loop = new_event_loop(use_uvloop)
    try:
        ports = upstream_port if isinstance(upstream_port, list) else [upstream_port] * count
        loop.run_until_complete(_run_proxies(conn, ports, seed))
    except (OSError, EOFError):
        pass
    finally:
        loop.close()
        conn.close()


async def _run_proxies(conn: Connection, upstreams: list[int], seed: int) -> None:
    channel = PipeChannel(conn)
    proxies = [
        FaultProxy(LOOPBACK, port, random.Random(f"{seed}:proxy:{i}"))
        for i, port in enumerate(upstreams)
    ]
    try:
        ports = [await proxy.start() for proxy in proxies]
        if not channel.send(("ready", ports)):
            return
        while True:
            item = await channel.get()
            if item is None:
                return
            if item == "stop":
                await _close_all(proxies)
                channel.send(("stats", [proxy.stats.as_dict() for proxy in proxies]))
                return
            reply = _obey(proxies, item)
            if reply is not None:
                channel.send(reply)
    finally:
        await _close_all(proxies)
        channel.close()


def _obey(proxies: list[FaultProxy], item: Any) -> tuple[str, Any] | None:
    """Carry out one command; the reply to send, if any."""
    try:
        if item == "stats":
            return ("stats", [proxy.stats.as_dict() for proxy in proxies])
        if isinstance(item, tuple) and item[:1] == ("fault",) and len(item) == 5:
            _, index, delay, loss, partitioned = item
            proxies[index].set_fault(delay, loss, partitioned)
            return None
        if isinstance(item, tuple) and item[:1] == ("clear",) and len(item) == 2:
            proxies[item[1]].clear()
            return None
    except (IndexError, TypeError, ValueError) as exc:
        return ("error", f"{item!r}: {exc}")
    return ("error", f"unknown command {item!r}")


async def _close_all(proxies: list[FaultProxy]) -> None:
    await asyncio.gather(*(proxy.close() for proxy in proxies))

"""The portal served on this process's event loop, for as long as an ``async with``
lasts: ``portal_gateway`` starts uvicorn on a socket of its own, attached to a
running coordinator, and yields the URL of its agents' WebSocket gateway (its HTTP
API is at the same address). The certification's security checks go through it,
and ``swarmtwin locust --via websocket`` and ``--http-users`` send load through it.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

START_TIMEOUT = 10.0  # s for the portal to start listening


@asynccontextmanager
async def portal_gateway(host: str, coordinator_port: int, token: str) -> AsyncIterator[str]:
    """Serve the portal on ``host`` (a free port), attached to the coordinator at
    ``host:coordinator_port`` whose token is ``token``; yields the gateway's URL."""
    import uvicorn

    from harness.portal.app import create_app
    from harness.swarm.console import Coordinator

    with tempfile.TemporaryDirectory(prefix="swarmtwin-gateway-") as reports:
        coordinator = Coordinator(host, coordinator_port, token)
        app = create_app(Path(reports), token, coordinator=coordinator)
        config = uvicorn.Config(app, log_level="warning", ws="websockets-sansio")
        server = uvicorn.Server(config)
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on sockets whose proto says
        # TCP, and without it every answer waited for a delayed ACK (44 ms a request)
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listener.bind((host, 0))
        port = listener.getsockname()[1]
        serving = asyncio.get_running_loop().create_task(server.serve(sockets=[listener]))
        try:
            async with asyncio.timeout(START_TIMEOUT):
                while not server.started:
                    if serving.done():
                        serving.result()
                        raise RuntimeError("the portal stopped before it started")
                    await asyncio.sleep(0.02)
            yield f"ws://{host}:{port}/ws/agent"
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, START_TIMEOUT)
            listener.close()

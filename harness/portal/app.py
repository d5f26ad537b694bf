"""The portal's ASGI application, and ``serve`` to run it with uvicorn.

``create_app`` puts together the API (``harness.portal.api``), the page and
its assets (``static/``, with uPlot copied from npm into ``static/vendor`` by
``scripts/install-web.sh``), and the live WebSocket ``/ws/live``, which sends a
page the frames of ``harness.portal.push`` (read-only: it takes nothing but a
close). A Host check refuses requests whose ``Host`` header is not the
server's own name (DNS rebinding: a page of another site that resolves its
name to 127.0.0.1 must not be able to read the API), and both WebSockets refuse
a page of another site (its ``Origin`` is not this server).

``/mcp/`` is the MCP server (``harness.mcp.http``: streamable HTTP, the portal's
token), sharing the portal's jobs.

With a coordinator (``--coordinator``), ``/ws/agent`` is the agents' gateway to it
(``harness.portal.gateway``) and ``/api/system`` its live view
(``harness.swarm.console``).

``serve`` refuses a bind other machines can reach while the token is the
public default, through the same check the coordinator uses
(``ProtocolSettings.bind_refusal``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from html import escape
from pathlib import Path
from urllib.parse import urlsplit

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from harness.mcp.http import McpMount
from harness.portal.api import router
from harness.portal.gateway import NO_COORDINATOR, POLICY, Gateway
from harness.portal.state import Portal
from harness.swarm.console import Coordinator
from protocol.settings import DEV_TOKEN, ProtocolSettings, is_loopback

STATIC = Path(__file__).resolve().parent / "static"
VENDOR = STATIC / "vendor"
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "::1", "[::1]")


def create_app(
    reports: Path,
    token: str = DEV_TOKEN,
    allowed_hosts: tuple[str, ...] = LOOPBACK_NAMES,
    coordinator: Coordinator | None = None,
) -> FastAPI:
    """The application, filing and reading runs under ``reports``; attached to a live
    ``coordinator`` for the system view, memory and the agents' gateway, if given."""
    state = Portal(Path(reports), ProtocolSettings(token=token), coordinator)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state.loop = asyncio.get_running_loop()
        state.pusher.start()
        try:
            async with mcp.running():
                yield
        finally:
            await state.mcp.close()
            await state.jobs.close()
            await state.pusher.stop()
            await state.system.close()

    app = FastAPI(
        title="swarmtwin portal",
        summary="Live runs of the real system and its model, their history and reports.",
        version="1",
        lifespan=lifespan,
    )
    app.state.portal = state
    public = "*" in allowed_hosts
    mcp = McpMount(app, state.mcp, state.settings, public)
    state.mcp_gate = mcp.gate
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(allowed_hosts))
    app.include_router(router)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> HTMLResponse:
        page = (STATIC / "index.html").read_text()
        # the public development token may sit in the page (it is only accepted on
        # loopback); a secret one comes from the URL's #token=..., which no request carries
        shown = token if token == DEV_TOKEN else ""
        return HTMLResponse(page.replace("{{TOKEN}}", escape(shown, quote=True)))

    @app.websocket("/ws/agent")
    async def agent(socket: WebSocket) -> None:
        if await _cross_origin(socket):
            return
        gateway: Gateway | None = state.gateway
        if gateway is None:
            await socket.accept()
            await socket.close(NO_COORDINATOR, "not attached: swarmtwin serve --coordinator")
            return
        await gateway.serve(socket)

    @app.websocket("/ws/live")
    async def live(socket: WebSocket) -> None:
        if await _cross_origin(socket):
            return
        await socket.accept()
        client = state.pusher.connect()
        reader = asyncio.create_task(_drain(socket))
        try:
            while not reader.done():
                frame_task = asyncio.create_task(client.next_frame())
                done, _ = await asyncio.wait(
                    {frame_task, reader}, return_when=asyncio.FIRST_COMPLETED
                )
                if frame_task not in done:
                    frame_task.cancel()
                    break
                await socket.send_text(frame_task.result())
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, WebSocketDisconnect, RuntimeError):
                await reader
            state.pusher.disconnect(client)

    return app


async def _cross_origin(socket: WebSocket) -> bool:
    """Refuse (and say True for) a WebSocket opened by a page of another site.

    Browsers let any page open a WebSocket to any address, sending its own
    ``Origin``; without this check a hostile page could read the live frames or,
    with the public development token, join the swarm through the gateway. A
    client that is not a browser sends no ``Origin`` and is let through."""
    origin = socket.headers.get("origin")
    if origin is None or urlsplit(origin).netloc == socket.headers.get("host", ""):
        return False
    await socket.close(POLICY, "cross-origin WebSocket refused")
    return True


async def _drain(socket: WebSocket) -> None:
    """Read (and ignore) what a page sends until it closes: the socket is one-way."""
    while True:
        message = await socket.receive()
        if message["type"] == "websocket.disconnect":
            return


def hosts_for(host: str) -> tuple[str, ...]:
    """The Host headers a server bound to ``host`` accepts."""
    if is_loopback(host):
        return LOOPBACK_NAMES
    return ("*",)  # reachable by any name: the secret token is the protection


def serve(
    host: str, port: int, token: str, reports: Path, coordinator: Coordinator | None = None
) -> int:
    """Run the portal until Ctrl-C; ``ValueError`` for a bind that needs a secret token."""
    import uvicorn

    refusal = ProtocolSettings(token=token).bind_refusal(host)
    if refusal:
        raise ValueError(refusal)
    app = create_app(reports, token, hosts_for(host), coordinator)
    config = uvicorn.Config(app, host=host, port=port, log_level="warning", ws="websockets-sansio")
    uvicorn.Server(config).run()
    return 0


def missing_assets() -> list[str]:
    """The chart library's files the page needs and this installation lacks."""
    wanted = ("uPlot.iife.min.js", "uPlot.min.css")
    return [name for name in wanted if not (VENDOR / name).is_file()]

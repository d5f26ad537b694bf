"""The MCP server over streamable HTTP, mounted in ``swarmtwin serve`` at ``/mcp/``.

``McpMount(app, state, settings, public)`` builds the server on ``state`` (which
shares the portal's jobs) and mounts ``TokenGate`` at ``/mcp``; the portal's
lifespan enters ``running()``, which puts the SDK's streamable HTTP application
behind the gate and runs its session manager. Every request needs
``Authorization: Bearer <token>``, the portal's token: the tools start
processes and write memory, and there are no cookies, so a page of another site
cannot use them. On loopback the SDK's own
DNS-rebinding check (``Host`` and ``Origin`` must be a loopback name) stays on;
on a public bind, with the secret token the portal then requires, it is off
and the token is the protection.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.types import ASGIApp, Receive, Scope, Send

from harness.mcp.server import build_server
from harness.mcp.state import McpState
from protocol.settings import ProtocolSettings

PATH = "/mcp"


class TokenGate:
    """Lets through only HTTP requests that carry the bearer token."""

    def __init__(self, settings: ProtocolSettings) -> None:
        self.app: ASGIApp | None = None  # the SDK's application, while the server runs
        self.settings = settings
        self.refused = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        if self.app is None or not self._carries_token(scope):
            self.refused += self.app is not None
            status, text = (
                (401, "send Authorization: Bearer <the portal's token>")
                if self.app is not None
                else (503, "the MCP server is not running")
            )
            await send(
                {
                    "type": "http.response.start",
                    "status": status,
                    "headers": [
                        (b"content-type", b"application/json"),
                        (b"www-authenticate", b"Bearer"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": json.dumps({"error": text}).encode()})
            return
        await self.app(scope, receive, send)

    def _carries_token(self, scope: Scope) -> bool:
        headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
        for name, value in headers:
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and self.settings.accepts(token.strip())
        return False


class McpMount:
    """The MCP server mounted at ``/mcp/``; ``running()`` serves it for one lifespan."""

    def __init__(
        self, app: Starlette, state: McpState, settings: ProtocolSettings, public: bool
    ) -> None:
        self.server = build_server(state)
        self.security: Any = (
            TransportSecuritySettings(enable_dns_rebinding_protection=False) if public else None
        )
        self.gate = TokenGate(settings)
        app.mount(PATH, self.gate)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """A fresh SDK application and session manager (one per lifespan, as the SDK
        requires), served until the lifespan ends."""
        self.gate.app = self.server.streamable_http_app(
            streamable_http_path="/", transport_security=self.security
        )
        try:
            async with self.server.session_manager.run():
                yield
        finally:
            self.gate.app = None

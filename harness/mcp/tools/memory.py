"""Memory tools: the live coordinator's versioned, namespaced memory store, read and
written by this server's agent (``MemRequest``), persisted as the coordinator
persists it (SQLite, in the swarm's folder)."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

from harness.mcp.state import McpState
from harness.mcp.tools.bus import payload_bytes, text
from harness.mcp.tools.errors import tool_errors
from protocol.messages import ListWhat, MemReply, MemVerb


def reply(namespace: str, key: str, found: MemReply) -> dict[str, Any]:
    out: dict[str, Any] = {
        "namespace": namespace,
        "key": key,
        "ok": found.ok,
        "version": found.version,
    }
    if found.error:
        out["error"] = found.error
    if found.value:
        out.update(text(found.value))
    return out


def register(server: MCPServer, state: McpState) -> None:
    async def memory(
        verb: MemVerb, namespace: str, key: str, value: str = "", expected: int = 0
    ) -> dict[str, Any]:
        console = state.require_swarm().console
        found = await console.memory(verb, namespace, key, payload_bytes(value), expected)
        return reply(namespace, key, found)

    async def memory_put(namespace: str, key: str, value: str) -> dict[str, Any]:
        """Write `value` (UTF-8 text) at `key` in `namespace`; acknowledged once the
        coordinator has applied it, with the key's new version (1 for a new key)."""
        return await memory(MemVerb.PUT, namespace, key, value)

    async def memory_get(namespace: str, key: str) -> dict[str, Any]:
        """Read `key` in `namespace`: its value and version, or ok false if absent."""
        return await memory(MemVerb.GET, namespace, key)

    async def memory_cas(
        namespace: str, key: str, value: str, expected_version: int
    ) -> dict[str, Any]:
        """Write `value` only if the key's version is `expected_version` (0: only if the
        key is absent); otherwise ok false, with the version it has."""
        return await memory(MemVerb.CAS, namespace, key, value, expected_version)

    async def memory_delete(namespace: str, key: str) -> dict[str, Any]:
        """Delete `key` in `namespace`."""
        return await memory(MemVerb.DELETE, namespace, key)

    async def memory_list(namespace: str | None = None) -> dict[str, Any]:
        """Without `namespace`: the store's namespaces and their key counts. With it: the
        namespace's keys and their versions. At most 1,000 names, with the total."""
        console = state.require_swarm().console
        if namespace is None:
            found = await console.listing(ListWhat.NAMESPACES)
            return {
                "namespaces": dict(zip(found.names, found.counts, strict=False)),
                "total": found.total,
            }
        found = await console.listing(ListWhat.KEYS, namespace)
        return {
            "namespace": namespace,
            "keys": dict(zip(found.names, found.counts, strict=False)),
            "total": found.total,
        }

    for fn in (memory_put, memory_get, memory_cas, memory_delete, memory_list):
        server.tool()(tool_errors(fn))

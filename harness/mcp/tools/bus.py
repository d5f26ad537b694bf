"""Bus and task tools: this server's agent, mcp-client, publishes, sends, broadcasts,
subscribes, reads what was delivered to it, and submits tasks and reads their
results, through the live swarm's coordinator (``harness.swarm.console``)."""

from __future__ import annotations

import base64
from typing import Any

from mcp.server.mcpserver import MCPServer

from harness.mcp.state import McpState
from harness.mcp.tools.errors import tool_errors
from protocol.messages import Accepted, Busy, DeliveryKind

MAX_PAYLOAD = 1 << 18  # bytes of UTF-8 text a tool sends


def text(data: bytes) -> dict[str, str]:
    """A payload as UTF-8 text, or as base64 when it is not text."""
    try:
        return {"payload": data.decode()}
    except UnicodeDecodeError:
        return {"payload_base64": base64.b64encode(data).decode()}


def payload_bytes(payload: str) -> bytes:
    data = payload.encode()
    if len(data) > MAX_PAYLOAD:
        raise ValueError(f"payload: {len(data):,} bytes, at most {MAX_PAYLOAD:,}")
    return data


def answer(op_id: int, reply: Accepted | Busy) -> dict[str, Any]:
    if isinstance(reply, Busy):
        return {
            "op_id": op_id,
            "accepted": False,
            "busy": True,
            "retry_after_s": reply.retry_after,
            "note": "the coordinator refused it for overload (Busy): nothing was sent",
        }
    return {"op_id": op_id, "accepted": True, "recipients": reply.recipients}


def register(server: MCPServer, state: McpState) -> None:
    async def publish(topic: str, payload: str) -> dict[str, Any]:
        """Publish `payload` (UTF-8 text, at most 256 KiB) on `topic` as mcp-client. The
        coordinator answers Accepted with the number of subscribers it will deliver to,
        or Busy under overload."""
        op_id, reply = await state.require_swarm().console.publish(topic, payload_bytes(payload))
        return answer(op_id, reply)

    async def direct(to: str, payload: str) -> dict[str, Any]:
        """Send `payload` to the agent named `to` as mcp-client (Accepted with 1
        recipient, or 0 when no such agent is registered)."""
        op_id, reply = await state.require_swarm().console.direct(to, payload_bytes(payload))
        return answer(op_id, reply)

    async def broadcast(payload: str) -> dict[str, Any]:
        """Send `payload` to every registered agent but mcp-client itself."""
        op_id, reply = await state.require_swarm().console.broadcast(payload_bytes(payload))
        return answer(op_id, reply)

    async def subscribe(pattern: str) -> dict[str, Any]:
        """Subscribe mcp-client to a topic pattern ('*' one word, '#' any number, as
        docs/protocol.md says); what is published there can then be read with
        read_deliveries. The coordinator does not answer a subscription."""
        console = state.require_swarm().console
        await console.subscribe(pattern)
        return {"subscribed": sorted(console.patterns)}

    async def unsubscribe(pattern: str) -> dict[str, Any]:
        """Drop one of mcp-client's subscriptions."""
        console = state.require_swarm().console
        await console.subscribe(pattern, on=False)
        return {"subscribed": sorted(console.patterns)}

    async def read_deliveries(after: int = 0, limit: int = 100) -> dict[str, Any]:
        """What was delivered to mcp-client (publishes it subscribed to, direct messages,
        broadcasts), numbered from 1 in the order received: those numbered above
        `after`, at most `limit` (1 to 1,000). The last 10,000 are kept."""
        if not 1 <= limit <= 1000:
            raise ValueError(f"limit: expected 1 to 1,000, got {limit}")
        found, last = state.require_swarm().console.deliveries(after, limit)
        return {
            "last": last,
            "deliveries": [
                {
                    "n": n,
                    "kind": DeliveryKind(d.kind).name.lower(),
                    "origin": d.origin,
                    "op_id": d.op_id,
                    "topic": d.topic,
                    **text(d.payload),
                }
                for n, d in found
            ],
        }

    async def task_submit(capability: str, payload: str) -> dict[str, Any]:
        """Submit a task for an agent with `capability`; the agents this server starts
        run the built-in handler, which returns the payload. The answer is the task's
        op id (for task_status and task_results) once the coordinator accepted it."""
        op_id, reply = await state.require_swarm().console.submit_task(
            capability, payload_bytes(payload)
        )
        return answer(op_id, reply)

    async def task_status(op_id: int) -> dict[str, Any]:
        """Whether mcp-client's task `op_id` has a result yet, and from which agent."""
        done = state.require_swarm().console.result(op_id)
        if done is None:
            return {"op_id": op_id, "state": "pending"}
        return {"op_id": op_id, "state": "done", "worker": done.worker}

    async def task_results(op_ids: list[int]) -> list[dict[str, Any]]:
        """The results of mcp-client's tasks: the worker that ran each and what it
        returned (the last 10,000 results are kept); pending ones say so."""
        console = state.require_swarm().console
        found = []
        for op_id in op_ids:
            done = console.result(op_id)
            if done is None:
                found.append({"op_id": op_id, "state": "pending"})
            else:
                found.append(
                    {"op_id": op_id, "state": "done", "worker": done.worker, **text(done.payload)}
                )
        return found

    for fn in (
        publish,
        direct,
        broadcast,
        subscribe,
        unsubscribe,
        read_deliveries,
        task_submit,
        task_status,
        task_results,
    ):
        server.tool()(tool_errors(fn))

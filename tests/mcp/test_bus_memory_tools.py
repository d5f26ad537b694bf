"""The bus, task and memory tools act as a registered agent, mcp-client: a separate
agent on its own link sees what they wrote and sent, and what it sends reaches them."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from protocol.messages import Direct, MemVerb, Publish, Subscribe
from protocol.payload import checksum
from tests.mcp.conftest import ok, refused, session, watching

pytestmark = pytest.mark.slow


async def until(check, seconds: float = 5.0):  # type: ignore[no-untyped-def]
    for _ in range(int(seconds / 0.05)):
        found = check()
        if found:
            return found
        await asyncio.sleep(0.05)
    return check()


@pytest.mark.parametrize("transport", ["tcp", "inproc"])
def test_memory_writes_are_read_back_by_another_agent_and_persisted(
    tmp_path: Path, transport: str
) -> None:
    """On tcp the store is persisted as the coordinator persists it (SQLite); an
    inproc swarm persists nothing."""

    async def body() -> None:
        async with session(tmp_path) as (client, state):
            ok(await client.call_tool("swarm_init", {"agents": 0, "transport": transport}))
            swarm = state.swarm
            assert swarm is not None
            async with watching(swarm) as watcher:
                put = ok(
                    await client.call_tool(
                        "memory_put", {"namespace": "plans", "key": "q1", "value": "draft"}
                    )
                )
                assert put["ok"] and put["version"] == 1
                seen = await watcher.memory(MemVerb.GET, "plans", "q1")
                assert (seen.ok, seen.version, seen.value) == (True, 1, b"draft")
                stale = ok(
                    await client.call_tool(
                        "memory_cas",
                        {"namespace": "plans", "key": "q1", "value": "x", "expected_version": 7},
                    )
                )
                assert (stale["ok"], stale["version"], stale["error"]) == (
                    False,
                    1,
                    "version mismatch",
                )
                swapped = ok(
                    await client.call_tool(
                        "memory_cas",
                        {
                            "namespace": "plans",
                            "key": "q1",
                            "value": "final",
                            "expected_version": 1,
                        },
                    )
                )
                assert swapped["ok"] and swapped["version"] == 2
                seen = await watcher.memory(MemVerb.GET, "plans", "q1")
                assert (seen.version, seen.value) == (2, b"final")
                # the other agent writes; the tool reads it
                await watcher.memory(MemVerb.PUT, "plans", "q2", b"theirs")
                got = ok(await client.call_tool("memory_get", {"namespace": "plans", "key": "q2"}))
                assert (got["payload"], got["version"]) == ("theirs", 1)
                listed = ok(await client.call_tool("memory_list", {}))
                assert listed["namespaces"]["plans"] == 2
                keys = ok(await client.call_tool("memory_list", {"namespace": "plans"}))
                assert keys["keys"] == {"q1": 2, "q2": 1}
                gone = ok(
                    await client.call_tool("memory_delete", {"namespace": "plans", "key": "q2"})
                )
                assert gone["ok"]
                seen = await watcher.memory(MemVerb.GET, "plans", "q2")
                assert not seen.ok and seen.version == 0
            folder = swarm.folder
            ok(await client.call_tool("swarm_destroy", {}))
        if transport == "inproc":
            assert folder is None and not (tmp_path / "swarms").exists()
            return
        database = folder / "coordinator.sqlite"
        with sqlite3.connect(database) as db:
            rows = db.execute("SELECT namespace, key, version, value FROM memory").fetchall()
        assert rows == [("plans", "q1", 2, b"final")]

    asyncio.run(body())


@pytest.mark.parametrize("transport", ["tcp", "inproc"])
def test_publish_direct_and_broadcast_reach_another_agent_and_back(
    tmp_path: Path, transport: str
) -> None:
    async def body() -> None:
        async with session(tmp_path) as (client, state):
            ok(await client.call_tool("swarm_init", {"agents": 1, "transport": transport}))
            assert state.swarm is not None
            async with watching(state.swarm) as watcher:
                watcher.send(Subscribe("obs.#"))
                await asyncio.sleep(0.2)
                sent = ok(await client.call_tool("publish", {"topic": "obs.a", "payload": "one"}))
                assert sent["accepted"] and sent["recipients"] == 1
                assert await until(lambda: any(d.payload == b"one" for d in watcher.deliveries))
                (got,) = [d for d in watcher.deliveries if d.payload == b"one"]
                assert (got.origin, got.topic, got.op_id) == ("mcp-client", "obs.a", sent["op_id"])
                sent = ok(await client.call_tool("direct", {"to": "observer", "payload": "two"}))
                assert sent["recipients"] == 1
                sent = ok(await client.call_tool("broadcast", {"payload": "three"}))
                assert sent["recipients"] == 2  # agent-1 and the observer, not itself
                assert await until(
                    lambda: {b"two", b"three"} <= {d.payload for d in watcher.deliveries}
                )
                # the other way: the tool's agent subscribes and reads what the other sent
                ok(await client.call_tool("subscribe", {"pattern": "news.*"}))
                await asyncio.sleep(0.2)
                op = watcher.next_id()
                await watcher.submit(Publish(op, "news.x", b"four", checksum(b"four")), op, 3.0)
                op = watcher.next_id()
                await watcher.submit(Direct(op, "mcp-client", b"five", checksum(b"five")), op, 3.0)

                async def read_all() -> list[dict]:
                    for _ in range(100):
                        found = ok(await client.call_tool("read_deliveries", {}))["deliveries"]
                        if len(found) >= 2:
                            return found
                        await asyncio.sleep(0.05)
                    return found

                found = await read_all()
                assert [(d["n"], d["kind"], d["origin"], d["payload"]) for d in found] == [
                    (1, "publish", "observer", "four"),
                    (2, "direct", "observer", "five"),
                ]
                later = ok(await client.call_tool("read_deliveries", {"after": 1}))
                assert [d["payload"] for d in later["deliveries"]] == ["five"]
                assert later["last"] == 2
                ok(await client.call_tool("unsubscribe", {"pattern": "news.*"}))
                op = watcher.next_id()
                answer = await watcher.submit(
                    Publish(op, "news.y", b"six", checksum(b"six")), op, 3.0
                )
                assert answer.recipients == 0  # nobody subscribed any more
            assert "expected 1 to 1,000" in refused(
                await client.call_tool("read_deliveries", {"limit": 5000})
            )

    asyncio.run(body())

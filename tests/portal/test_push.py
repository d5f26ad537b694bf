"""Live pushes: frames at 10 Hz over /ws/live, and bounded memory for slow pages."""

from __future__ import annotations

import asyncio
import json

import pytest
from fastapi.testclient import TestClient

from harness.portal.push import MAX_PENDING, QUEUE_FRAMES, Client, Pusher
from tests.portal.conftest import AUTH, wait_finished


def test_a_page_that_never_reads_keeps_only_the_newest_frames() -> None:
    pusher = Pusher()
    slow = pusher.connect()
    for i in range(1000):
        pusher.add({"i": i})
        pusher.flush()
    assert len(slow.frames) == QUEUE_FRAMES  # bounded, whatever the page does
    assert slow.dropped == 1000 - QUEUE_FRAMES
    newest = [json.loads(frame) for frame in slow.frames]
    assert [f["seq"] for f in newest] == list(range(1000 - QUEUE_FRAMES + 1, 1001))
    assert newest[-1]["events"] == [{"i": 999}]
    assert pusher.stats()["dropped_frames"] == 1000 - QUEUE_FRAMES
    pusher.disconnect(slow)
    assert pusher.stats() == {
        "clients": 0,
        "frames": 1000,
        "dropped_events": 0,
        "dropped_frames": 1000 - QUEUE_FRAMES,
    }


def test_events_between_frames_are_bounded_too() -> None:
    pusher = Pusher()
    for i in range(MAX_PENDING + 10):
        pusher.add({"i": i})
    frame = json.loads(pusher.flush() or "{}")
    assert len(frame["events"]) == MAX_PENDING and frame["events"][0] == {"i": 10}
    assert pusher.dropped_events == 10
    assert pusher.flush() is None  # nothing new: no frame


def test_a_client_waits_for_its_next_frame() -> None:
    async def scenario() -> list[str]:
        client = Client()
        waiter = asyncio.create_task(client.next_frame())
        await asyncio.sleep(0)
        assert not waiter.done()
        client.offer("a")
        client.offer("b")
        return [await waiter, await client.next_frame()]

    assert asyncio.run(scenario()) == ["a", "b"]


def test_the_socket_carries_a_job_s_events_as_stamped_frames(client: TestClient) -> None:
    with client.websocket_connect("/ws/live") as socket:
        started = client.post(
            "/api/jobs", json={"scenario": "smoke", "backend": "sim", "duration": 1.0}, headers=AUTH
        ).json()
        events: list[dict[str, object]] = []
        seqs: list[int] = []
        while not any(e.get("type") == "state" and e.get("state") == "done" for e in events):
            frame = json.loads(socket.receive_text())
            seqs.append(frame["seq"])
            assert isinstance(frame["stamp_ms"], float)
            events += frame["events"]
            assert len(seqs) < 10_000
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # none dropped
    assert all(e["job"] == started["job_id"] for e in events)
    kinds = {e["type"] for e in events}
    assert {"state", "started", "progress", "point", "done"} <= kinds
    assert wait_finished(client, started["job_id"])["state"] == "done"


def test_a_page_of_another_site_cannot_open_the_sockets(client: TestClient) -> None:
    """Cross-site WebSocket hijacking: browsers send the page's Origin; another site's
    page is refused, the portal's own page and clients without an Origin are not."""
    from starlette.websockets import WebSocketDisconnect

    for path in ("/ws/live", "/ws/agent"):
        with (
            pytest.raises(WebSocketDisconnect) as refused,
            client.websocket_connect(path, headers={"Origin": "http://evil.example"}),
        ):
            pass
        assert refused.value.code == 1008
    with client.websocket_connect("/ws/live", headers={"Origin": "http://testserver"}):
        pass
    with client.websocket_connect("/ws/live"):
        pass

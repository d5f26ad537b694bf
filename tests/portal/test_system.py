"""The portal attached to a live coordinator: its status, its memory, and the agents'
WebSocket gateway, which carries tcp envelope frames and refuses what the tcp
server refuses, while everyone else keeps being served."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from starlette.websockets import WebSocketDisconnect

from harness.portal.app import create_app
from harness.portal.gateway import POLICY, framing_error
from harness.portal.measure import free_port
from harness.swarm.console import CONSOLE, Coordinator
from protocol.codec import encode_body
from protocol.envelope import RoutedDecoder, encode_routed, node_id_bytes
from protocol.messages import Hello, Message, Probe, ProbeReply, Reject, Welcome
from protocol.settings import DEV_TOKEN
from tests.portal.conftest import AUTH


@pytest.fixture(scope="module")
def coordinator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """``swarmtwin coordinator`` on a free loopback port, for this module's tests."""
    port = free_port()
    db = tmp_path_factory.mktemp("coordinator") / "c.sqlite"
    command = [sys.executable, "-m", "harness.cli", "coordinator", "--port", str(port)]
    process = subprocess.Popen(
        [*command, "--db", str(db)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.1)
        yield port
    finally:
        process.terminate()
        process.wait(10)


@pytest.fixture
def attached(tmp_path: Path, coordinator: int) -> Iterator[TestClient]:
    where = Coordinator("127.0.0.1", coordinator, DEV_TOKEN)
    app = create_app(tmp_path / "reports", allowed_hosts=("testserver",), coordinator=where)
    with TestClient(app) as client:
        yield client


def frame(node: str, msg: Message) -> bytes:
    return encode_routed(node_id_bytes(node), encode_body(msg))


def test_without_a_coordinator_the_system_view_says_how_to_attach(client: TestClient) -> None:
    response = client.get("/api/system")
    assert response.status_code == 404 and "--coordinator" in response.json()["detail"]
    with client.websocket_connect("/ws/agent") as ws, pytest.raises(WebSocketDisconnect) as end:
        ws.receive_bytes()
    assert end.value.code == 1011


def test_the_status_names_every_component_and_the_console_agent(attached: TestClient) -> None:
    found = attached.get("/api/system").json()
    status = found["status"]
    assert {"coordinator", "bus", "tasks", "memory", "failure_detector"} <= set(status)
    console = status[f"agent:{CONSOLE}"]
    assert console["health"] == "ok" and console["metrics"]["linked"] == 1


def test_memory_through_the_console_is_versioned_and_needs_the_token(attached: TestClient) -> None:
    def memory(**body: object) -> dict[str, object]:
        response = attached.post("/api/system/memory", json=body, headers=AUTH)
        assert response.status_code == 200, response.text
        found: dict[str, object] = response.json()
        return found

    key = {"namespace": "portal-test", "key": f"k{time.monotonic_ns()}"}
    assert attached.post("/api/system/memory", json={"verb": "get", **key}).status_code == 401
    assert memory(verb="put", value="hello", **key)["version"] == 1
    assert memory(verb="get", **key)["value"] == "hello"
    stale = memory(verb="cas", value="x", expected_version=7, **key)
    assert stale["ok"] is False
    assert memory(verb="cas", value="again", expected_version=1, **key)["version"] == 2
    assert memory(verb="delete", **key)["ok"] is True
    assert memory(verb="get", **key)["version"] == 0


def test_an_agent_joins_over_the_gateway_and_is_served(attached: TestClient) -> None:
    decoder = RoutedDecoder()
    with attached.websocket_connect("/ws/agent") as ws:
        ws.send_bytes(frame("ws-agent", Hello("ws-agent", DEV_TOKEN)))
        (node, welcome) = decoder.feed(ws.receive_bytes())[0]
        assert node == "ws-agent" and isinstance(welcome, Welcome)
        ws.send_bytes(frame("ws-agent", Probe(41)))
        replies = []
        while not any(isinstance(m, ProbeReply) for _, m in replies):
            replies += decoder.feed(ws.receive_bytes())
        assert any(isinstance(m, ProbeReply) and m.probe_id == 41 for _, m in replies)
        status = attached.get("/api/system").json()["status"]
        assert status["agent:ws-agent"]["metrics"]["linked"] == 1


def test_a_wrong_token_is_rejected_as_on_tcp(attached: TestClient) -> None:
    with attached.websocket_connect("/ws/agent") as ws:
        ws.send_bytes(frame("intruder", Hello("intruder", "wrong")))
        (_, reject) = RoutedDecoder().feed(ws.receive_bytes())[0]
        assert isinstance(reject, Reject)
        with pytest.raises(WebSocketDisconnect):
            ws.receive_bytes()


@pytest.mark.parametrize(
    ("message", "why"),
    [
        ("text", "binary messages only"),
        (b"\x00\x00", "no frame length"),
        (b"\x00\x00\x00\x09abc", "but 3 bytes follow"),
        (b"\xff\xff\xff\xff" + b"x" * 8, "outside 4.."),
    ],
)
def test_hostile_messages_close_the_socket_and_others_are_still_served(
    attached: TestClient, message: str | bytes, why: str
) -> None:
    with attached.websocket_connect("/ws/agent") as ws:
        if isinstance(message, str):
            ws.send_text(message)
        else:
            ws.send_bytes(message)
        with pytest.raises(WebSocketDisconnect) as end:
            ws.receive_bytes()
    assert end.value.code == POLICY and why in end.value.reason
    assert attached.get("/api/system").status_code == 200
    assert attached.get("/api/server").json()["gateway"]["refused"] >= 1


def test_a_well_framed_but_garbled_frame_is_refused_by_the_coordinator(
    attached: TestClient,
) -> None:
    garbled = b"\x00\x00\x00\x06\x99\x01zjunk"[:10]
    assert framing_error(garbled) == ""  # framing fits; the content is the coordinator's call
    with attached.websocket_connect("/ws/agent") as ws:
        ws.send_bytes(garbled)
        with pytest.raises(WebSocketDisconnect):
            while True:
                ws.receive_bytes()
    assert attached.get("/api/system").status_code == 200


def test_topics_namespaces_and_keys_are_listed(attached: TestClient) -> None:
    namespace = f"list-{time.monotonic_ns()}"
    for key in ("b", "a"):
        body = {"verb": "put", "namespace": namespace, "key": key, "value": "v"}
        assert attached.post("/api/system/memory", json=body, headers=AUTH).json()["ok"]
    with attached.websocket_connect("/ws/agent") as ws:  # an agent that follows a pattern
        ws.send_bytes(frame("lister", Hello("lister", DEV_TOKEN, (), ("portal.#",))))
        assert isinstance(RoutedDecoder().feed(ws.receive_bytes())[0][1], Welcome)
        topics = attached.get("/api/system/topics").json()
    assert {"name": "portal.#", "subscribers": 1} in topics["items"]
    spaces = attached.get("/api/system/namespaces").json()
    assert {"name": namespace, "keys": 2} in spaces["items"]
    keys = attached.get("/api/system/keys", params={"namespace": namespace}).json()
    assert sorted(item["name"] for item in keys["items"]) == ["a", "b"] and keys["total"] == 2
    assert attached.get("/api/system/keys").status_code == 422
    assert attached.get("/api/system/other").status_code == 422


def test_a_console_that_comes_back_never_reuses_an_op_id(tmp_path: Path, coordinator: int) -> None:
    """The coordinator answers a reused (origin, op id) from memory without running it:
    a second portal's console writing under the same node id must still be applied."""
    where = Coordinator("127.0.0.1", coordinator, DEV_TOKEN)
    namespace = f"again-{time.monotonic_ns()}"
    for key in ("first", "second"):  # two portals, one after the other, same console id
        app = create_app(tmp_path / key, allowed_hosts=("testserver",), coordinator=where)
        with TestClient(app) as client:
            body = {"verb": "put", "namespace": namespace, "key": key, "value": key}
            assert client.post("/api/system/memory", json=body, headers=AUTH).json()["ok"]
    with TestClient(
        create_app(tmp_path / "c", allowed_hosts=("testserver",), coordinator=where)
    ) as c:
        keys = c.get("/api/system/keys", params={"namespace": namespace}).json()
    assert sorted(item["name"] for item in keys["items"]) == ["first", "second"]

"""The status query: ``StatusRequest``/``StatusReply`` in the core, the codec and on tcp.

Core tests drive a bare ``Coordinator`` by hand (the sans-IO interface, a
manual ``now``): what the reply holds, that a wrong token is refused like a
``Hello`` with a wrong token, and that an agent's health follows its
session. Codec tests check the round trip, the worked examples in
docs/protocol.md and that hostile ``components`` are refused cleanly. The
last test asks a live tcp server in this process.
"""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

import msgpack
import pytest

from protocol.codec import (
    DEFAULT_MAX_FRAME,
    CodecUsageError,
    MalformedFrame,
    decode_frame,
    encode,
    encode_body,
)
from protocol.coordinator import Coordinator
from protocol.envelope import RoutedDecoder, encode_routed, node_id_bytes
from protocol.messages import (
    WIRE_CODES,
    Ack,
    ComponentStatus,
    Error,
    Heartbeat,
    Hello,
    Message,
    Publish,
    Reject,
    StatusReply,
    StatusRequest,
    TaskSubmit,
)
from protocol.settings import ProtocolSettings
from protocol.status import (
    CORE_COMPONENTS,
    MAX_STATUS_JOBS,
    STATUS_PART_SIZE,
    StatusParts,
    status_dict,
)
from real.clock import new_event_loop
from real.tcp.framing import open_link
from real.tcp.server import serve
from tests.codec_helpers import frame

SETTINGS = ProtocolSettings(heartbeat_interval=0.5, failure_after=1.5)
TOKEN = SETTINGS.token
PROBER = "probe-0"
DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"


def coordinator_with(agents: dict[str, tuple[str, ...]]) -> Coordinator:
    """A coordinator with ``agents`` (id -> capabilities) registered at time 0."""
    core = Coordinator("coord", SETTINGS)
    for node, capabilities in agents.items():
        core.receive(node, Hello(node, TOKEN, capabilities, ("news.#",)), 0.0)
    core.drain()
    return core


def ask(core: Coordinator, now: float, src: str = PROBER, token: str = TOKEN) -> list[Message]:
    """Send a ``StatusRequest`` from ``src``; return what the coordinator sent to it."""
    core.receive(src, StatusRequest(9, token), now)
    return [msg for dst, msg in core.drain() if dst == src]


def status_of(core: Coordinator, now: float) -> dict[str, dict[str, Any]]:
    (reply,) = ask(core, now)
    assert isinstance(reply, StatusReply) and reply.request_id == 9
    return status_dict(reply.components)


# --- the core ---------------------------------------------------------------------------


def test_the_reply_names_every_component_with_health_and_metrics() -> None:
    core = coordinator_with({"a1": ("compute",), "a2": ()})
    core.receive("a1", Publish(1, "news.x", b"hi", 0), 0.2)  # a1 and a2 both subscribe
    core.receive("a1", Ack((1,)), 0.3)  # a1 acks its copy; a2's stays in flight
    core.on_timer(0.9)  # the driver runs the failure sweep on time
    core.drain()
    status = status_of(core, 0.9)
    assert list(status) == [*CORE_COMPONENTS, "agent:a1", "agent:a2"]
    assert {entry["health"] for entry in status.values()} == {"ok"}
    assert all(entry["metrics"] for entry in status.values())
    assert status["bus"]["metrics"]["msg_ids"] == 1
    assert status["bus"]["metrics"]["inflight"] == 1
    assert status["coordinator"]["metrics"]["agents_live"] == 2
    a1, a2 = status["agent:a1"]["metrics"], status["agent:a2"]["metrics"]
    assert (a1["inflight"], a2["inflight"]) == (0, 1)
    assert a2["credit"] == SETTINGS.credit - 1
    assert a1["last_seen_s"] == pytest.approx(0.6) and a2["last_seen_s"] == pytest.approx(0.9)
    assert a1["subscriptions"] == 1 and a1["linked"] == 1


def test_an_unregistered_node_may_ask_and_asking_changes_nothing() -> None:
    core = coordinator_with({"a1": ()})
    before = dict(core.sessions)
    replies = ask(core, 0.5, src="stranger")
    assert [type(m) for m in replies] == [StatusReply]
    assert core.sessions == before and not core.knows("stranger")
    assert core.take_closures() == [] and core.stats.refused == 0


def test_a_wrong_token_is_refused_like_a_hello_with_a_wrong_token() -> None:
    core = coordinator_with({"a1": ()})
    assert ask(core, 0.5, token="wrong") == [Reject("bad token")]
    assert core.take_closures() == [PROBER]
    assert core.stats.refused == 1
    # a registered agent asking with a wrong token loses its link, as with a bad Hello
    assert ask(core, 0.6, src="a1", token="") == [Reject("bad token")]
    assert core.take_closures() == ["a1"]


def test_an_agents_health_follows_its_session() -> None:
    core = coordinator_with({"a1": (), "a2": ()})
    for now in (0.4, 0.8, 1.2):  # a2 keeps beating, a1 falls silent
        core.receive("a2", Heartbeat(1), now)
        core.on_timer(now)
    status = status_of(core, 1.2)
    assert status["agent:a1"]["health"] == "degraded"  # silent > 2 heartbeat intervals
    assert status["agent:a2"]["health"] == "ok"
    for now in (1.6, 2.0):
        core.receive("a2", Heartbeat(2), now)
        core.on_timer(now)
    status = status_of(core, 2.0)
    assert status["agent:a1"]["health"] == "failed"
    assert status["agent:a2"]["health"] == "ok"
    detector = status["failure_detector"]["metrics"]
    assert detector["failures_detected"] == 1 and detector["agents_failed"] == 1
    core.link_closed("a2", 2.1)
    status = status_of(core, 2.1)
    assert status["agent:a2"]["health"] == "failed"
    detector = status["failure_detector"]["metrics"]  # a closed link is not a silence
    assert detector["failures_detected"] == 1 and detector["links_lost"] == 1
    assert status["agent:a2"]["metrics"]["linked"] == 0
    assert status["coordinator"]["metrics"]["agents_live"] == 0


def test_a_failure_sweep_running_late_degrades_the_detector() -> None:
    core = coordinator_with({"a1": ()})  # the first sweep is due at 0.25
    assert status_of(core, 0.7)["failure_detector"]["health"] == "ok"
    late = status_of(core, 0.8)["failure_detector"]  # overdue by more than an interval
    assert late["health"] == "degraded" and late["metrics"]["next_sweep_in_s"] == 0.0
    core.on_timer(0.8)
    assert status_of(core, 0.8)["failure_detector"]["health"] == "ok"


def test_tasks_are_degraded_while_one_waits_for_a_capable_agent() -> None:
    core = coordinator_with({"a1": ()})
    core.receive("a1", TaskSubmit(1, "gpu", b"x", 0), 0.1)
    core.drain()
    tasks = status_of(core, 0.2)["tasks"]
    assert tasks["health"] == "degraded"
    assert tasks["metrics"]["waiting"] == 1 and tasks["metrics"]["unfinished"] == 1


def test_other_messages_from_an_unregistered_node_are_still_refused() -> None:
    core = coordinator_with({})
    core.receive(PROBER, Heartbeat(1), 0.0)
    assert core.drain() == [(PROBER, Error("Heartbeat before registration"))]


# --- the codec -----------------------------------------------------------------------------


def test_a_real_reply_survives_the_codec() -> None:
    core = coordinator_with({"a1": ("compute",), "a2": ()})
    (reply,) = ask(core, 0.5)
    decoded = decode_frame(encode(reply))
    assert decoded == reply
    assert isinstance(decoded, StatusReply)
    assert all(type(c) is ComponentStatus for c in decoded.components)
    assert isinstance(reply, StatusReply)
    assert status_dict(decoded.components) == status_dict(reply.components)


def test_the_worked_examples_in_the_docs_are_exact() -> None:
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    request = StatusRequest(1, "swarmtwin-dev-token")
    reply = StatusReply(1, (ComponentStatus("bus", "ok", (("msg_ids", 3), ("rto_ms", 1.5))),))
    for msg in (request, reply):
        assert encode(msg).hex(" ") in text, msg
    assert "| 50 | `StatusRequest` | any→C |" in text and "| 51 | `StatusReply` | C→any|" in text


GOOD = ["bus", "ok", [["msg_ids", 3]]]


@pytest.mark.parametrize(
    "components",
    [
        {"bus": ["ok", {"msg_ids": 3}]},  # a map, not an array
        [["bus", "ok"]],  # a component of two elements
        [["bus", "ok", [["msg_ids", 3]], 1]],  # of four
        [["", "ok", [["m", 1]]]],  # an empty name
        [["x" * 513, "ok", [["m", 1]]]],  # a name too long
        [GOOD, GOOD],  # the same component twice
        [["bus", "great", [["m", 1]]]],  # an unknown health
        [["bus", 1, [["m", 1]]]],  # health as an int
        [["bus", "ok", {"m": 1}]],  # metrics as a map
        [["bus", "ok", [["m", 1], ["m", 2]]]],  # a metric twice
        [["bus", "ok", [["m", 1, 2]]]],  # a metric of three elements
        [["bus", "ok", [["", 1]]]],  # an empty metric name
        [["bus", "ok", [["m" * 65, 1]]]],  # a metric name too long
        [["bus", "ok", [[f"m{i}", 1] for i in range(65)]]],  # too many metrics
        [["bus", "ok", [["m", True]]]],  # a bool
        [["bus", "ok", [["m", None]]]],  # nil
        [["bus", "ok", [["m", "1"]]]],  # a string
        [["bus", "ok", [["m", math.nan]]]],  # not finite
        [["bus", "ok", [["m", math.inf]]]],
        [["bus", "ok", [[1, 1]]]],  # a metric name that is not a string
        [[b"bus", "ok", [["m", 1]]]],  # a name as bin
    ],
)
def test_hostile_components_are_refused_cleanly(components: object) -> None:
    body = msgpack.packb([WIRE_CODES[StatusReply], 1, components, 1, 1], use_bin_type=True)
    with pytest.raises(MalformedFrame, match=r"StatusReply\.components"):
        decode_frame(frame(body))


def test_empty_metrics_and_a_non_ascii_name_are_valid_on_the_wire() -> None:
    body = msgpack.packb([WIRE_CODES[StatusReply], 1, [GOOD, ["agent:é", "failed", []]], 1, 1])
    msg = decode_frame(frame(body))
    assert isinstance(msg, StatusReply)
    assert status_dict(msg.components)["agent:é"] == {"health": "failed", "metrics": {}}


@pytest.mark.parametrize("token", [1, None, b"tok", ["tok"]])
def test_a_request_with_a_token_that_is_not_a_string_is_refused(token: object) -> None:
    body = msgpack.packb([WIRE_CODES[StatusRequest], 1, token], use_bin_type=True)
    with pytest.raises(MalformedFrame, match=r"StatusRequest\.token"):
        decode_frame(frame(body))


def test_encoding_an_ill_formed_reply_is_a_usage_error() -> None:
    bad = StatusReply(1, (ComponentStatus("bus", "fine", ()),))
    with pytest.raises(CodecUsageError):
        encode(bad)


# --- a live tcp server ------------------------------------------------------------------------


async def ask_server(port: int, token: str) -> tuple[list[tuple[str, Message]], bool]:
    """Ask as node ``spy`` on a raw connection; what came back, and whether it was closed."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(encode_routed(node_id_bytes("spy"), encode_body(StatusRequest(1, token))))
    await writer.drain()
    data = b""
    closed = False
    try:
        while True:
            chunk = await asyncio.wait_for(reader.read(65536), 1.0)
            if not chunk:
                closed = True
                break
            data += chunk
    except TimeoutError:
        pass
    writer.close()
    return RoutedDecoder().feed(data), closed


async def server_session() -> dict[str, tuple[list[tuple[str, Message]], bool]]:
    ports: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()
    server = asyncio.get_running_loop().create_task(
        serve(settings=SETTINGS, ready=ports.put_nowait, stop=stop)
    )
    port = await ports.get()
    answers = {"right": await ask_server(port, TOKEN), "wrong": await ask_server(port, "nope")}
    link = await open_link("127.0.0.1", port)  # the driver's own link type works too
    link.send(PROBER, encode_body(StatusRequest(2, TOKEN)))
    link.flush()
    answers["link"] = (await link.read_batch() or [], False)
    link.close()
    stop.set()
    await server
    return answers


def test_a_live_server_answers_the_token_and_refuses_anything_else() -> None:
    loop = new_event_loop(False)
    try:
        answers = loop.run_until_complete(server_session())
    finally:
        loop.close()
    (right,), closed = answers["right"]
    assert right[0] == "spy" and isinstance(right[1], StatusReply) and not closed
    assert [c.name for c in right[1].components] == list(CORE_COMPONENTS)
    assert answers["wrong"] == ([("spy", Reject("bad token"))], True)
    ((node, reply),) = answers["link"][0]
    assert node == PROBER and isinstance(reply, StatusReply) and reply.request_id == 2


# --- a status of many agents comes in parts ------------------------------------------


def test_a_status_of_many_agents_comes_in_parts_one_per_timer_turn() -> None:
    """The first part answers the request; each later part is made by the next
    ``on_timer``, which ``next_deadline`` asks for at once, so a 50,000-agent
    status never stalls the coordinator for more than one part."""
    agents = 2 * STATUS_PART_SIZE + 5
    core = coordinator_with({f"agent-{i:05d}": () for i in range(agents)})
    replies = ask(core, 1.0)
    deadline = core.next_deadline()
    assert [(r.part, r.parts) for r in replies] == [(1, 3)]  # type: ignore[attr-defined]
    assert deadline is not None and deadline <= 1.0
    for turn in range(3):
        core.on_timer(1.0)
        replies += [msg for dst, msg in core.drain() if dst == PROBER]
        assert len(replies) == min(turn + 2, 3)  # the third turn has nothing left to make
    assert [(r.part, r.parts) for r in replies] == [(1, 3), (2, 3), (3, 3)]  # type: ignore[attr-defined]
    for reply in replies:
        assert len(encode(reply)) < DEFAULT_MAX_FRAME // 4
    joined = StatusParts(9)
    wholes = [joined.add(reply) for reply in reversed(replies)]  # any order joins the same
    assert wholes[:2] == [None, None]
    whole = wholes[2]
    assert whole is not None and len(whole) == len(CORE_COMPONENTS) + agents
    assert list(whole)[: len(CORE_COMPONENTS)] == list(CORE_COMPONENTS)
    assert whole["agent:agent-02004"]["health"] == "ok"
    assert whole["agent:agent-02004"]["metrics"]["last_seen_s"] == 1.0


def test_statuses_being_made_at_once_are_capped() -> None:
    core = coordinator_with({f"agent-{i:05d}": () for i in range(STATUS_PART_SIZE)})
    for n in range(MAX_STATUS_JOBS):
        assert len(ask(core, 1.0, src=f"prober-{n}")) == 1  # part 1 of 2
    (refused,) = ask(core, 1.0, src="one-too-many")
    assert isinstance(refused, Error) and "status busy" in refused.reason
    core.on_timer(1.01)  # every status finishes
    assert len([m for _, m in core.drain() if isinstance(m, StatusReply)]) == MAX_STATUS_JOBS
    assert [type(m) for m in ask(core, 1.02, src="one-too-many")] == [StatusReply]


def test_parts_of_another_request_or_with_bad_numbers_are_ignored() -> None:
    joined = StatusParts(9)
    bus = (ComponentStatus("bus", "ok", ()),)
    assert joined.add(StatusReply(8, bus, 1, 1)) is None  # another request
    assert joined.add(StatusReply(9, bus, 3, 2)) is None  # part beyond parts
    assert joined.add(StatusReply(9, bus, 1, 2)) is None  # first of two
    assert joined.add(StatusReply(9, bus, 2, 3)) is None  # the count changed
    assert joined.add(StatusReply(9, (ComponentStatus("memory", "ok", ()),), 2, 2)) == {
        "bus": {"health": "ok", "metrics": {}},
        "memory": {"health": "ok", "metrics": {}},
    }

"""The tcp transport: envelope codec, a full multi-process run, hostile clients, durability.

The envelope tests are pure. The hostile-client and loopback tests run
``real.tcp.server.serve`` and an ``AgentHost`` on one event loop in this process
and attack the server with raw sockets. The ``slow`` tests start real
coordinator and worker processes (``real.tcp.run``) and check with psutil that
none is left behind.
"""

from __future__ import annotations

import asyncio
import os
import signal
import struct
import subprocess
import sys
from collections import Counter
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import msgpack
import psutil
import pytest

import real.tcp.server as server_module
from protocol.codec import CodecUsageError, MalformedFrame, encode, encode_body
from protocol.envelope import (
    FANOUT_VERSION,
    ROUTED_VERSION,
    Outbox,
    Routed,
    RoutedDecoder,
    encode_routed,
    node_id_bytes,
)
from protocol.messages import (
    Deliver,
    DeliveryKind,
    Error,
    Heartbeat,
    Hello,
    MemVerb,
    Probe,
    ProbeReply,
    Publish,
    Reject,
    Welcome,
)
from protocol.payload import checksum, make_payload
from protocol.plan import AgentSpec, Operation, OpKind, Plan
from protocol.settings import ProtocolSettings
from real.clock import RunClock, new_event_loop
from real.tcp.framing import FramedLink, open_link
from real.tcp.persistence import MemoryDB
from real.tcp.run import ChildProcesses, ServerProcess, run_plan
from real.tcp.server import BindRefused, CoordinatorServer, ServerLimits, ServerReport, serve
from real.tcp.workers import AgentHost

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
SETTINGS = ProtocolSettings()


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    loop = new_event_loop()
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


def frame(node: str, msg: object) -> bytes:
    return encode_routed(node_id_bytes(node), encode_body(msg))  # type: ignore[arg-type]


def living_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


# --- the envelope ----------------------------------------------------------------------


def test_envelope_layout_and_round_trip_byte_by_byte() -> None:
    data = frame("a1", Heartbeat(7)) + frame("zé", Probe(3))
    body = encode_body(Heartbeat(7))
    assert data[:4] == struct.pack(">I", 2 + 2 + len(body))
    assert data[4] == ROUTED_VERSION == 0x81
    assert data[5] == 2 and data[6:8] == b"a1" and data[8 : 8 + len(body)] == body
    decoder = RoutedDecoder()
    got = []
    for i in range(len(data)):
        got += decoder.feed(data[i : i + 1])
    assert got == [("a1", Heartbeat(7)), ("zé", Probe(3))]
    assert decoder.buffered == 0


@pytest.mark.parametrize(
    "bad",
    [
        struct.pack(">I", 0x7FFFFFFF) + b"\x81",  # oversized length, refused before the body
        struct.pack(">I", 3) + b"\x81\x01a",  # shorter than the minimum
        struct.pack(">I", 6) + b"\x01\x01a" + encode_body(Probe(1))[:3],  # bare codec version
        struct.pack(">I", 4) + b"\x81\x00ab",  # empty node id
        struct.pack(">I", 5) + b"\x81\x05abc",  # node id longer than the frame
        struct.pack(">I", 5) + b"\x81\x01\xff" + encode_body(Probe(1))[:2],  # not UTF-8
        struct.pack(">I", 10) + b"\x81\x01a" + b"\xc1" * 7,  # undecodable msgpack
        struct.pack(">I", 6) + b"\x81\x01a" + msgpack.packb([5, "x"]),  # bad field type
    ],
)
def test_malformed_envelopes_are_refused(bad: bytes) -> None:
    decoder = RoutedDecoder()
    good = frame("ok", Probe(9))
    with pytest.raises(MalformedFrame) as info:
        decoder.feed(good + bad)
    assert info.value.routed == [("ok", Probe(9))]  # type: ignore[attr-defined]
    with pytest.raises(MalformedFrame):
        decoder.feed(good)  # the stream stays refused


def fanout_frame(nodes: list[bytes], body: bytes, count: int | None = None) -> bytes:
    ids = b"".join(bytes((len(n),)) + n for n in nodes)
    head = bytes((FANOUT_VERSION, len(nodes) if count is None else count)) + ids
    return struct.pack(">I", len(head) + len(body)) + head + body


def test_a_fanout_frame_decodes_to_one_pair_per_node_with_one_message() -> None:
    deliver = Deliver(5, DeliveryKind.PUBLISH, "pub", 9, "t.x", b"data", 7)
    body = encode_body(deliver)
    data = frame("a0", Probe(1)) + fanout_frame([b"a1", "zé".encode(), b"a3"], body)
    assert data[len(frame("a0", Probe(1))) + 4] == FANOUT_VERSION == 0x82
    decoder = RoutedDecoder()
    got = []
    for i in range(len(data)):  # byte by byte: the decoder is incremental
        got += decoder.feed(data[i : i + 1])
    assert got == [("a0", Probe(1)), ("a1", deliver), ("zé", deliver), ("a3", deliver)]
    assert got[1][1] is got[2][1] is got[3][1]  # decoded once
    assert decoder.buffered == 0


class _Sink:
    """A stand-in StreamWriter that keeps what is written."""

    def __init__(self) -> None:
        self.data = b""
        self.transport = self

    def write(self, data: bytes) -> None:
        self.data += data

    def is_closing(self) -> bool:
        return False


def test_send_fanout_writes_the_documented_layout() -> None:
    sink = _Sink()
    link = FramedLink(None, sink)  # type: ignore[arg-type]
    body = encode_body(Probe(3))
    link.send_fanout(["a1", "a2"], body)
    link.flush()
    assert sink.data == struct.pack(">I", 8 + len(body)) + b"\x82\x02\x02a1\x02a2" + body
    with pytest.raises(CodecUsageError):
        link.send_fanout(["a1"], body)  # one node: a routed frame, not a fan-out


def deliver(msg_id: int) -> Deliver:
    return Deliver(msg_id, DeliveryKind.PUBLISH, "src", msg_id, "t", b"p", 0)


def test_the_outbox_frames_a_cores_output_per_link_in_order() -> None:
    """One pass over ``(destination, message)`` pairs: each link gets its nodes'
    frames in order; a run of one ``Deliver`` becomes one fan-out frame per link
    with two or more of its recipients; a node with no link is skipped."""
    outbox = Outbox()
    one, many = deliver(1), deliver(2)
    out = [("a1", Welcome("a1", 8, 0.5)), ("a1", one)]
    out += [(node, many) for node in ("a1", "b1", "a2", "gone", "b2", "a3")]
    out += [("b1", ProbeReply(4))]
    staged = outbox.stage(out, {"a1": "A", "a2": "A", "a3": "A", "b1": "B", "b2": "B"})
    assert outbox.links() == ["A", "B"] and not outbox.errors
    frames = {link: outbox.take(link) for link in ("A", "B")}
    assert frames["A"][1] == 3 and frames["B"][1] == 2
    assert RoutedDecoder().feed(frames["A"][0]) == [
        ("a1", Welcome("a1", 8, 0.5)),
        ("a1", one),
        ("a1", many),
        ("a2", many),
        ("a3", many),
    ]
    assert frames["A"][0].count(bytes((FANOUT_VERSION, 3))) == 1  # a1, a2, a3: one frame
    assert RoutedDecoder().feed(frames["B"][0]) == [
        ("b1", many),
        ("b2", many),
        ("b1", ProbeReply(4)),
    ]
    sizes = (Welcome("a1", 8, 0.5), one, many, many, ProbeReply(4))
    assert staged == sum(len(encode_body(m)) for m in sizes)  # a body counts once per link
    assert outbox.links() == [] and outbox.take("A") == (b"", 0)


def test_the_outbox_drops_what_cannot_be_framed_and_says_so() -> None:
    outbox = Outbox(max_frame=64)
    big = Publish(1, "t", b"x" * 100, 0)
    outbox.stage([("a1", big), ("a1", Probe(1)), ("é" * 200, Probe(2))], {"a1": 1, "é" * 200: 1})
    outbox.stage_from(2, "w1", [("coord", big), ("coord", Heartbeat(3))])
    assert len(outbox.errors) == 3 and "exceeds max_frame" in outbox.errors[0]
    assert RoutedDecoder().feed(outbox.take(1)[0]) == [("a1", Probe(1))]
    assert RoutedDecoder().feed(outbox.take(2)[0]) == [("w1", Heartbeat(3))]
    outbox.stage([("a1", Probe(5))], {"a1": 1})
    outbox.discard(1)
    assert outbox.links() == []


@pytest.mark.parametrize(
    "bad",
    [
        fanout_frame([b"a1"], encode_body(Probe(1))),  # a fan-out of one
        fanout_frame([b"a1", b"a2"], encode_body(Probe(1)), count=0),  # of none
        fanout_frame([b"a1", b""], encode_body(Probe(1))),  # an empty node id
        fanout_frame([b"a1", b"a2"], b"", count=9),  # more ids than the frame holds
        fanout_frame([b"a1", b"\xff"], encode_body(Probe(1))),  # not UTF-8
        fanout_frame([b"a1", b"a2"], b"\xc1\xc1"),  # undecodable body
    ],
)
def test_malformed_fanout_frames_are_refused(bad: bytes) -> None:
    decoder = RoutedDecoder()
    with pytest.raises(MalformedFrame) as info:
        decoder.feed(frame("ok", Probe(9)) + bad)
    assert info.value.routed == [("ok", Probe(9))]  # type: ignore[attr-defined]


async def fanout_session() -> tuple[list[bytes], dict[str, int]]:
    """Three subscribers share one connection; a publish reaches them in one frame."""
    ports: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()
    server = asyncio.get_running_loop().create_task(
        serve(settings=SETTINGS, ready=ports.put_nowait, stop=stop)
    )
    port = await ports.get()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    subs = ("s1", "s2", "s3")
    for node in subs:
        writer.write(frame(node, Hello(node, SETTINGS.token, (), ("t.#",))))
    writer.write(frame("pub", Hello("pub", SETTINGS.token)))
    decoder = RoutedDecoder()
    raw: list[bytes] = []
    got: list[Routed] = []

    async def until(predicate: Callable[[], bool]) -> None:
        async with asyncio.timeout(3.0):
            while not predicate():
                chunk = await reader.read(65536)
                raw.append(chunk)
                got.extend(decoder.feed(chunk))

    await until(lambda: sum(type(m) is Welcome for _, m in got) == 4)
    writer.write(frame("pub", Publish(1, "t.x", b"hello", checksum(b"hello"))))
    await until(lambda: sum(type(m) is Deliver for _, m in got) == 3)
    delivered = {node: sum(type(m) is Deliver for n, m in got if n == node) for node in subs}
    writer.close()
    stop.set()
    await server
    return raw, delivered


def test_the_server_sends_one_fanout_frame_per_connection() -> None:
    raw, delivered = run(fanout_session)
    assert delivered == {"s1": 1, "s2": 1, "s3": 1}
    data = b"".join(raw)
    assert data.count(bytes((FANOUT_VERSION, 3, 2)) + b"s1\x02s2\x02s3") == 1


# --- a full run on real processes --------------------------------------------------------

AGENTS = tuple(
    AgentSpec(
        f"a{i}",
        capabilities=("echo",) if i >= 4 else (),
        subscriptions=("news.#",) if i in (1, 2, 3) else (),
    )
    for i in range(6)
)


def small_plan(rounds: int = 25, spacing: float = 0.06) -> Plan:
    """Publish, direct, broadcast, task and memory put/get ops over about 1.5 s."""
    ops: list[Operation] = []
    for k in range(rounds):
        at = 0.05 + k * spacing
        for kind, origin, target, expected, verb in (
            (OpKind.PUBLISH, "a0", "news.x", 3, 0),
            (OpKind.DIRECT, "a1", "a2", 1, 0),
            (OpKind.BROADCAST, "a3", "", 5, 0),
            (OpKind.TASK, "a0", "echo", 1, 0),
            (OpKind.MEMORY, "a2", f"ns/k{k}", 1, MemVerb.PUT),
            (OpKind.MEMORY, "a5", f"ns/k{k}", 1, MemVerb.GET),
        ):
            op_id = len(ops) + 1
            ops.append(Operation(op_id, at, kind, origin, target, 48, expected, verb))
    return Plan(
        seed=7, duration=2.0, warmup=0.2, agents=AGENTS, operations=tuple(ops), drain_timeout=5.0
    )


def expected_pairs(plan: Plan) -> set[tuple[int, str]]:
    everyone = {spec.agent_id for spec in plan.agents}
    pairs: set[tuple[int, str]] = set()
    for op in plan.operations:
        if op.kind == OpKind.PUBLISH:
            nodes = {"a1", "a2", "a3"}
        elif op.kind == OpKind.DIRECT:
            nodes = {op.target}
        elif op.kind == OpKind.BROADCAST:
            nodes = everyone - {op.origin}
        else:
            nodes = {op.origin}
        pairs |= {(op.op_id, node) for node in nodes}
    return pairs


@pytest.mark.slow
def test_tcp_run_delivers_every_expected_completion_once(tmp_path: Path) -> None:
    plan = small_plan()
    db_path = tmp_path / "memory.db"
    fractions: list[float] = []
    result = run_plan(
        plan, workers=2, connections=2, db_path=str(db_path), progress=fractions.append
    )

    assert (result.backend, result.transport) == ("real", "tcp")
    handled = [c for c in result.completions if not c.duplicate]
    pairs = Counter((c.op_id, c.node) for c in handled)
    assert len(pairs) == plan.expected_total
    assert set(pairs) == expected_pairs(plan)
    assert max(pairs.values()) == 1, "a handler ran twice"
    assert all(c.intact for c in result.completions)
    assert all(c.at > plan.operations[c.op_id - 1].at for c in handled)
    assert sorted(result.registered) == [spec.agent_id for spec in AGENTS]
    assert all(at < 0 for at in result.registered.values())  # registered before t0
    assert [p.name for p in result.processes] == ["coordinator", "worker-0", "worker-1", "harness"]
    assert all(p.peak_rss_bytes > 0 and p.cpu_seconds > 0 for p in result.processes)
    # every process reports its wait for a core from the kernel (Linux schedstat)
    assert all(p.wait_seconds is not None and p.wait_seconds >= 0 for p in result.processes)
    for worker in result.processes[1:3]:  # CPU from the go to the stop: less than a whole life
        assert worker.load_cpu_seconds is not None
        assert 0 < worker.load_cpu_seconds < worker.cpu_seconds
    assert len(result.probes) == round(plan.duration / plan.probe_interval)
    assert all(p.answered is not None for p in result.probes)
    assert fractions and fractions[0] == 0.0
    assert plan.duration <= result.end_time < plan.duration + plan.drain_timeout
    assert not living_children(), "child processes left behind"

    # every acknowledged PUT is in the database after the server stopped
    acked = {c.op_id for c in handled if c.node == "a2"}
    puts = [op for op in plan.operations if op.verb == MemVerb.PUT and op.op_id in acked]
    assert len(puts) == 25
    with MemoryDB(db_path) as db:
        rows = {(w.namespace, w.key): w for w in db.load()}
    for op in puts:
        row = rows[tuple(op.target.split("/"))]  # type: ignore[index]
        assert row.value == make_payload(op.op_id, op.size) and row.version == 1


@pytest.mark.slow
def test_one_connection_per_agent_and_a_single_worker() -> None:
    plan = small_plan(rounds=8, spacing=0.05)
    plan = Plan(plan.seed, 0.6, 0.1, plan.agents, plan.operations, drain_timeout=5.0)
    result = run_plan(plan, workers=1, connections=0, use_uvloop=False)
    handled = {(c.op_id, c.node) for c in result.completions if not c.duplicate}
    assert handled == expected_pairs(plan)
    assert [p.name for p in result.processes] == ["coordinator", "worker-0", "harness"]
    assert not living_children()


# --- hostile clients against a live server -------------------------------------------------


async def read_until_closed(reader: asyncio.StreamReader, timeout: float = 3.0) -> bytes:
    """Everything the server sends until it closes the connection."""
    data = b""
    async with asyncio.timeout(timeout):
        while chunk := await reader.read(65536):
            data += chunk
    return data


async def attack(port: int, payload: bytes, half_close: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(payload)
    if half_close:
        writer.write_eof()
    try:
        return await read_until_closed(reader)
    finally:
        writer.close()


async def deliveries_to(host: AgentHost, node: str, op_id: int, timeout: float = 3.0) -> int:
    agent = host.agents[node]
    async with asyncio.timeout(timeout):
        while not any(c.op_id == op_id for c in agent.completions):
            await asyncio.sleep(0.005)
    return sum(1 for c in agent.completions if c.op_id == op_id)


async def squat_then_lose(port: int) -> bytes:
    """Claim an unregistered id; the real agent still registers; the squatter is refused."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(frame("late", Probe(5)))
    assert RoutedDecoder().feed(await reader.read(65536)) == [("late", ProbeReply(5))]
    late = AgentHost("127.0.0.1", port, [AgentSpec("late")], SETTINGS, 1, RunClock())
    late.start()
    await late.wait_registered(3.0)
    writer.write(frame("late", Heartbeat(1)))
    try:
        return await read_until_closed(reader)
    finally:
        writer.close()
        await late.close()


def capture_servers(monkeypatch: pytest.MonkeyPatch) -> list[CoordinatorServer]:
    """Every ``CoordinatorServer`` that ``serve`` makes from now on, to look at its state."""
    made: list[CoordinatorServer] = []

    class Captured(CoordinatorServer):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(server_module, "CoordinatorServer", Captured)
    return made


async def revive_someone_else(port: int, server: CoordinatorServer) -> bytes:
    """An agent registers and disconnects; a client may not speak for it without a hello."""
    victim = AgentHost("127.0.0.1", port, [AgentSpec("victim")], SETTINGS, 1, RunClock())
    victim.start()
    await victim.wait_registered(3.0)
    await victim.close()
    session = server.coordinator.sessions["victim"]
    async with asyncio.timeout(3.0):  # the server sees the link close: the session is failed
        while session.linked or session.alive or "victim" in server.routes:
            await asyncio.sleep(0.005)
    return await attack(port, frame("victim", Heartbeat(1)))


async def hostile_session(
    report: list[ServerReport], servers: list[CoordinatorServer]
) -> dict[str, bytes]:
    ports: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()
    limits = ServerLimits(hello_timeout=0.3, sweep_interval=0.1)
    server = asyncio.get_running_loop().create_task(
        serve(settings=SETTINGS, ready=ports.put_nowait, stop=stop, limits=limits)
    )
    port = await ports.get()
    specs = [AgentSpec("pub"), AgentSpec("sub", subscriptions=("t.#",))]
    host = AgentHost("127.0.0.1", port, specs, SETTINGS, 1, RunClock())
    host.start()
    await host.wait_registered(5.0)

    def publish(op_id: int) -> None:
        host.issue(Operation(op_id, 0.0, OpKind.PUBLISH, "pub", "t.x", 32, 1), host.clock.now())
        host.flush()

    publish(1)
    await deliveries_to(host, "sub", 1)
    replies = {
        "garbage": await attack(port, b"\x00\x00\x00\x0a\x81\x01a" + b"\xc1" * 7),
        "random": await attack(port, os.urandom(64)),
        "oversized": await attack(port, b"\x7f\xff\xff\xff\x81\x01a"),
        "truncated": await attack(port, struct.pack(">I", 100) + b"\x81\x01a1234", True),
        "bare codec frame": await attack(port, encode(Probe(1))),
        "bad token": await attack(port, frame("intruder", Hello("intruder", "wrong-token"))),
        "impersonation": await attack(port, frame("sub", Heartbeat(1))),
        "silent": await attack(port, b""),
        "registered, then garbage": await attack(
            port, frame("rogue", Hello("rogue", SETTINGS.token)) + b"\x00\x00\x00\x01\x81"
        ),
    }
    replies["squatter"] = await squat_then_lose(port)
    replies["revive"] = await revive_someone_else(port, servers[0])
    publish(2)
    assert await deliveries_to(host, "sub", 2) == 1
    probe = await open_link("127.0.0.1", port)
    probe.send("probe-x", encode_body(Probe(42)))
    probe.flush()
    answer = await probe.read_batch()
    assert answer == [("probe-x", ProbeReply(42))]
    assert host.links_up == 1 and not host.notes, host.notes
    probe.close()
    await host.close()
    stop.set()
    report.append(await server)
    return replies


def test_hostile_clients_are_refused_and_legit_agents_keep_going(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    reports: list[ServerReport] = []
    servers = capture_servers(monkeypatch)
    replies = run(lambda: hostile_session(reports, servers))
    # every attack ended with the server closing the connection (read_until_closed returned)
    rejected = RoutedDecoder().feed(replies["bad token"])
    assert rejected == [("intruder", Reject("bad token"))]
    assert RoutedDecoder().feed(replies["impersonation"]) == []  # nothing sent as "sub"
    report = reports[0]
    assert report.refused_connections >= 5
    assert report.stats["refused"] >= 1
    assert any("bound to another connection" in e for e in report.events)
    # the core refuses a known node that speaks on a new link without a hello
    revive = RoutedDecoder().feed(replies["revive"])
    assert revive == [("victim", Error("victim must say hello on its new link"))]
    assert replies["squatter"] == b""
    welcome, error = RoutedDecoder().feed(replies["registered, then garbage"])
    assert welcome == ("rogue", Welcome("rogue", SETTINGS.credit, SETTINGS.heartbeat_interval))
    assert error[0] == "rogue" and isinstance(error[1], Error) and "malformed" in error[1].reason
    # a first frame with a valid head naming "a" and a bad body: "a" is told why (it
    # used to be closed without the Error that docs/protocol.md promises)
    ((named, told),) = RoutedDecoder().feed(replies["garbage"])
    assert named == "a" and isinstance(told, Error) and "malformed input from a" in told.reason
    assert any("no hello" in e for e in report.events)


def test_server_binds_loopback_by_default() -> None:
    async def listen() -> list[str]:
        ports: asyncio.Queue[int] = asyncio.Queue()
        stop = asyncio.Event()
        server = asyncio.get_running_loop().create_task(serve(ready=ports.put_nowait, stop=stop))
        port = await ports.get()
        listening = [
            c.laddr.ip
            for c in psutil.Process().net_connections(kind="tcp")
            if c.status == psutil.CONN_LISTEN and c.laddr.port == port
        ]
        stop.set()
        await server
        return listening

    assert run(listen) == ["127.0.0.1"]


def test_a_public_bind_with_the_default_token_is_refused_by_every_entry_point() -> None:
    """The guard lived only in the CLI: ``python -m real.tcp.server --host 0.0.0.0``
    skipped it. Now ``serve`` checks, and every entry point goes through it."""
    assert ProtocolSettings().bind_refusal("0.0.0.0")
    assert ProtocolSettings(token="s3cret").bind_refusal("0.0.0.0") == ""
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        assert ProtocolSettings().bind_refusal(host) == "", host
    with pytest.raises(BindRefused, match="default token is public"):
        run(lambda: serve(host="0.0.0.0", stop=asyncio.Event()))
    commands = (
        [sys.executable, "-m", "real.tcp.server", "--host", "0.0.0.0", "--port", "0"],
        [str(ROOT / ".venv" / "bin" / "swarmtwin"), "coordinator", "--host", "0.0.0.0"],
    )
    for command in commands:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert "default token is public" in done.stderr
    assert not living_children()


# --- acknowledged writes survive a killed coordinator ---------------------------------------


async def keep_putting(host: AgentHost, count: int, issued: list[int]) -> None:
    for op_id in range(1, count + 1):
        issued.append(op_id)
        op = Operation(op_id, 0.0, OpKind.MEMORY, "writer", f"ns/k{op_id}", 32, 1, MemVerb.PUT)
        host.issue(op, host.clock.now())
        if op_id % 20 == 0:
            host.flush()
            await asyncio.sleep(0.001)
    host.flush()


async def put_then_kill(db_path: str, count: int) -> tuple[set[int], int]:
    """Stream PUTs, SIGKILL the coordinator mid-stream; return (acked op ids, issued)."""
    children = ChildProcesses()
    try:
        server = await ServerProcess.start(children, SETTINGS, db_path)
        host = AgentHost("127.0.0.1", server.port, [AgentSpec("writer")], SETTINGS, 1, RunClock())
        host.start()
        await host.wait_registered(5.0)
        issued: list[int] = []
        writer = asyncio.get_running_loop().create_task(keep_putting(host, count, issued))
        agent = host.agents["writer"]
        async with asyncio.timeout(10):
            while len(agent.completions) < count // 2:
                await asyncio.sleep(0.001)
        assert server.pid is not None
        os.kill(server.pid, signal.SIGKILL)
        acked = {c.op_id for c in agent.completions}  # before this loop reads anything more
        writer.cancel()
        await host.close()
        return acked, len(issued)
    finally:
        children.reap()


@pytest.mark.slow
def test_acknowledged_writes_survive_sigkill_of_the_coordinator(tmp_path: Path) -> None:
    db_path = tmp_path / "memory.db"
    acked, issued = run(lambda: put_then_kill(str(db_path), 4000))
    assert 2000 <= len(acked) <= issued < 4000  # killed mid-stream
    with MemoryDB(db_path) as db:
        rows = {w.key: w for w in db.load()}
    missing = [op_id for op_id in acked if f"k{op_id}" not in rows]
    assert not missing, f"{len(missing)} acknowledged writes lost"
    for op_id in acked:
        assert rows[f"k{op_id}"].value == make_payload(op_id, 32)
    assert not living_children()


@pytest.mark.slow
def test_a_rejected_agent_fails_the_run_fast_and_leaves_no_process() -> None:
    plan = small_plan(rounds=2)
    agents = (*plan.agents, AgentSpec("bad", subscriptions=("a..b",)))
    plan = Plan(plan.seed, plan.duration, plan.warmup, agents, plan.operations)
    with pytest.raises(RuntimeError, match="rejected"):
        run_plan(plan, workers=2)
    assert not living_children()


# --- the foreground commands --------------------------------------------------------------

AGENTS_SCRIPT = (
    "import sys; from real.tcp.workers import agents_command; "
    "names = [f'idle-{i}' for i in range(5)]; "
    "sys.exit(agents_command('127.0.0.1', int(sys.argv[1]), 'T', names, (), ('t.#',), 2))"
)


@pytest.mark.slow
def test_coordinator_and_agents_commands_run_until_sigint(tmp_path: Path) -> None:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    server_cmd = [sys.executable, "-m", "real.tcp.server", "--port", "0", "--token", "T"]
    server = subprocess.Popen(
        [*server_cmd, "--db", str(tmp_path / "m.db")], stdout=subprocess.PIPE, text=True, env=env
    )
    agents: subprocess.Popen[str] | None = None
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        assert "listening on 127.0.0.1:" in line
        port = line.split("127.0.0.1:")[1].split()[0].rstrip(";")
        agents = subprocess.Popen(
            [sys.executable, "-c", AGENTS_SCRIPT, port], stdout=subprocess.PIPE, text=True, env=env
        )
        assert agents.stdout is not None
        assert agents.stdout.readline().startswith("5/5 registered, 2/2 links up")
        agents.send_signal(signal.SIGINT)
        assert agents.wait(10) == 0
        server.send_signal(signal.SIGINT)
        assert server.wait(10) == 0
        assert "coordinator stopped" in server.stdout.read()
    finally:
        for proc in (agents, server):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()

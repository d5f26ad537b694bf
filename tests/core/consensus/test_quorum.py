"""The quorum store (``protocol.consensus.quorum``, ``quorumclient``): Dynamo's N/R/W.

What it promises is checked, and what it does not promise is shown to fail the
linearizability checker, which is how a run measures it:

- With R + W > N and synchronous read repair, one writer per key is
  linearizable under loss, duplication, reordering, partitions and crashes
  (clean or torn), and every operation finishes once the faults heal
  (Hypothesis draws the cluster, the quorums and a fault timeline).
- Two writers of one key at once are both acknowledged with the same version
  (last writer wins loses one); R + W <= N, and asynchronous read repair, let a
  read miss what an earlier one returned. The checker says "no" to each.
- With one client and no faults, every answer is what the coordinator's store
  (``MemoryStore.apply``) gives for the same requests.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.linearizable import Verdict, check
from protocol.consensus.quorum import (
    EMPTY,
    Cell,
    QuorumConfig,
    StorageReplica,
    default_quorums,
)
from protocol.consensus.quorumclient import QuorumClient
from protocol.memory import MemoryStore
from protocol.messages import (
    Error,
    Hello,
    MemReply,
    MemRequest,
    MemVerb,
    Message,
    QuorumCell,
    QuorumRead,
    QuorumWrite,
    QuorumWritten,
)
from protocol.settings import ProtocolSettings
from tests.core.consensus import lossywire
from tests.core.consensus.quorumnet import SETTINGS, QuorumNet
from tests.core.test_core_properties import FAST

BOUND = 600  # rounds to finish once the faults heal
ROUNDS = 150  # rounds of load under faults


# --- the configuration and one replica ------------------------------------------------


@pytest.mark.parametrize(
    ("read", "write", "repair", "why"),
    [(0, 2, "sync", "read quorum 0"), (2, 4, "sync", "write quorum 4"), (2, 2, "x", "repair")],
)
def test_a_bad_configuration_says_what_is_wrong(
    read: int, write: int, repair: str, why: str
) -> None:
    with pytest.raises(ValueError, match=why):
        QuorumConfig(("s1", "s2", "s3"), read, write, repair)


def test_majorities_by_default_and_overlap_is_r_plus_w_over_n() -> None:
    assert default_quorums(3) == (2, 2)
    assert default_quorums(5) == (3, 3)
    assert QuorumConfig(("a", "b", "c"), 2, 2).overlapping
    assert not QuorumConfig(("a", "b", "c"), 1, 2).overlapping


def _write(op: int, counter: int, writer: str, version: int, value: bytes) -> QuorumWrite:
    return QuorumWrite(op, 1, "ns", "k", counter, writer, version, True, value, SETTINGS.token)


def test_a_replica_keeps_the_highest_stamp_in_any_order_and_acks_after_the_disk() -> None:
    writes = [_write(1, 2, "a", 2, b"x"), _write(2, 3, "a", 3, b"y"), _write(3, 3, "b", 3, b"z")]
    for order in ([0, 1, 2], [2, 1, 0], [1, 2, 0, 2, 1]):
        replica = StorageReplica("s1", SETTINGS)
        for i in order:
            replica.receive("c", writes[i])
        assert replica.cells[("ns", "k")] == Cell(3, "b", 3, True, b"z")
    replica = StorageReplica("s1", SETTINGS)
    replica.receive("c", writes[0])
    durable, out = replica.take()
    assert [d.cell for d in durable] == [Cell(2, "a", 2, True, b"x")]
    assert out == [("c", QuorumWritten(1, 1))]
    replica.receive("c", writes[0])  # again: nothing new to make durable, acked all the same
    assert replica.take() == ([], [("c", QuorumWritten(1, 1))])
    replica.receive("c", QuorumRead(9, 0, "ns", "k", SETTINGS.token))
    assert replica.take()[1] == [("c", QuorumCell(9, 0, 2, "a", 2, True, b"x"))]


def test_a_replica_refuses_what_it_must_and_keeps_serving() -> None:
    small = ProtocolSettings(max_value_bytes=4)
    replica = StorageReplica("s1", small)
    replica.receive("c", QuorumRead(1, 0, "ns", "k", "wrong"))
    replica.receive("c", QuorumRead(2, 0, "ns", "k" * 257, small.token))
    replica.receive("c", _write(3, 1, "c", 1, b"12345"))
    replica.receive("c", Hello("c", small.token))
    replica.receive("c", QuorumRead(4, 0, "ns", "k", small.token))
    durable, out = replica.take()
    assert durable == [] and replica.cells == {}
    assert [type(m).__name__ for _, m in out] == [
        "QuorumCell",
        "QuorumCell",
        "QuorumWritten",
        "Error",
        "QuorumCell",
    ]
    errors = [getattr(m, "error", "") or getattr(m, "reason", "") for _, m in out]
    assert "bad token" in errors[0] and "1..256" in errors[1] and "max_value" in errors[2]
    assert "Hello" in errors[3] and errors[4] == ""
    assert len(replica.refused) == 4


# --- one client, by hand ------------------------------------------------------------------


@dataclass
class Hand:
    """Clients and replicas with the messages moved by hand, to build exact schedules."""

    config: QuorumConfig

    def __post_init__(self) -> None:
        self.replicas = {r: StorageReplica(r, SETTINGS) for r in self.config.replicas}
        self.clients: dict[str, QuorumClient] = {}
        self.time = 0.0
        self.history: dict[tuple[str, int], tuple[MemRequest, float]] = {}
        self.ops: list = []

    def client(self, name: str) -> QuorumClient:
        if name not in self.clients:
            self.clients[name] = QuorumClient(name, self.config, SETTINGS.token)
        return self.clients[name]

    def submit(self, name: str, request: MemRequest) -> list[tuple[str, Message]]:
        self.time += 1
        self.history[(name, request.op_id)] = (request, self.time)
        client = self.client(name)
        client.submit(request, self.time)
        return client.drain()

    def to(self, name: str, sent: list[tuple[str, Message]], replicas: set[str]) -> list:
        """Deliver ``sent`` to ``replicas`` only and their answers back to ``name``;
        return what the client sends next."""
        self.time += 1
        client = self.client(name)
        for dst, msg in sent:
            if dst in replicas:
                replica = self.replicas[dst]
                replica.receive(name, msg)
                for _, answer in replica.take()[1]:
                    client.receive(dst, answer, self.time)
        self._collect(name)
        return client.drain()

    def _collect(self, name: str) -> None:
        from harness.metrics.linearizable import VERB_OF, MemOp
        from protocol.payload import checksum

        client = self.client(name)
        for reply in client.replies:
            request, invoked = self.history.pop((name, reply.op_id))
            verb = VERB_OF[MemVerb(request.verb)]
            written = checksum(request.value) if request.verb in (MemVerb.PUT, MemVerb.CAS) else 0
            read = checksum(reply.value) if request.verb == MemVerb.GET and reply.ok else 0
            self.ops.append(
                MemOp(name, "ns", request.key, verb, invoked, self.time, written,
                      request.expected_version, reply.ok, reply.version, read)
            )  # fmt: skip
        client.replies.clear()

    def verdict(self) -> Verdict:
        from harness.metrics.linearizable import VERB_OF, MemOp
        from protocol.payload import checksum

        pending = [
            MemOp(name, "ns", request.key, VERB_OF[MemVerb(request.verb)], invoked,
                  checksum=checksum(request.value) if request.verb != MemVerb.GET else 0)
            for (name, _), (request, invoked) in self.history.items()
        ]  # fmt: skip
        return check([*self.ops, *pending])


ALL = {"s1", "s2", "s3"}


def put(op: int, value: bytes, key: str = "k") -> MemRequest:
    return MemRequest(op, MemVerb.PUT, "ns", key, value)


def get(op: int, key: str = "k") -> MemRequest:
    return MemRequest(op, MemVerb.GET, "ns", key)


def test_a_put_takes_two_round_trips_and_a_get_one_when_the_replicas_agree() -> None:
    hand = Hand(QuorumConfig(("s1", "s2", "s3"), 2, 2))
    sent = hand.submit("c1", put(1, b"v"))
    assert {type(m) for _, m in sent} == {QuorumRead} and len(sent) == 3
    sent = hand.to("c1", sent, ALL)  # the read round: the write round follows
    assert {type(m) for _, m in sent} == {QuorumWrite} and len(sent) == 3
    assert hand.to("c1", sent, ALL) == []
    sent = hand.submit("c2", get(2))
    assert hand.to("c2", sent, ALL) == []  # every replica holds the newest: no repair
    assert [(op.verb.value, op.version) for op in hand.ops] == [("put", 1), ("get", 1)]
    assert hand.verdict().linearizable is True


def test_two_writers_of_one_key_at_once_are_both_acked_with_one_version() -> None:
    hand = Hand(QuorumConfig(("s1", "s2", "s3"), 2, 2))
    a = hand.submit("c1", put(1, b"a"))
    b = hand.submit("c2", put(2, b"b"))
    a = hand.to("c1", a, ALL)  # both read the empty key
    b = hand.to("c2", b, ALL)
    hand.to("c1", a, ALL)
    hand.to("c2", b, ALL)
    assert [(op.ok, op.version) for op in hand.ops] == [(True, 1), (True, 1)]
    replica = hand.replicas["s1"].cells[("ns", "k")]
    assert replica.value == b"b"  # the higher stamp (c2 > c1) won; c1's write is lost
    verdict = hand.verdict()
    assert verdict.linearizable is False, verdict.describe()


def test_without_overlapping_quorums_a_read_misses_an_acknowledged_write() -> None:
    hand = Hand(QuorumConfig(("s1", "s2", "s3"), 1, 1))
    sent = hand.submit("c1", put(1, b"v"))
    sent = hand.to("c1", sent, {"s1"})
    hand.to("c1", sent, {"s1"})  # acknowledged by s1 alone
    hand.to("c2", hand.submit("c2", get(2)), {"s3"})
    assert [(op.verb.value, op.ok) for op in hand.ops] == [("put", True), ("get", False)]
    assert hand.verdict().linearizable is False


@pytest.mark.parametrize("repair", ["sync", "async"])
def test_a_read_of_a_half_written_cell_repairs_before_it_answers_only_when_sync(
    repair: str,
) -> None:
    hand = Hand(QuorumConfig(("s1", "s2", "s3"), 2, 2, repair))
    sent = hand.to("c1", hand.submit("c1", put(1, b"new")), ALL)
    hand.to("c1", sent, {"s1"})  # the write reached s1 only: c1's put is still pending
    sent = hand.to("c2", hand.submit("c2", get(2)), {"s1", "s2"})  # sees "new" on s1
    if repair == "sync":
        assert {type(m) for _, m in sent} == {QuorumWrite}  # written back before answering
        assert hand.to("c2", sent, {"s2"}) == []
    assert [(op.client, op.version) for op in hand.ops] == [("c2", 1)]
    sent = hand.to("c3", hand.submit("c3", get(3)), {"s2", "s3"})  # later, elsewhere
    if repair == "sync":  # found on s2 alone: written back to s3 too before answering
        assert hand.to("c3", sent, {"s3"}) == []
    c3 = hand.ops[-1]
    assert c3.client == "c3"
    if repair == "sync":
        assert (c3.ok, c3.version) == (True, 1)
        assert hand.verdict().linearizable is True
    else:
        assert (c3.ok, c3.version) == (False, 0)  # "new", then absent: not linearizable
        assert hand.verdict().linearizable is False


# --- against the coordinator's store ---------------------------------------------------

VERBS = st.sampled_from([MemVerb.GET, MemVerb.PUT, MemVerb.CAS, MemVerb.DELETE])
REQUESTS = st.lists(
    st.tuples(VERBS, st.sampled_from(["a", "b"]), st.binary(max_size=3), st.integers(0, 3)),
    max_size=30,
)


@given(REQUESTS, st.integers(0, 2**16))
@settings(FAST, max_examples=60)
def test_one_client_gets_what_the_coordinators_store_answers(
    requests: list[tuple[MemVerb, str, bytes, int]], seed: int
) -> None:
    net = QuorumNet(replicas=3, clients=1, seed=seed)
    store = MemoryStore()
    for op_id, (verb, key, value, expected) in enumerate(requests, 1):
        want = store.apply(op_id, verb, "ns", key, value, expected)
        net.submit("c1", verb, key, value, expected)
        for _ in range(20):
            if net.done():
                break
            net.deliver()
        assert net.replies[-1:] == [want], (verb, key)


# --- under faults ----------------------------------------------------------------------


@dataclass(frozen=True)
class Timeline:
    replicas: int
    write: int
    read: int
    loss: float
    duplicate: float
    seed: int
    faults: tuple[tuple[int, str, int], ...]  # (round, fault, which)


FAULTS = ("crash", "torn", "restart", "cut", "split", "heal")


@st.composite
def timelines(draw: st.DrawFn) -> Timeline:
    n = draw(st.sampled_from([1, 3, 3, 5]))
    write = draw(st.integers(1, n))
    read = draw(st.integers(n - write + 1, n))  # R + W > N
    faults = draw(
        st.lists(
            st.tuples(st.integers(0, ROUNDS), st.sampled_from(FAULTS), st.integers(0, 6)),
            max_size=20,
        )
    )
    return Timeline(
        n,
        write,
        read,
        draw(st.sampled_from([0.0, 0.2, 0.4])),
        draw(st.sampled_from([0.0, 0.1])),
        draw(st.integers(0, 2**16)),
        tuple(sorted(faults)),
    )


def inject(net: QuorumNet, fault: str, which: int) -> None:
    replica = net.replicas[which % len(net.replicas)]
    if fault in ("crash", "torn"):
        net.crash(replica, torn=fault == "torn")
    elif fault == "restart" and replica in net.dead:
        net.restart(replica)
    elif fault == "cut":  # a replica alone
        net.partition((replica,), tuple(n for n in net.ids if n != replica))
    elif fault == "split":  # a client with some replicas, the rest apart
        client = net.clients[which % len(net.clients)]
        side = (client, *net.replicas[: which % len(net.replicas) + 1])
        net.partition(side, tuple(n for n in net.ids if n not in side))
    elif fault == "heal":
        net.heal()


def run(timeline: Timeline) -> QuorumNet:
    net = QuorumNet(
        timeline.replicas,
        clients=3,
        read=timeline.read,
        write=timeline.write,
        seed=timeline.seed,
        loss=timeline.loss,
        duplicate=timeline.duplicate,
    )
    events = list(timeline.faults)
    value = 0
    for r in range(ROUNDS):
        while events and events[0][0] == r:
            _, fault, which = events.pop(0)
            inject(net, fault, which)
        client = net.clients[r % 3]
        key = f"k{r % 3}" if r % 2 else f"k{(r // 2) % 3}"  # k_i is c_(i+1)'s to write
        if len(net.client(client)) >= 2:  # a client waits with two unanswered
            pass
        elif client == f"c{int(key[1]) + 1}" and r % 4 != 1:
            value += 1
            verb = [MemVerb.PUT, MemVerb.CAS, MemVerb.DELETE][value % 3]
            net.submit(client, verb, key, str(value).encode(), expected=value % 4)
        else:
            net.submit(client, MemVerb.GET, key)
        net.round()
    net.loss = net.duplicate = 0.0
    net.heal()
    for replica in net.replicas:
        if replica in net.dead or replica in net.tearing:
            net.restart(replica)
    lossywire.run_until_done(net, BOUND)
    for client in net.clients:  # every client reads every key once the faults healed
        for key in ("k0", "k1", "k2"):
            net.submit(client, MemVerb.GET, key)
    lossywire.run_until_done(net, BOUND)
    return net


@given(timelines())
@settings(FAST, max_examples=500)  # fewer miss asynchronous repair
def test_one_writer_per_key_is_linearizable_and_live_under_random_faults(
    timeline: Timeline,
) -> None:
    net = run(timeline)
    verdict = check(net.history())
    assert verdict.linearizable is True, verdict.describe()
    assert all(op.returned < float("inf") for op in net.history())


def test_acknowledged_writes_survive_crashes_of_every_replica() -> None:
    net = QuorumNet(3, clients=1, seed=3)
    for i in range(10):
        net.submit("c1", MemVerb.PUT, f"k{i}", b"v%d" % i)
    lossywire.run_until_done(net, BOUND)
    for replica in net.replicas:
        net.crash(replica)
    for replica in net.replicas:
        net.restart(replica)
    for i in range(10):
        net.submit("c1", MemVerb.GET, f"k{i}")
    lossywire.run_until_done(net, BOUND)
    reads = [op for op in net.history() if op.verb.value == "get"]
    assert [(op.ok, op.version) for op in reads] == [(True, 1)] * 10
    assert check(net.history()).linearizable is True


def test_a_client_asks_silent_replicas_again_until_the_partition_heals() -> None:
    net = QuorumNet(3, clients=1, seed=5)
    net.partition(("c1", "s1"), ("s2", "s3"))
    net.submit("c1", MemVerb.PUT, "k", b"v")
    for _ in range(40):
        net.round()
    assert not net.done() and net.client("c1").retries > 0
    net.heal()
    lossywire.run_until_done(net, BOUND)
    assert [(op.ok, op.version) for op in net.history()] == [(True, 1)]


def test_an_unknown_answer_or_a_stranger_changes_nothing() -> None:
    client = QuorumClient("c1", QuorumConfig(("s1", "s2", "s3"), 2, 2), SETTINGS.token)
    client.submit(get(1), 0.0)
    client.drain()
    for src, msg in [
        ("s9", QuorumCell(1, 0, 5, "x", 5, True, b"evil")),  # not a replica
        ("s1", QuorumCell(1, 1, 5, "x", 5, True, b"late")),  # a round not asked
        ("s1", QuorumWritten(1, 1)),
        ("s1", Error("?")),
    ]:
        client.receive(src, msg, 0.1)
    assert client.replies == [] and len(client) == 1
    client.receive("s1", QuorumCell(1, 0, *EMPTY), 0.2)
    client.receive("s1", QuorumCell(1, 0, *EMPTY), 0.2)  # a duplicate counts once
    assert client.replies == []
    client.receive("s2", QuorumCell(1, 0, *EMPTY), 0.3)
    assert client.replies == [MemReply(1, False, 0, b"", "absent")]


def test_an_agent_with_a_quorum_store_records_its_memory_ops_as_the_coordinators() -> None:
    from protocol.agent import Agent

    config = QuorumConfig(("s1", "s2", "s3"), 2, 2)
    agent = Agent("a1", "coord", SETTINGS, quorum=config)
    replicas = {r: StorageReplica(r, SETTINGS) for r in config.replicas}
    agent.memory(1, MemVerb.PUT, "ns", "k", b"v", now=0.0)
    agent.memory(2, MemVerb.GET, "ns", "k", b"", now=0.0)  # waits for the put (one key)
    assert agent.pending == 2 and len(agent.requests) == 0  # not the coordinator's window
    now = 0.0
    for _ in range(6):
        now += 0.001
        out = agent.drain()
        assert all(dst in replicas for dst, _ in out)  # nothing for the coordinator
        for dst, msg in out:
            replicas[dst].receive("a1", msg)
            for _, answer in replicas[dst].take()[1]:
                agent.receive(dst, answer, now)
    assert [(c.op_id, c.ok, c.version) for c in agent.mem_answered] == [(1, True, 1), (2, True, 1)]
    assert [(w.op_id, w.version) for w in agent.write_acks] == [(1, 1)]
    assert [c.op_id for c in agent.completions] == [1, 2] and agent.pending == 0
    assert agent.next_deadline() is None


def test_a_client_runs_at_most_its_limit_and_sheds_what_waited_too_long_unsent() -> None:
    shed: list[int] = []
    config = QuorumConfig(("s1", "s2", "s3"), 2, 2)
    client = QuorumClient("c1", config, SETTINGS.token, limit=2, shed_after=0.03, shed=shed)
    for op_id, key in enumerate(["a", "b", "c", "a"], 1):  # c: the limit; the 2nd a: its key
        client.submit(get(op_id, key), 0.0)
    sent = {m.op_id for _, m in client.drain()}
    assert sent == {1, 2} and len(client) == 4
    assert client.next_deadline() == pytest.approx(0.03)  # the waiting ones' expiry
    client.on_timer(0.031)  # the replicas never answered: 3 and 4 waited too long
    assert shed == [3, 4] and len(client) == 2
    for replica in ("s1", "s2"):  # op 1 answers; nothing left to start
        client.receive(replica, QuorumCell(1, 0, *EMPTY), 0.04)
    assert [r.op_id for r in client.replies] == [1] and len(client) == 1
    client.submit(get(5, "c"), 0.05)  # under the limit again: sent at once
    assert 5 in {m.op_id for _, m in client.drain() if isinstance(m, QuorumRead)}

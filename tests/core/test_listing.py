"""Listing topics, namespaces and keys: ``ListRequest``/``ListReply`` in the core.

A bare ``Coordinator`` driven by hand (a manual ``now``), and the memory store's
index of namespaces checked against its contents under random writes (Hypothesis).
"""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.codec import decode_frame, encode
from protocol.coordinator import Coordinator
from protocol.memory import MemoryStore, Write
from protocol.messages import (
    LIST_LIMIT,
    Error,
    Hello,
    ListReply,
    ListRequest,
    ListWhat,
    MemRequest,
    MemVerb,
    Reject,
)
from protocol.settings import ProtocolSettings

SETTINGS = ProtocolSettings(heartbeat_interval=0.5, failure_after=1.5)
TOKEN = SETTINGS.token


def coordinator() -> Coordinator:
    core = Coordinator("coord", SETTINGS)
    core.receive("a1", Hello("a1", TOKEN, (), ("news.#", "alerts")), 0.0)
    core.receive("a2", Hello("a2", TOKEN, (), ("alerts",)), 0.0)
    for op, (namespace, key) in enumerate((("ns", "x"), ("ns", "y"), ("other", "z")), 1):
        core.receive("a1", MemRequest(op, MemVerb.PUT, namespace, key, b"v"), 0.0)
    core.receive("a1", MemRequest(9, MemVerb.PUT, "ns", "x", b"again"), 0.0)
    core.drain()
    return core


def ask(core: Coordinator, msg: ListRequest, src: str = "console") -> list[object]:
    core.receive(src, msg, 1.0)
    return [m for dst, m in core.drain() if dst == src]


def pairs(reply: ListReply) -> dict[str, int]:
    return dict(zip(reply.names, reply.counts, strict=True))


def test_topics_namespaces_and_keys_are_listed_with_their_counts() -> None:
    core = coordinator()
    (topics,) = ask(core, ListRequest(1, TOKEN, ListWhat.TOPICS))
    assert isinstance(topics, ListReply) and topics.request_id == 1
    assert pairs(topics) == {"news.#": 1, "alerts": 2} and topics.total == 2
    (spaces,) = ask(core, ListRequest(2, TOKEN, ListWhat.NAMESPACES))
    assert isinstance(spaces, ListReply) and pairs(spaces) == {"ns": 2, "other": 1}
    (keys,) = ask(core, ListRequest(3, TOKEN, ListWhat.KEYS, "ns"))
    assert isinstance(keys, ListReply) and pairs(keys) == {"x": 2, "y": 1}  # versions
    (none,) = ask(core, ListRequest(4, TOKEN, ListWhat.KEYS, "absent"))
    assert isinstance(none, ListReply) and none.names == () and none.total == 0


def test_a_list_is_capped_and_says_how_many_there_are() -> None:
    core = coordinator()
    (one,) = ask(core, ListRequest(1, TOKEN, ListWhat.KEYS, "ns", limit=1))
    assert isinstance(one, ListReply) and len(one.names) == 1 and one.total == 2
    (capped,) = ask(core, ListRequest(2, TOKEN, ListWhat.KEYS, "ns", limit=10**9))
    assert isinstance(capped, ListReply) and len(capped.names) == 2  # at most LIST_LIMIT
    (negative,) = ask(core, ListRequest(3, TOKEN, ListWhat.TOPICS, limit=-5))
    assert isinstance(negative, ListReply) and negative.names == () and negative.total == 2
    assert LIST_LIMIT == 1000


def test_a_wrong_token_or_an_unknown_list_is_refused() -> None:
    core = coordinator()
    refused = ask(core, ListRequest(1, "wrong", ListWhat.TOPICS), src="stranger")
    assert refused == [Reject("bad token")]
    (unknown,) = ask(core, ListRequest(2, TOKEN, 7))
    assert isinstance(unknown, Error) and "unknown list 7" in unknown.reason


def test_list_messages_round_trip_through_the_codec() -> None:
    for msg in (
        ListRequest(5, TOKEN, ListWhat.KEYS, "ns", 10),
        ListReply(5, ListWhat.KEYS, ("x", "y"), (2, 1), 2),
    ):
        assert decode_frame(encode(msg)) == msg


ops = st.lists(
    st.tuples(
        st.sampled_from([MemVerb.PUT, MemVerb.DELETE]),
        st.sampled_from(["a", "b", "c"]),
        st.sampled_from(["k1", "k2", "k3", "k4"]),
    ),
    max_size=60,
)


@settings(max_examples=200, deadline=None, derandomize=True, database=None)
@given(ops)
def test_the_namespace_index_always_matches_the_store(script: list[tuple[int, str, str]]) -> None:
    store = MemoryStore()
    for op_id, (verb, namespace, key) in enumerate(script):
        store.apply(op_id, verb, namespace, key, b"v", 0)
    snapshot = store.snapshot()
    expected = Counter(namespace for namespace, _ in snapshot)
    found, total = store.namespaces(LIST_LIMIT)
    assert dict(found) == dict(expected) and total == len(expected)
    for namespace in ("a", "b", "c"):
        keys, count = store.keys(namespace, LIST_LIMIT)
        wanted = {k: v for (n, k), (v, _) in snapshot.items() if n == namespace}
        assert dict(keys) == wanted and count == len(wanted)
    reloaded = MemoryStore()
    rows = [Write(n, k, v, value) for (n, k), (v, value) in snapshot.items()]
    reloaded.load([*rows, Write("gone", "k", 1, None)])
    assert sorted(reloaded.namespaces(LIST_LIMIT)[0]) == sorted(found)

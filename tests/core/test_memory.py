"""The memory store: versions, compare-and-set, delete, validation and the journal."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.memory import MAX_KEY, MemoryStore, Write
from protocol.messages import MemReply, MemVerb

FAST = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

GET, PUT, CAS, DELETE = MemVerb.GET, MemVerb.PUT, MemVerb.CAS, MemVerb.DELETE


def test_get_absent() -> None:
    assert MemoryStore().apply(1, GET, "ns", "k", b"", 0) == MemReply(1, False, 0, b"", "absent")


def test_put_bumps_the_version() -> None:
    store = MemoryStore()
    assert store.apply(1, PUT, "ns", "k", b"a", 0) == MemReply(1, True, 1, b"")
    assert store.apply(2, PUT, "ns", "k", b"b", 99) == MemReply(2, True, 2, b"")  # PUT ignores it
    assert store.apply(3, GET, "ns", "k", b"", 0) == MemReply(3, True, 2, b"b")
    assert len(store) == 1


def test_cas() -> None:
    store = MemoryStore()
    assert store.apply(1, CAS, "ns", "k", b"x", 1) == MemReply(1, False, 0, b"", "version mismatch")
    assert store.apply(2, CAS, "ns", "k", b"a", 0) == MemReply(2, True, 1, b"")  # create
    assert store.apply(3, CAS, "ns", "k", b"b", 0) == MemReply(3, False, 1, b"", "version mismatch")
    assert store.apply(4, CAS, "ns", "k", b"b", 1) == MemReply(4, True, 2, b"")
    assert store.apply(5, CAS, "ns", "k", b"c", 1) == MemReply(5, False, 2, b"", "version mismatch")
    assert store.snapshot() == {("ns", "k"): (2, b"b")}


def test_delete_reports_the_version_it_had() -> None:
    store = MemoryStore()
    store.apply(1, PUT, "ns", "k", b"a", 0)
    store.apply(2, PUT, "ns", "k", b"b", 0)
    assert store.apply(3, DELETE, "ns", "k", b"", 0) == MemReply(3, True, 2, b"")
    assert store.apply(4, GET, "ns", "k", b"", 0) == MemReply(4, False, 0, b"", "absent")
    assert store.apply(5, DELETE, "ns", "k", b"", 0) == MemReply(5, False, 0, b"", "absent")
    assert len(store) == 0


def test_a_deleted_key_starts_again_at_version_one() -> None:
    """Documented: deleted means version 0, so versions restart (CAS is not ABA-safe)."""
    store = MemoryStore()
    store.apply(1, PUT, "ns", "k", b"a", 0)
    store.apply(2, DELETE, "ns", "k", b"", 0)
    assert store.apply(3, CAS, "ns", "k", b"new", 0) == MemReply(3, True, 1, b"")


def test_namespaces_and_keys_are_separate() -> None:
    store = MemoryStore()
    store.apply(1, PUT, "a", "k", b"1", 0)
    store.apply(2, PUT, "b", "k", b"2", 0)
    store.apply(3, PUT, "a", "j", b"3", 0)
    assert store.snapshot() == {("a", "k"): (1, b"1"), ("b", "k"): (1, b"2"), ("a", "j"): (1, b"3")}
    # "a/k" vs "a" + "/k": the pair is the key, not a joined string
    store.apply(4, PUT, "a/", "k", b"4", 0)
    assert store.apply(5, GET, "a", "/k", b"", 0).ok is False


@pytest.mark.parametrize(
    ("namespace", "key"),
    [("", "k"), ("ns", ""), ("n" * (MAX_KEY + 1), "k"), ("ns", "k" * (MAX_KEY + 1))],
)
@pytest.mark.parametrize("verb", list(MemVerb))
def test_bad_namespace_or_key_is_refused_without_a_write(
    namespace: str, key: str, verb: int
) -> None:
    store = MemoryStore()
    reply = store.apply(1, verb, namespace, key, b"v", 0)
    assert reply == MemReply(1, False, 0, b"", "namespace and key must be 1..256 chars")
    assert len(store) == 0 and store.journal == []


def test_longest_namespace_and_key_are_fine() -> None:
    store = MemoryStore()
    assert store.apply(1, PUT, "n" * MAX_KEY, "k" * MAX_KEY, b"v", 0).ok


@pytest.mark.parametrize("verb", [0, 5, -1, 2**40])
def test_unknown_verb(verb: int) -> None:
    store = MemoryStore()
    assert store.apply(1, verb, "ns", "k", b"v", 0) == MemReply(
        1, False, 0, b"", f"unknown verb {verb}"
    )
    assert store.journal == []


# --- the journal ---------------------------------------------------------------------


def test_journal_records_every_mutation_and_only_mutations() -> None:
    store = MemoryStore()
    store.apply(1, GET, "ns", "k", b"", 0)
    store.apply(2, PUT, "ns", "k", b"a", 0)
    store.apply(3, CAS, "ns", "k", b"x", 7)  # mismatch: no write
    store.apply(4, CAS, "ns", "k", b"b", 1)
    store.apply(5, DELETE, "ns", "k", b"", 0)
    store.apply(6, DELETE, "ns", "k", b"", 0)  # absent: no write
    assert store.take_journal() == [
        Write("ns", "k", 1, b"a"),
        Write("ns", "k", 2, b"b"),
        Write("ns", "k", 2, None),
    ]
    assert store.take_journal() == [] and store.journal == []
    store.apply(7, PUT, "ns", "k", b"c", 0)
    assert store.take_journal() == [Write("ns", "k", 1, b"c")]


def test_load_replaces_contents_and_skips_deleted_rows() -> None:
    store = MemoryStore()
    store.apply(1, PUT, "old", "k", b"gone", 0)
    store.load([Write("ns", "a", 3, b"x"), Write("ns", "b", 2, None)])
    assert store.snapshot() == {("ns", "a"): (3, b"x")}
    assert store.apply(2, PUT, "ns", "a", b"y", 0) == MemReply(2, True, 4, b"")  # versions go on
    assert store.apply(3, GET, "old", "k", b"", 0).ok is False


def test_snapshot_is_a_copy() -> None:
    store = MemoryStore()
    store.apply(1, PUT, "ns", "k", b"a", 0)
    snap = store.snapshot()
    snap[("ns", "k")] = (9, b"tampered")
    snap[("ns", "new")] = (1, b"x")
    assert store.snapshot() == {("ns", "k"): (1, b"a")}


OPS = st.lists(
    st.tuples(
        st.sampled_from(list(MemVerb)),
        st.sampled_from(("n1", "n2")),
        st.sampled_from(("k1", "k2")),
        st.binary(max_size=4),
        st.integers(0, 3),
    ),
    max_size=40,
)


@FAST
@given(OPS)
def test_store_agrees_with_a_reference_and_the_journal_rebuilds_it(ops: list) -> None:
    store = MemoryStore()
    model: dict[tuple[str, str], tuple[int, bytes]] = {}
    for op_id, (verb, namespace, key, value, expected) in enumerate(ops):
        reply = store.apply(op_id, verb, namespace, key, value, expected)
        version, current = model.get((namespace, key), (0, b""))
        assert reply.op_id == op_id
        if verb == GET:
            assert (reply.ok, reply.version, reply.value) == (version > 0, version, current)
        elif verb == PUT or (verb == CAS and expected == version):
            model[(namespace, key)] = (version + 1, value)
            assert (reply.ok, reply.version) == (True, version + 1)
        elif verb == CAS:
            assert (reply.ok, reply.version, reply.error) == (False, version, "version mismatch")
        elif version:
            del model[(namespace, key)]
            assert (reply.ok, reply.version) == (True, version)
        else:
            assert (reply.ok, reply.version) == (False, 0)
    assert store.snapshot() == model
    # what a persistence layer does with the journal: keep the last write of each key
    table: dict[tuple[str, str], Write] = {}
    for write in store.take_journal():
        table[(write.namespace, write.key)] = write
    rebuilt = MemoryStore()
    rebuilt.load(list(table.values()))
    assert rebuilt.snapshot() == model

"""SQLite persistence of the memory store and the bus journal: round trips, batching,
crash safety, the read-only snapshot.

The crash test persists batches in a child interpreter, SIGKILLs it right
after the last ``persist`` returned and reopens the file: WAL recovery must
give back every row of every committed batch.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from protocol.durable import ANSWERS_KEPT
from protocol.journal import (
    BusState,
    DeliveryDone,
    Member,
    Neighbour,
    PendingDelivery,
    PendingTask,
    Subscribed,
    TaskFinished,
)
from protocol.memory import MemoryStore, Write
from protocol.messages import Deliver, DeliveryKind, MemReply, MemVerb
from protocol.payload import checksum
from real.tcp.persistence import MemoryDB, read_snapshot

ROOT = Path(__file__).resolve().parents[2]


def test_round_trip_reopen_and_load(tmp_path: Path) -> None:
    path = tmp_path / "memory.db"
    with MemoryDB(path) as db:
        db.persist([Write("ns", "a", 1, b"one"), Write("ns", "b", 1, b"")])
        db.persist([Write("other", "a", 1, b"x" * 1000)])
    with MemoryDB(path) as db:
        rows = db.load()
    assert rows == [
        Write("ns", "a", 1, b"one"),
        Write("ns", "b", 1, b""),
        Write("other", "a", 1, b"x" * 1000),
    ]


def test_last_write_in_a_batch_wins_and_none_deletes(tmp_path: Path) -> None:
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist([Write("ns", "k", 1, b"v1"), Write("ns", "gone", 3, b"old")])
        db.persist(
            [
                Write("ns", "k", 2, b"v2"),
                Write("ns", "gone", 3, None),
                Write("ns", "k", 3, b"v3"),
                Write("ns", "back", 1, b"b"),
                Write("ns", "back", 1, None),
                Write("ns", "back", 1, b"again"),
            ]
        )
        assert db.commits == 2
        assert db.load() == [Write("ns", "back", 1, b"again"), Write("ns", "k", 3, b"v3")]


def test_store_rebuilt_from_rows_matches_the_original(tmp_path: Path) -> None:
    store = MemoryStore()
    store.apply(1, MemVerb.PUT, "ns", "a", b"1", 0)
    store.apply(2, MemVerb.PUT, "ns", "a", b"2", 0)
    store.apply(3, MemVerb.CAS, "ns", "b", b"created", 0)
    store.apply(4, MemVerb.PUT, "ns", "c", b"c", 0)
    store.apply(5, MemVerb.DELETE, "ns", "c", b"", 0)
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist(store.take_journal())
    rebuilt = MemoryStore()
    with MemoryDB(tmp_path / "m.db") as db:
        rebuilt.load(db.load())
    assert rebuilt.snapshot() == store.snapshot()
    assert rebuilt.snapshot()[("ns", "a")] == (2, b"2")


def test_wal_mode_and_full_synchronous(tmp_path: Path) -> None:
    db = MemoryDB(tmp_path / "m.db")
    try:
        assert db.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        db.close()
    with pytest.raises(ValueError):
        db.load()
    db.close()  # idempotent
    with pytest.raises(ValueError):
        MemoryDB(tmp_path / "x.db", durability="off")


def test_empty_batch_is_not_a_commit(tmp_path: Path) -> None:
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist([])
        assert db.commits == 0


def test_failed_batch_rolls_back(tmp_path: Path) -> None:
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist([Write("ns", "kept", 1, b"ok")])
        bad = Write("ns", "bad", 1, object())  # type: ignore[arg-type]
        with pytest.raises(sqlite3.Error):
            db.persist([Write("ns", "rolled-back", 1, b"x"), bad])
        assert db.load() == [Write("ns", "kept", 1, b"ok")]


def test_bus_journal_is_folded_in_the_memory_transaction_and_loads_back(tmp_path: Path) -> None:
    d1 = Deliver(1, DeliveryKind.PUBLISH, "a", 10, "t.x", b"p1", checksum(b"p1"))
    d2 = Deliver(2, DeliveryKind.DIRECT, "b", 11, "", b"p2", checksum(b"p2"))
    task = PendingTask("a", 12, "compute", b"job", checksum(b"job"))
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist(
            [Write("ns", "k", 1, b"v")],
            [PendingDelivery("x", d1), PendingDelivery("y", d1), PendingDelivery("x", d2), task],
        )
        assert db.commits == 1  # one group commit for memory and bus
        db.persist(
            [],
            [
                DeliveryDone("x", 1),
                PendingTask("b", 13, "compute", b"t", 0),
                TaskFinished("b", 13),  # in and out within one batch: no row
                DeliveryDone("x", 2),
                PendingDelivery("x", d2),  # resent after the ack: owed again
            ],
        )
    with MemoryDB(tmp_path / "m.db") as db:
        state = db.load_bus()
        assert db.load() == [Write("ns", "k", 1, b"v")]
    expected = BusState()
    expected.apply([PendingDelivery("y", d1), PendingDelivery("x", d2), task])
    assert state.deliveries == expected.deliveries
    assert state.tasks == expected.tasks
    assert state.next_msg_id() == 3


def test_members_and_subscriptions_load_back(tmp_path: Path) -> None:
    entries = [
        Member("a", ("compute", "gpu"), ("t.*", "u")),
        Member("b", (), ("t.x",)),
        Subscribed("a", "v.#", True),
        Subscribed("a", "u", False),
        Member("b", ("io",), ("w",)),  # a new hello replaces the old registration
    ]
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist([], entries)
    with MemoryDB(tmp_path / "m.db") as db:
        state = db.load_bus()
    expected = BusState()
    expected.apply(entries)
    assert {n: (m.capabilities, sorted(m.subscriptions)) for n, m in state.members.items()} == {
        n: (m.capabilities, sorted(m.subscriptions)) for n, m in expected.members.items()
    }


def test_read_snapshot_is_read_only_and_sees_committed_rows(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    assert read_snapshot(path) == {}
    db = MemoryDB(path)
    try:
        db.persist([Write("ns", "a", 2, b"two"), Write("ns", "b", 1, b"")])
        snapshot = read_snapshot(path)  # while the writer is open, WAL not checkpointed
    finally:
        db.close()
    assert snapshot == {("ns", "a"): (2, checksum(b"two")), ("ns", "b"): (1, checksum(b""))}


CRASHER = """
import sys, time
from protocol.memory import Write
from real.tcp.persistence import MemoryDB
db = MemoryDB(sys.argv[1])
for batch in range(20):
    db.persist([Write("ns", f"k{batch}-{i}", batch + 1, bytes([batch]) * 64) for i in range(50)])
    print(batch, flush=True)
time.sleep(60)
"""


@pytest.mark.slow
def test_persisted_batches_survive_sigkill(tmp_path: Path) -> None:
    """A process killed right after ``persist`` returned loses none of those rows."""
    path = tmp_path / "crash.db"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen(
        [sys.executable, "-c", CRASHER, str(path)], stdout=subprocess.PIPE, env=env, text=True
    )
    try:
        assert proc.stdout is not None
        last = -1
        while last < 19:
            line = proc.stdout.readline()
            assert line, "the writer died before persisting"
            last = int(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    with MemoryDB(path) as db:
        rows = db.load()
    assert len(rows) == 20 * 50
    assert {(r.key, r.version, r.value) for r in rows} == {
        (f"k{b}-{i}", b + 1, bytes([b]) * 64) for b in range(20) for i in range(50)
    }


def test_the_message_id_high_water_survives_every_ack(tmp_path: Path) -> None:
    deliver = Deliver(41, DeliveryKind.PUBLISH, "a", 1, "t", b"p", checksum(b"p"))
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist([], [PendingDelivery("x", deliver)])
        db.persist([], [DeliveryDone("x", 41)])
    with MemoryDB(tmp_path / "m.db") as db:
        state = db.load_bus()
    assert not state.deliveries
    assert state.next_msg_id() == 42  # never reused, though nothing is owed any more


def test_a_tree_nodes_neighbours_load_back(tmp_path: Path) -> None:
    entries = [
        Neighbour("coord", ("#",), ()),
        Neighbour("coord.1.1", ("t.*", "u"), ("a1", "a2", "coord.1.1")),
        Neighbour("coord.1.2", ("v",), ("a3",)),
        Neighbour("coord.1.2", (), (), present=False),  # re-attached elsewhere: gone
        Neighbour("coord.1.1", ("t.*",), ("a1", "coord.1.1")),  # a newer interest
    ]
    with MemoryDB(tmp_path / "m.db") as db:
        db.persist([], entries)
    with MemoryDB(tmp_path / "m.db") as db:
        state = db.load_bus()
    expected = BusState()
    expected.apply(entries)
    assert state.neighbours == expected.neighbours
    assert set(state.neighbours) == {"coord", "coord.1.1"}


def test_write_answers_load_back_newest_per_origin_and_roll_back(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    first = ANSWERS_KEPT + 3
    answers = [("a", MemReply(op, True, op, b"")) for op in range(1, first + 1)]
    with MemoryDB(path) as db:
        db.persist([Write("ns", "k", first, b"v")], answers=answers[:10])
        db.persist([], answers=answers[10:])  # answers alone are a commit too
        db.persist([], answers=[("b", MemReply(1, True, 7, b""))])
        assert db.commits == 3
    with MemoryDB(path) as db:
        kept = db.load_answers()
        assert [r.op_id for o, r in kept if o == "a"] == list(range(4, first + 1))  # newest
        assert ("b", MemReply(1, True, 7, b"")) in kept
        rows = db.db.execute("SELECT count(*) FROM mem_answer").fetchone()[0]
        assert rows == ANSWERS_KEPT + 1  # evicted rows are deleted, not just forgotten
        db.db.execute(
            "CREATE TEMP TRIGGER refuse BEFORE INSERT ON mem_answer WHEN NEW.origin = 'c' "
            "BEGIN SELECT RAISE(ABORT, 'refused'); END"
        )
        bad = [("a", MemReply(500, True, 1, b"")), ("c", MemReply(1, True, 1, b""))]
        with pytest.raises(sqlite3.Error):  # a failed batch keeps no answer of it
            db.persist([], answers=bad)
        assert db.load_answers() == kept

"""A Raft replica's SQLite storage holds what the in-memory model of storage holds.

The property runs of the Raft tests (``tests/core/consensus``) write every
replica's readies, torn writes and compactions included, both to the
in-memory ``Persisted`` and to a ``RaftStore``; after every write the store
loads exactly what the model holds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from protocol.consensus.messages import Ready
from real.tcp.raftstore import RaftStore
from tests.core.consensus.raftnet import RaftNet
from tests.core.consensus.test_raft_properties import Timeline, check_run, run

TIMELINES = [
    Timeline(3, 11, 0.1, 0.05, 0.6, ((20, "torn_leader", 0), (60, "restart", 0))),
    Timeline(5, 12, 0.02, 0.0, 1.0, ((10, "crash", 1), (30, "isolate_leader", 0), (90, "heal", 0))),
    Timeline(3, 13, 0.0, 0.2, 0.3, ((5, "torn", 2), (50, "split", 1), (70, "restart", 0))),
    # r3 down while the others compact: it comes back to a snapshot
    Timeline(3, 14, 0.0, 0.0, 1.0, ((30, "crash", 2), (120, "restart", 0))),
]


@pytest.mark.parametrize("timeline", TIMELINES, ids=lambda t: f"seed{t.seed}")
def test_sqlite_storage_matches_the_model(
    tmp_path: Path, timeline: Timeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    stores: dict[str, RaftStore] = {}
    nets: list[RaftNet] = []

    def mirror(node: str, ready: Ready) -> None:
        if node not in stores:
            stores[node] = RaftStore(tmp_path / f"{node}.sqlite", durability="normal")
        stores[node].save(ready)
        assert stores[node].load() == nets[0].stored[node], node  # after every write

    made = RaftNet.__init__

    def init(self: RaftNet, *args: object, **kwargs: object) -> None:
        made(self, *args, **kwargs)  # type: ignore[arg-type]
        self.mirror = mirror
        nets.append(self)

    monkeypatch.setattr(RaftNet, "__init__", init)
    net = run(timeline)
    check_run(net)
    assert sum(store.commits for store in stores.values()) > 0
    for node, store in stores.items():
        assert store.load() == net.stored[node], node
        store.close()
    again = RaftStore(tmp_path / "r1.sqlite")
    assert again.load() == net.stored["r1"]  # reopened: the same


def _ready(**changes: object) -> Ready:
    from protocol.consensus.messages import Role

    fields: dict[str, object] = {
        "hard_state": None,
        "snapshot": None,
        "entries": (),
        "messages": (),
        "committed": (),
        "read_states": (),
        "role": Role.FOLLOWER,
        "leader": "",
    }
    return Ready(**{**fields, **changes})  # type: ignore[arg-type]


def test_a_snapshot_trims_the_entries_below_it_a_chunk_per_save(tmp_path: Path) -> None:
    """The entries a snapshot made obsolete go ``TRIM_CHUNK`` per save, oldest first,
    never all in the save that stored it; ``load`` never returns one meanwhile."""
    from protocol.consensus.log import Entry, Snapshot
    from protocol.consensus.messages import HardState
    from real.tcp.raftstore import TRIM_CHUNK

    store = RaftStore(tmp_path / "r1.sqlite", durability="normal")
    count = 3 * TRIM_CHUNK + 5
    entries = tuple(Entry(1, i, b"x" * 100) for i in range(1, count + 1))
    hard = HardState(1, "r1", count)
    store.save(_ready(hard_state=hard, entries=entries))
    store.save(_ready(compacted=Snapshot(count - 2, 1, b"state")))

    def rows() -> int:
        return int(store.db.execute("SELECT count(*) FROM raft_entry").fetchone()[0])

    left = [rows()]
    for _ in range(4):
        assert store.load().entries == entries[-2:]
        store.save(_ready(hard_state=hard))
        left.append(rows())
    assert left == [2 * TRIM_CHUNK + 5, TRIM_CHUNK + 5, 5, 2, 2]
    again = RaftStore(tmp_path / "r1.sqlite")
    assert again.load() == store.load()

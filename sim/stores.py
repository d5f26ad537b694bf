"""A quorum store's storage replicas in the model: each a node in a process of its own.

A plan with ``quorum`` (a scenario's ``consensus: {protocol: quorum}``) keeps its
one coordinator for the bus and adds one ``SimStore`` per storage replica
(``store-<id>``, a process of its own, sharing the machine's cores with the
coordinator and the agent workers, as the real store processes do). A
``SimStore`` runs ``protocol.consensus.quorum.StorageReplica`` exactly as the
real store server does. The engine serves its messages as a coordinator's
(the calibration's per-message cost of that role, and the codec by size) and
sends nothing at the end of a job: a ``Flush`` (``sim.engine``) calls
``persist``, which takes the cells the turn changed and blocks the loop for
one SQLite commit when there are any (the calibration's ``commit``, drawn,
plus ``commit_per_byte`` times the value bytes: the figure measured for a
Raft replica's commit, the same kind of transaction), then sends the answers.
That is the real store server's loop turn.

The agents are built with the quorum's configuration (``sim.driver``), so the
same ``QuorumClient`` coordinates their memory operations in both worlds.

Crashes and pauses of a storage replica (``crash_replica``, ``pause_replica``)
are ``sim.replicafaults.ReplicaLinks``', as for a replicated coordinator's
replicas: a crashed one loses what reaches it and starts again from the cells
its flushes stored (``restarted``); a paused one holds what reaches it. No
agent's link is on a storage replica as its coordinator, so none fails over.
"""

from __future__ import annotations

from collections.abc import Callable

from protocol.consensus.quorum import Cell, QuorumConfig, StorageReplica, newest_cells
from protocol.messages import Message
from protocol.records import NodeEvent, StoreSnapshot
from protocol.settings import ProtocolSettings
from sim.calibration import Calibration
from sim.distribution import Sampler
from sim.engine import Engine
from sim.nodes import SimNode


class SimStore:
    """The engine's core for one storage replica (``sim.nodes.Persisting``)."""

    def __init__(
        self,
        node_id: str,
        settings: ProtocolSettings,
        commit: Sampler | None,
        commit_per_byte: float,
        cells: dict[tuple[str, str], Cell] | None = None,
    ) -> None:
        self.store = StorageReplica(node_id, settings, cells)
        self.settings = settings
        self.commit, self.commit_per_byte = commit, commit_per_byte
        self.stored: dict[tuple[str, str], Cell] = dict(cells or {})  # what its file holds
        self.commits = 0
        self.events: list[NodeEvent] = []  # (a storage replica reports none)
        self.on_closed: Callable[[str, float], None] | None = None  # (it closes no link)
        self._out: list[tuple[str, Message]] = []

    def restarted(self) -> SimStore:
        """This replica's process started again: a new one from what it stored (the
        cells of every flush; what it received after its last flush is lost)."""
        again = SimStore(
            self.store.node_id, self.settings, self.commit, self.commit_per_byte, self.stored
        )
        again.commits = self.commits
        return again

    def link_closed(self, node: str, now: float) -> None:
        pass

    def start(self, now: float) -> None:
        pass

    def receive(self, src: str, msg: Message, now: float) -> None:
        self.store.receive(src, msg)

    def on_timer(self, now: float) -> None:
        pass

    def next_deadline(self) -> float | None:
        return None

    def drain(self) -> list[tuple[str, Message]]:
        out, self._out = self._out, []
        return out

    def persist(self, now: float) -> tuple[float, float]:
        """Take the turn's cells and answers: no CPU beyond the messages' own, and
        one commit's wait on the disk when a cell changed."""
        durable, out = self.store.take()
        self._out.extend(out)
        if not durable:
            return 0.0, 0.0
        for written in durable:
            self.stored[(written.namespace, written.key)] = written.cell
        self.commits += 1
        if self.commit is None:
            return 0.0, 0.0
        size = sum(len(stored.cell.value) for stored in durable)
        return 0.0, self.commit() + self.commit_per_byte * size


def add_stores(
    engine: Engine, quorum: QuorumConfig, settings: ProtocolSettings, calibration: Calibration
) -> list[SimNode]:
    """One node per storage replica, each in a process of its own (``store-<id>``)."""
    commit = calibration.commit.sampler(engine.rng) if calibration.commit is not None else None
    nodes = []
    for node_id in quorum.replicas:
        core = SimStore(node_id, settings, commit, calibration.commit_per_byte)
        process = f"store-{node_id}"
        node = engine.add_node(node_id, core, "coordinator", process, persists=True)
        core.start(engine.env.now)
        nodes.append(node)
    return nodes


def store_counts(nodes: list[SimNode]) -> dict[str, dict[str, float]]:
    """What each storage replica did, as the real store servers count it."""
    counts: dict[str, dict[str, float]] = {}
    for node in nodes:
        core = node.core
        if isinstance(core, SimStore):
            store = core.store
            counts[node.node_id] = {
                "reads": float(store.reads),
                "writes": float(store.writes),
                "commits": float(core.commits),
                "refused": float(store.refusals),
            }
    return counts


def final_store(nodes: list[SimNode], at: float) -> StoreSnapshot:
    """The store at the end: the newest cells over what every replica stored."""
    return newest_cells([n.core.stored for n in nodes if isinstance(n.core, SimStore)], at)

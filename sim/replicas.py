"""Replicated coordinators in the model: each replica a node on a CPU of its own,
persisting before it sends, as the real replica processes do.

A plan with ``replication`` (a scenario's ``consensus:``) has no coordinator
``coord``: ``add_replicas`` adds one ``SimReplica`` per replica, each the core
of a coordinator-role node in a process of its own (``replica-<id>``: with
shared cores, tcp's layout, those processes share the machine's cores with the
agent workers, as the real ones do). A ``SimReplica`` runs ``protocol.consensus.replica.Replica``
exactly as the real server does (``wire=True``: consensus traffic as
``Consensus`` frames, so the engine charges the codec by their size), with its
storage in memory (``Ready.persist`` over a ``Persisted``). The engine serves
its messages and timers as a coordinator's (the leader's agent traffic costs
what the calibration says a coordinator's does; consensus frames cost the
coordinator's pooled figure plus the codec), and sends nothing at the end of a
job: a ``Flush`` (``sim.engine``) calls ``persist``, which saves every ready
(``Replica.persist``) and returns the CPU the flush took, the calibration's
``replica_flush`` (drawn) plus ``replica_flush_per_byte`` times the bytes it
encoded and applied (figure (k)), and how long the writes then blocked the
loop, its ``commit`` (drawn) plus ``commit_per_byte`` times the bytes, for each
ready that changes storage (figure (j)); then what the replica produced is
sent. That is the real server's loop turn: handle what was read, commit once,
send.

The leader at the start. The real run starts every replica, waits until one is
elected and serves, and only then starts the agents (the election is not part
of the measured run). ``bootstrap`` does the same at no cost in simulated time:
the first replica campaigns and the replicas exchange messages directly until
it serves; the agents then start at it, with the others as fallbacks.

Faults of replicas (crashes, pauses, partitions) and the links they close are
``sim.replicafaults``'.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import NamedTuple

from protocol.consensus.messages import Persisted, Ready
from protocol.consensus.raft import RaftConfig
from protocol.consensus.replica import Replica
from protocol.coordinator import Coordinator
from protocol.messages import Message
from protocol.plan import Replication
from protocol.records import REPLICA_COUNTS, NodeEvent
from protocol.settings import ProtocolSettings
from sim.calibration import Calibration
from sim.distribution import Distribution, Sampler
from sim.engine import Engine
from sim.nodes import SimNode

BOOTSTRAP_ROUNDS = 64  # message rounds an uncontested election takes far fewer of


class ReplicaCosts(NamedTuple):
    """The calibration's figures (j) and (k) as samplers on the engine's draws."""

    commit: Sampler | None
    commit_per_byte: float
    flush: Sampler | None
    flush_per_byte: float


def _sampler(figure: Distribution | None, engine: Engine) -> Sampler | None:
    return figure.sampler(engine.rng) if figure is not None else None


class SimReplica:
    """The engine's core for one replica (``sim.nodes.Persisting``)."""

    def __init__(
        self,
        node_id: str,
        replication: Replication,
        settings: ProtocolSettings,
        costs: ReplicaCosts,
        stored: Persisted | None = None,
    ) -> None:
        config = RaftConfig(election_ticks=replication.election_ticks)
        self.stored = stored if stored is not None else Persisted()
        self.replica = Replica(
            node_id,
            replication.replicas,
            settings,
            config,
            replication.tick,
            self.stored,
            wire=True,
            protocol=replication.protocol,
        )
        self.replication = replication
        self.settings = settings
        self.costs = costs
        self.commit, self.commit_per_byte = costs.commit, costs.commit_per_byte
        self.flush, self.flush_per_byte = costs.flush, costs.flush_per_byte
        self.blocked = 0.0
        self.events: list[NodeEvent] = []  # what its replica and coordinator reported
        # the driver's: a link this replica closed (to an agent, the prober, a replica)
        self.on_closed: Callable[[str, float], None] | None = None
        self._bytes = 0
        self._now = 0.0

    def restarted(self) -> SimReplica:
        """This replica's process started again: a new one from what it stored."""
        again = SimReplica(
            self.replica.id, self.replication, self.settings, self.costs, self.stored
        )
        again.on_closed = self.on_closed
        return again

    def link_closed(self, node: str, now: float) -> None:
        self._now = now
        self.replica.link_closed(node)

    @property
    def coordinator(self) -> Coordinator | None:
        """The leader's coordinator; None on a replica that does not serve."""
        return self.replica.coordinator

    def start(self, now: float, first_tick: float | None = None) -> None:
        self._now = now
        self.replica.start(now, first_tick)

    def receive(self, src: str, msg: Message, now: float) -> None:
        self._now = now
        self.replica.receive(src, msg, now)

    def on_timer(self, now: float) -> None:
        self._now = now
        self.replica.on_timer(now)

    def next_deadline(self) -> float | None:
        return self.replica.next_deadline()

    def drain(self) -> list[tuple[str, Message]]:
        replica = self.replica
        out = replica.drain()
        self.events.extend(replica.take_events())
        closed = replica.take_closures()
        if closed and self.on_closed is not None:
            for node in closed:
                self.on_closed(node, self._now)
        return out  # type: ignore[return-value]  # wire: no RaftMessage

    def persist(self, now: float) -> tuple[float, float]:
        """Save every ready: the seconds of CPU the flush took (when anything was
        saved), and the seconds the writes blocked the loop."""
        self._now = now
        self._bytes = 0
        if not self.replica.persist(self._save, now):
            return 0.0, 0.0
        blocked, self.blocked = self.blocked, 0.0
        cpu = self.flush() + self.flush_per_byte * self._bytes if self.flush is not None else 0.0
        return cpu, blocked

    def _save(self, ready: Ready) -> None:
        self.stored = ready.persist(self.stored)
        self._bytes += ready.handled_bytes
        if ready.changes_storage and self.commit is not None:
            self.blocked += self.commit() + self.commit_per_byte * ready.stored_bytes


def add_replicas(
    engine: Engine,
    replication: Replication,
    settings: ProtocolSettings,
    calibration: Calibration,
) -> list[SimNode]:
    """One node per replica, each in a process of its own (``replica-<id>``, its name
    in ``Engine.busy``); the first replica leads (``bootstrap``)."""
    costs = ReplicaCosts(
        _sampler(calibration.commit, engine),
        calibration.commit_per_byte,
        _sampler(calibration.replica_flush, engine),
        calibration.replica_flush_per_byte,
    )
    nodes = []
    for node_id in replication.replicas:
        core = SimReplica(node_id, replication, settings, costs)
        process = f"replica-{node_id}"
        nodes.append(engine.add_node(node_id, core, "coordinator", process, persists=True))
    return nodes


def bootstrap(nodes: list[SimNode], now: float, phases: random.Random) -> None:
    """Start every replica at ``now`` and elect the first, in no simulated time.

    Each replica's first tick comes a uniform draw from ``phases`` within one
    tick: on tcp the replicas are processes started one after another, so their
    ticks are out of phase with each other and with the faults, and a leader's
    crash waits for the next tick of a survivor (``Raft.leader_lost``) for a
    share of a tick that varies. Started in phase, every model crash waited
    the same share (3 ms in ``cert-failover``, where tcp took 20 to 55 ms)."""
    cores: dict[str, SimReplica] = {}
    for node in nodes:
        assert isinstance(node.core, SimReplica)
        cores[node.node_id] = node.core
        node.core.start(now, phases.uniform(0.0, node.core.replica.tick))
    first = cores[nodes[0].node_id]
    first.replica.raft.campaign()
    for _ in range(BOOTSTRAP_ROUNDS):
        moved = False
        for node_id, core in cores.items():
            core.persist(now)
            for dst, msg in core.drain():
                if dst in cores:
                    cores[dst].receive(node_id, msg, now)
                    moved = True
        if first.replica.serving and not moved:
            for core in cores.values():  # the bootstrap's work is not the run's
                core.replica.counts = dict.fromkeys(REPLICA_COUNTS, 0)
            return
    raise RuntimeError(f"replica {nodes[0].node_id} was not elected in {BOOTSTRAP_ROUNDS} rounds")


def replica_counts(nodes: list[SimNode]) -> dict[str, dict[str, float]]:
    """What each replica did (``DriverResult.replicas``), as the real run counts it."""
    return {
        node.node_id: dict(node.core.replica.counts)
        for node in nodes
        if isinstance(node.core, SimReplica)
    }

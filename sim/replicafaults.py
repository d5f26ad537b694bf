"""Replicas' links and crashes in the model: what the real run's processes and sockets do.

``ReplicaLinks`` stands between the engine and a replicated coordinator's nodes
(``sim.replicas``), for every plan with ``replication``, and between the engine
and a quorum store's storage replicas (``sim.stores``) when the plan crashes or
pauses them (they lead nothing, close no link and are not probed):

- **Closed links.** A replica closes an agent's link after refusing it
  (``Reject("not the leader: r2")``) and every agent's link when it stops
  leading (``Replica.take_closures``, through ``SimReplica.on_closed``). The
  agent learns it one hop later (the FIN after the refusal: the longest hop the
  calibration knows, so it never overtakes the ``Reject``); then, as the real
  worker does, it fails over (``Agent.fail_over``: to the leader the refusal
  named, else the next replica) and says hello after the back-off the real worker
  waits (``protocol.retransmit.ReconnectBackoff``, one per agent here, one per
  link there), doubled again while the replica it tries is down.
- **Crashes** (``crash_replica``). At ``fault.at`` the replica (``node: leader``:
  the one serving then) dies: what reaches it is lost (a probe or the status
  request counted as lost), its timers and flushes stop, and one longest hop
  later (after what it had sent) the other replicas see its links close
  (``Replica.link_closed``: a lost leader's followers campaign at once) and the
  agents on it lose their link. It is live again
  ``restart_after`` plus the calibration's ``coordinator_restart`` later, a new
  replica from what it had stored (its Raft log), as the real process restarts
  from SQLite. Events: ``injected`` and ``healed`` for the replica, beside what
  the replicas report (``leader``, the agents ``registered``).
- **Pauses** (``pause_replica``: SIGSTOP on tcp). From ``fault.at`` the replica
  runs nothing: what reaches it waits, its timers and flushes do not fire, and
  what the model had computed ahead for it and would leave one longest hop
  after the pause began waits too. When the last pause on it ends, everything
  that waited is handled in order, then its timers are armed again (a tick
  missed meanwhile is dropped, ``Replica.on_timer``). Its links stay open:
  nobody sees it go.
- **Partitions** (``partition_replica``). While a replica is partitioned, every
  message between it and another replica is dropped, both ways, and no link
  closes (a firewall's DROP); the agents still reach it. A link between two
  replicas is cut while either end is partitioned (``protocol.faults.between``).
- Which replica ``node: leader`` names, and how faults of one replica nest (a
  crash ends its pauses), is ``protocol.faults.Target``'s, as on tcp.
- **The prober** follows the leader: a probe lost at a dead replica moves it to
  the next replica, a refusal naming a leader moves it there (``target``); the
  driver then sends the probes still in time again (``Prober.retry``).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from protocol.agent import Agent
from protocol.faults import REPLICA_FAULTS, Effect, Target, between
from protocol.messages import Probe, Reject, StatusRequest, leader_hint
from protocol.plan import Fault, FaultKind, Plan
from protocol.records import NodeEvent
from protocol.retransmit import ReconnectBackoff
from sim.calibration import Calibration
from sim.engine import Engine
from sim.nodes import Arrival, Flush, SimNode, TimerDue
from sim.replicas import SimReplica
from sim.stores import SimStore

Schedule = Callable[[float, Callable[[], None]], None]
LEADER = "leader"


class ReplicaLinks:
    """Closed links, crashes and the prober's target for one model run (module docstring)."""

    def __init__(
        self,
        plan: Plan,
        calibration: Calibration,
        engine: Engine,
        replicas: list[SimNode],
        agents: list[SimNode],
        schedule: Schedule,
        lost_probe: Callable[[], None],
    ) -> None:
        self.settings = plan.settings
        self.engine = engine
        self.at = schedule
        self.lost_probe = lost_probe
        self.restart = calibration.coordinator_restart
        self.fin = calibration.hop.quantile(1.0)  # a FIN never overtakes the frame before it
        self.replicas = {node.node_id: node for node in replicas}
        self.order = [node.node_id for node in replicas]
        self.agents = {node.node_id: node for node in agents}
        self.target = self.order[0]  # where the prober sends
        self.dead: set[str] = set()
        self.lives: list[SimReplica | SimStore] = []  # replicas that died, for their events
        self.events: list[NodeEvent] = []
        self._waits: dict[str, float] = {}  # an agent reconnecting: its back-off so far
        self._backoff: dict[str, ReconnectBackoff] = {}  # each agent's, as its real link's
        self.crashed_at: dict[str, float] = {}
        self.targets = {name: Target(name) for name in self.order}  # the rules' view
        self.hit: dict[int, str] = {}  # fault id -> the replica it hit
        self.paused_at: dict[str, float] = {}
        self.held: dict[str, list[Callable[[], None]]] = {}  # what waits for a resume
        self.cut = False  # some replica is partitioned
        self.dropped = 0  # messages between replicas a partition dropped
        for node in replicas:
            assert isinstance(node.core, (SimReplica, SimStore))
            node.core.on_closed = self._closed
            node.arrive = (self._to_replica,)
        silencing = (FaultKind.CRASH_REPLICA, FaultKind.PAUSE_REPLICA)
        if any(fault.kind in silencing for fault in plan.faults):
            for agent in agents:
                agent.arrive = (self._to_agent,)
        self._on_timer = engine._on_timer
        self._on_flush = engine._on_flush
        engine._timer_cb = (self._timer,)
        engine._flush_cb = (self._flush,)
        for fault in plan.faults:
            if fault.kind == FaultKind.CRASH_REPLICA:
                self.at(fault.at, partial(self._crash, fault))
            elif fault.kind in REPLICA_FAULTS:
                self.at(fault.at, partial(self._inject, fault))
                self.at(fault.end, partial(self._heal, fault))

    # --- gates -----------------------------------------------------------------------

    def _sent_dead(self, event: Arrival) -> bool:
        """True for a message from a dead replica that left it after it died: the model
        computes a busy node's queued jobs ahead, so their output is dropped here."""
        src = event.src
        return src in self.dead and self.engine.env.now > self.crashed_at[src] + self.fin

    def _sent_paused(self, event: Arrival) -> bool:
        """True (and the message held for its sender's resume) for a message a paused
        replica sent after it stopped: the model computed it ahead."""
        src = event.src
        if src not in self.paused_at or self.engine.env.now <= self.paused_at[src] + self.fin:
            return False
        self.held[src].append(partial(event.node.arrive[0], event))
        return True

    def _to_agent(self, event: Arrival) -> None:
        if not self._sent_dead(event) and not self._sent_paused(event):
            self.engine._arrive_agent(event)

    def _to_replica(self, event: Arrival) -> None:
        if self._sent_dead(event) or self._sent_paused(event):
            return
        name = event.node.node_id
        if (
            self.cut
            and event.src in self.targets
            and between(self.targets[event.src], self.targets[name]).partitioned
        ):
            self.dropped += 1
            return
        if name in self.paused_at:
            self.held[name].append(partial(self.engine._arrive_coordinator, event))
            return
        if name in self.dead:
            if type(event.msg) is Probe or type(event.msg) is StatusRequest:
                self.target = self._next(event.node.node_id)
                self.lost_probe()  # which may send it again, to the new target
            return
        self.engine._arrive_coordinator(event)

    def _timer(self, event: TimerDue) -> None:
        name = event.node.node_id
        if name not in self.dead and name not in self.paused_at:
            self._on_timer(event)  # a paused replica's timer is armed again when it resumes

    def _flush(self, event: Flush) -> None:
        name = event.node.node_id
        if name in self.dead or name in self.paused_at:
            event.node.flush_due = False
            return
        self._on_flush(event)

    def prober_got(self, msg: object) -> None:
        """A replica refused the prober: go where it says the leader is, or on."""
        if type(msg) is Reject:
            hint = leader_hint(msg.reason)
            if hint is not None:
                self.target = hint if hint in self.replicas else self._next(self.target)

    # --- links -----------------------------------------------------------------------

    def _closed(self, node: str, at: float) -> None:
        if node in self.agents:
            self.at(at + self.fin, partial(self._link_lost, node, self._current(node)))

    def _current(self, agent_id: str) -> str:
        core = self.agents[agent_id].core
        assert isinstance(core, Agent)
        return core.coordinator

    def _link_lost(self, agent_id: str, replica: str) -> None:
        """``agent_id``'s link to ``replica`` is gone: fail over, reconnect later."""
        if agent_id in self._waits or self._current(agent_id) != replica:
            return  # already reconnecting, or long since elsewhere
        core = self.agents[agent_id].core
        assert isinstance(core, Agent)
        backoff = self._backoff.get(agent_id)
        if backoff is None:
            backoff = self._backoff[agent_id] = ReconnectBackoff(self.settings)
        wait = backoff.lost(core.registered, leader_hint(core.rejected))  # as the real link
        core.fail_over()
        self._waits[agent_id] = wait
        self.at(self.engine.env.now + wait, partial(self._reconnect, agent_id))

    def _reconnect(self, agent_id: str) -> None:
        node = self.agents[agent_id]
        core = node.core
        assert isinstance(core, Agent)
        if core.coordinator in self.dead:  # refused at once: the next, after a longer wait
            core.fail_over()
            self._waits[agent_id] = wait = self._backoff[agent_id].failed()
            self.at(self.engine.env.now + wait, partial(self._reconnect, agent_id))
            return
        del self._waits[agent_id]
        self.engine.start_agent(node)

    # --- pauses and partitions ----------------------------------------------------------

    def _inject(self, fault: Fault) -> None:
        name = fault.node if fault.node != LEADER else self._leader()
        if not name:
            return  # no replica led
        self.hit[fault.fault_id] = name
        now = self.engine.env.now
        effect = self.targets[name].inject(fault, now)
        if effect == Effect.PAUSE:
            self.paused_at[name] = now
            self.held[name] = []
        elif effect == Effect.LINKS:
            self.cut = any(target.link().partitioned for target in self.targets.values())
        self.events.append(NodeEvent(now, "injected", name))

    def _heal(self, fault: Fault) -> None:
        name = self.hit.get(fault.fault_id)
        if name is None:
            return
        now = self.engine.env.now
        effect = self.targets[name].heal(fault, now)
        if effect == Effect.RESUME:
            self._resume(name)
        elif effect == Effect.LINKS:
            self.cut = any(target.link().partitioned for target in self.targets.values())
        self.events.append(NodeEvent(now, "healed", name))

    def _resume(self, name: str) -> None:
        """The last pause on ``name`` ended: what waited is handled in order, then its
        timers are armed again and its flush runs."""
        del self.paused_at[name]
        held = self.held.pop(name)
        node = self.replicas[name]
        node.armed = None
        node.flush_due = False
        server = node.server
        assert server is not None
        server.busy_until = max(server.busy_until, self.engine.env.now)
        for action in held:
            action()
        self.engine.serve(node, _nothing)

    # --- crashes ---------------------------------------------------------------------

    def _crash(self, fault: Fault) -> None:
        name = fault.node if fault.node != LEADER else self._leader()
        if not name or name in self.dead:
            return  # no replica led, or it is down already
        now = self.engine.env.now
        node = self.replicas[name]
        self.targets[name].inject(fault, now)  # a crash ends its pauses
        self.paused_at.pop(name, None)
        self.held.pop(name, None)  # what waited dies with it
        self.dead.add(name)
        self.crashed_at[name] = now
        self.events.append(NodeEvent(now, "injected", name))
        core = node.core
        assert isinstance(core, (SimReplica, SimStore))
        self.lives.append(core)
        node.armed = None
        node.flush_due = False
        for other in self.replicas:  # the FIN comes after what was already on the wire
            if other not in self.dead:
                self.at(now + self.fin, partial(self._peer_lost, other, name))
        for agent_id in self.agents:
            if self._current(agent_id) == name:
                self.at(now + self.fin, partial(self._link_lost, agent_id, name))
        if self.target == name:
            self.target = self._next(name)
        self.at(fault.end + self.restart, partial(self._live, name))

    def _peer_lost(self, name: str, dead: str) -> None:
        """Replica ``name`` sees its link to ``dead`` close."""
        peer = self.replicas[name]
        replica = peer.core
        if name not in self.dead and isinstance(replica, SimReplica):
            self.engine.serve(peer, partial(replica.link_closed, dead))

    def _live(self, name: str) -> None:
        node = self.replicas[name]
        old = node.core
        assert isinstance(old, (SimReplica, SimStore))
        now = self.engine.env.now
        node.core = old.restarted()
        node.server.busy_until = max(node.server.busy_until, now)  # type: ignore[union-attr]
        self.dead.discard(name)
        target = self.targets[name]
        target.dead = target.restarting = False  # (the restart's timing is the model's own)
        self.events.append(NodeEvent(now, "healed", name))
        self.engine.start_agent(node)  # its ticks start; it says nothing until elected

    def _leader(self) -> str:
        for name, node in self.replicas.items():
            core = node.core
            if name not in self.dead and isinstance(core, SimReplica) and core.replica.serving:
                return name
        return ""

    def _next(self, name: str) -> str:
        order = self.order
        return order[(order.index(name) + 1) % len(order)]

    def close(self) -> None:
        """Drop the callbacks back into the run and the replicas' back into this."""
        self.at = _never_at
        self.lost_probe = _nothing_lost
        for node in self.replicas.values():
            if isinstance(node.core, (SimReplica, SimStore)):
                node.core.on_closed = None

    def all_events(self) -> list[NodeEvent]:
        """Every event of the run: the crashes', and every replica life's."""
        events = list(self.events)
        for core in self.lives:
            events.extend(core.events)
        for node in self.replicas.values():
            if isinstance(node.core, (SimReplica, SimStore)) and node.core not in self.lives:
                events.extend(node.core.events)
        return sorted(events, key=lambda e: e.at)


def _nothing(end: float) -> None:
    """A job that does nothing: ``Engine.serve`` then sends and arms what is due."""


def _never_at(when: float, action: Callable[[], None]) -> None:
    """The schedule of a closed run: nothing more happens."""


def _nothing_lost() -> None:
    """The probe callback of a closed run."""

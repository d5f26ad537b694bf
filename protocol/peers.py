"""A coordinator's neighbours in a tree: its parent and its children.

A mixin of ``protocol.coordinator.Coordinator``. A coordinator with no
``parent`` that no child ever joins is a flat coordinator, and none of this
runs for it.

Joining. A child's ``start`` sends ``PeerHello`` (with the shared token) to its
parent and resends it every ``ack_timeout`` until the parent's ``Welcome``.
Each side then keeps a ``Session`` for the other with ``peer`` set, so a
neighbour gets what an agent gets: a credit window, a bounded backlog,
retransmission with an adaptive timeout, ``Busy`` before its backlog
overflows, and failure detection; each side beats every ``heartbeat_interval``:
a parent sends its children ``Heartbeat``, a child its parent ``Load`` (its
subtree's task load, ``protocol.stealing``). Tasks cross the tree as TASK
``Deliver``s, acked on arrival, their results coming back as ``TaskBack``
(``protocol.tasks``).

Interest. Each coordinator tells each neighbour what to route to it, as a
whole snapshot (``Interest``): to its parent, the patterns followed in its
subtree and the agents in it; to a child, the patterns followed outside that
child's subtree. A neighbour's patterns go into the ``SubscriptionIndex``
under the neighbour's id, as if it were one subscriber, and a child's agents
into ``via`` (agent to child). When more than ``DOWN_LIMIT`` patterns are
followed outside a child's subtree, the child is told ``#`` instead: it sends
every publish up, one hop more for those nobody outside follows, so that no
coordinator keeps the patterns of the whole tree (with 100,000 agents under 11,111
coordinators the model's peak memory fell from 7.9 to 2.2 GiB). Snapshots are
sent ``INTEREST_DELAY`` after a change (changes in between go out as one),
numbered, one in flight per
neighbour (a change made meanwhile follows the ack), resent until acked
(``InterestAck``), and applied only if newer than the last applied; a
version is ``epoch << 20`` plus a count, the epoch being the time of the
first send in microseconds (plus ``EPOCH_OFFSET``, so that it is positive), so a
restarted coordinator's versions are newer than its earlier life's.

Routing. An op from an agent is routed by the bus as always: the matching
subscribers of a publish include the neighbours whose interest matches, a
broadcast goes to every session (neighbours included), and a direct goes to
the agent if it is here, else to the child whose subtree holds it, else to
the parent (``_direct_to``). The coordinator that admits the op answers
``Accepted`` (its recipients are next hops) or ``Busy``. Between
coordinators the op travels as a ``Deliver`` keeping its origin and op id
(a direct's ``topic`` names its destination); the receiver de-duplicates by
``(origin, op_id)``, routes it on to everyone but the neighbour it came from,
and acks it. If its own recipients are congested it does not ack: the sender
keeps the op in its window and resends it, backing the link off, so overload
stops at the edge where the op entered (its ``Busy``), not in the middle. So
a publish climbs only as far as someone outside the subtree it is in
follows it, and descends only into subtrees where someone does.

Memory. The root owns the store. A coordinator with a parent forwards an
agent's ``MemRequest`` up as ``MemForward`` (keeping its origin) and keeps
nothing; the root applies it (de-duplicated by origin and op id, durable as
in a flat coordinator) and answers ``MemBack``, which each coordinator
passes down towards its agent. A lost forward or answer is recovered by the
agent's own retry, which the root answers from its de-duplication table.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from mypy_extensions import trait

from protocol.journal import BusJournal
from protocol.messages import (
    Ack,
    Deliver,
    DeliveryKind,
    Error,
    Heartbeat,
    Interest,
    InterestAck,
    MemBack,
    MemForward,
    MemReply,
    MemRequest,
    Message,
    PeerHello,
    Reject,
    Welcome,
)
from protocol.records import NodeEvent
from protocol.retransmit import backoff
from protocol.sessions import CoordinatorStats, Session, Task
from protocol.settings import ProtocolSettings
from protocol.topics import PatternError, SubscriptionIndex

INF = float("inf")
NOT_NEIGHBOUR = "not a neighbour"  # a Reject's reason: "I do not take you for mine"
INTEREST_DELAY = 0.005  # changes within this long after a first go out as one Interest
EPOCH_SHIFT = 20  # a version's low bits count snapshots within one life
EPOCH_OFFSET = 1 << 40  # microseconds (about 12 days) added to the time of the epoch
DOWN_LIMIT = 256  # more patterns followed outside a child's subtree than this: "#"
EVERYTHING = ("#",)


@dataclass(slots=True)
class InterestLink:
    """The interest exchanged with one neighbour."""

    count: int = 0  # snapshots sent to it in this life
    sent: tuple[tuple[str, ...], tuple[str, ...]] | None = None  # the last one sent
    version: int = 0  # the last one's version
    acked: bool = True
    attempt: int = 0
    resend_at: float = INF
    heard: int = 0  # the newest version applied from it
    members: frozenset[str] = frozenset()  # the agents it said its subtree holds


@dataclass(slots=True)
class TreeState:
    """The tree's timers and per-neighbour state (kept off the trait: mypyc cannot set a
    trait's primitive attributes)."""

    peer_due: float = INF  # the earliest of the four below
    hello_due: float = INF  # resend PeerHello (until the parent's Welcome)
    beat_due: float = INF  # heartbeat the neighbours
    interest_due: float = INF  # send (or resend) interest
    load_due: float = INF  # report the task load to the parent (``protocol.stealing``)
    interest_dirty: bool = False  # a change not sent yet
    epoch: int = 0
    beat_seq: int = 0
    links: dict[str, InterestLink] = field(default_factory=dict)
    peer_acks: dict[str, list[int]] = field(default_factory=dict)


@dataclass(slots=True)
class Orphans:
    """A child whose link closed, until its subtree has re-attached here
    (``protocol.failover``)."""

    expires: float
    members: frozenset[str]  # the agents and coordinators its subtree held
    handed: set[str] = field(default_factory=set)  # the members that got theirs


@dataclass(slots=True)
class RepairState:
    """How the tree heals here (``protocol.failover``; kept off the trait, as
    ``TreeState`` is)."""

    ancestors: tuple[str, ...] = ()  # the parent, then the fallbacks
    moving: bool = False  # joining another ancestor after the parent's link closed
    tried: int = 0  # ancestors tried since the last Welcome
    orphans: dict[str, Orphans] = field(default_factory=dict)  # per child lost
    restored: bool = False  # restarted from a journal, not yet welcomed by the parent
    # relays with nowhere to go yet: (give up at, relay, destination, came from)
    stranded: list[tuple[float, Deliver, str, str]] = field(default_factory=list)


@trait  # a mixin of Coordinator: mypyc compiles a mixin only as a trait
class PeerRouting:
    """The tree: joining, heartbeats, interest, forwarded ops and memory."""

    node_id: str
    parent: str
    settings: ProtocolSettings
    sessions: dict[str, Session]
    subscriptions: SubscriptionIndex
    stats: CoordinatorStats
    log: deque[str]
    via: dict[str, str]
    peers: list[str]
    unassigned: deque[Task]
    _out: list[tuple[str, Message]]
    _routed: dict[tuple[str, int], int]
    _next_sweep: float | None
    _tree: TreeState
    _repair: RepairState
    _parked: dict[str, list[Deliver]]
    journal: BusJournal
    events: list[NodeEvent]

    # --- the coordinator's, used here --------------------------------------------------

    def _refuse(
        self, src: str, reason: str, close: bool = False, reply: Message | None = None
    ) -> None:
        raise NotImplementedError

    def _new_session(self, node: str, capabilities: tuple[str, ...], now: float) -> Session:
        raise NotImplementedError

    def _resend_session(self, session: Session, now: float) -> None:
        raise NotImplementedError

    def _congested(self, sessions: list[Session], now: float) -> bool:
        raise NotImplementedError

    def _dispatch(
        self,
        kind: int,
        origin: str,
        op_id: int,
        topic: str,
        payload: bytes,
        checksum: int,
        recipients: tuple[str, ...],
        sessions: list[Session],
        now: float,
    ) -> None:
        raise NotImplementedError

    def _apply_memory(self, origin: str, msg: MemRequest, reply_to: str) -> None:
        raise NotImplementedError

    def _send_load(self, now: float, beat: bool) -> None:
        raise NotImplementedError  # protocol.stealing

    def _assign_waiting(self, now: float) -> None:
        raise NotImplementedError  # protocol.tasks

    def _on_peer_task(self, src: str, msg: Deliver, now: float) -> None:
        raise NotImplementedError  # protocol.tasks

    def _hand_over_restored(self, now: float) -> None:
        raise NotImplementedError  # protocol.failover

    def _adopt_peer(self, node: str, msg: Interest, now: float) -> None:
        raise NotImplementedError  # protocol.failover

    def _on_relay(self, src: str, msg: Deliver, now: float) -> None:
        raise NotImplementedError  # protocol.failover

    def _forget_peer(self, peer: str) -> None:
        raise NotImplementedError  # protocol.failover

    def _retry_stranded(self, now: float) -> None:
        raise NotImplementedError  # protocol.failover

    def _disowned(self, peer: str, now: float) -> None:
        raise NotImplementedError  # protocol.failover

    def _switch_parent(self, to: str, now: float) -> None:
        raise NotImplementedError  # protocol.failover

    # --- timers ------------------------------------------------------------------------

    def start(self, now: float) -> None:
        """Join the parent (a coordinator without one needs no start)."""
        if self.parent:
            self._send_hello(now)

    def _send_hello(self, now: float) -> None:
        self._out.append((self.parent, PeerHello(self.node_id, self.settings.token)))
        self._tree.hello_due = now + self.settings.ack_timeout
        self._rearm()

    def _rearm(self) -> None:
        tree = self._tree
        tree.peer_due = min(tree.hello_due, tree.beat_due, tree.interest_due, tree.load_due)

    def _peer_timer(self, now: float) -> None:
        """Resend the hello, beat, send or resend interest, report the load: whatever
        is due. The beat to the parent is the ``Load`` (``protocol.stealing``)."""
        tree = self._tree
        if now >= tree.hello_due:
            self._send_hello(now)
        if now >= tree.beat_due:
            tree.beat_seq += 1
            beat = Heartbeat(tree.beat_seq)
            for peer in self.peers:
                session = self.sessions.get(peer)
                if peer != self.parent and session is not None and session.linked:
                    self._out.append((peer, beat))
            if self.parent:
                tree.load_due = INF
                self._send_load(now, True)
            tree.beat_due = now + self.settings.heartbeat_interval
        if now >= tree.load_due:
            tree.load_due = INF
            self._send_load(now, False)
        if now >= tree.interest_due:
            self._send_interest(now)
        self._rearm()

    # --- joining -----------------------------------------------------------------------

    def _on_peer_hello(self, src: str, msg: PeerHello, now: float) -> None:
        if not self.settings.accepts(msg.token):
            self._refuse(
                src, f"rejected {msg.node_id!r}: bad token", close=True, reply=Reject("bad token")
            )
            return
        if msg.node_id != src or src == self.parent:
            reason = "node id does not match link" if msg.node_id != src else "is my parent"
            self._refuse(src, f"rejected child {msg.node_id!r}: {reason}", reply=Reject(reason))
            return
        session = self.sessions.get(src)
        if session is not None and not session.peer:
            self._refuse(src, f"{src} is an agent, not a coordinator", reply=Reject("an agent"))
            return
        self._join(src, now)
        settings = self.settings
        self._out.append((src, Welcome(src, settings.credit, settings.heartbeat_interval)))

    def _on_welcome(self, src: str, msg: Welcome, now: float) -> None:
        repair = self._repair
        if src != self.parent and repair.moving and src in repair.ancestors:
            self._switch_parent(src, now)  # a Welcome to an earlier PeerHello: take it
        if src != self.parent:
            session = self.sessions.get(src)
            coordinator = session is None or session.peer  # (an agent's is just an error)
            reply = Reject(NOT_NEIGHBOUR) if coordinator else None
            self._refuse(src, f"unexpected Welcome from {src}", reply=reply)
            return
        self._tree.hello_due = INF
        repair.tried = 0
        if repair.moving:
            repair.moving = False
            self.events.append(NodeEvent(now, "reparented", self.node_id))
        self._join(src, now)
        if repair.restored:
            self._hand_over_restored(now)

    def _join(self, peer: str, now: float) -> None:
        """``peer`` is a neighbour now (again): a session, heartbeats, interest; and
        what was kept for it (``protocol.failover``: a restarted coordinator's journal,
        the ops queued for a parent whose link closed)."""
        session = self.sessions.get(peer)
        if session is None:
            session = self._new_session(peer, (), now)
            session.peer = True
            self.sessions[peer] = session
            self.peers.append(peer)
            self.log.append(f"coordinator {peer} joined as my {self._role(peer)}")
            kept = self._parked.pop(peer, [])
            if kept:
                for deliver in kept:
                    self.journal.delivered(deliver, [peer])
                session.backlog.extend(kept)
                session.backlog_since = now
        else:
            session.alive = True
            session.linked = True
            session.last_seen = now
        link = self._tree.links.get(peer)
        if link is None:
            link = self._tree.links[peer] = InterestLink()
        link.sent = None  # tell it again, whatever it had
        if self._next_sweep is None:
            self._next_sweep = now + self.settings.heartbeat_interval / 2
        if self._tree.beat_due == INF:
            self._tree.beat_due = now + self.settings.heartbeat_interval
        self._resend_session(session, now)
        self._interest_changed(now)
        if self.unassigned and not self._repair.restored:
            self._assign_waiting(now)  # a waiting task may go to the neighbour now

    def _role(self, peer: str) -> str:
        return "parent" if peer == self.parent else "child"

    def _on_peer_error(self, src: str, msg: Error | Reject, now: float) -> None:
        """A neighbour refused something: log it, never answer (two coordinators
        answering each other's refusals would never stop). A child that says it is
        not one any more (it re-attached elsewhere) is let go (``protocol.failover``)."""
        self.log.append(f"{type(msg).__name__} from {src}: {msg.reason}")
        if type(msg) is Reject and msg.reason == NOT_NEIGHBOUR:
            self._disowned(src, now)

    # --- interest ----------------------------------------------------------------------

    def _interest_changed(self, now: float) -> None:
        """What this coordinator's neighbours should route to it may have changed."""
        if self.peers:
            self._tree.interest_dirty = True
            if now + INTEREST_DELAY < self._tree.interest_due:
                self._tree.interest_due = now + INTEREST_DELAY
                self._rearm()

    def _snapshot(self, peer: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """What ``peer`` should route here: every pattern followed here or beyond
        another neighbour; to the parent also the agents here and below."""
        patterns = self.subscriptions.patterns_except(peer)
        if peer != self.parent:
            if len(patterns) > DOWN_LIMIT:
                return EVERYTHING, ()  # "send me every publish": the child keeps little
            return patterns, ()
        members = [n for n, s in self.sessions.items() if not s.peer]
        members.extend(self.via)
        members.append(self.node_id)  # relays to a coordinator find it (``protocol.failover``)
        return patterns, tuple(sorted(members))

    def _send_interest(self, now: float) -> None:
        """Send each live neighbour its snapshot if it changed (one in flight per
        neighbour: a change made while one is unacked follows the ack), or resend an
        unacked one that is due."""
        tree = self._tree
        tree.interest_due = INF
        held = False
        if not tree.epoch:
            # microseconds, shifted up so that a run clock's negative times (a model
            # starts its nodes before time 0) still give a positive, growing epoch
            tree.epoch = (int(now * 1_000_000) + EPOCH_OFFSET) << EPOCH_SHIFT
        for peer in self.peers:
            session = self.sessions.get(peer)
            if session is None or not session.alive:
                continue
            link = tree.links[peer]
            snapshot = self._snapshot(peer)
            if snapshot != link.sent:
                if not link.acked and now < link.resend_at:
                    held = True
                    tree.interest_due = min(tree.interest_due, link.resend_at)
                    continue
                link.count += 1
                link.sent = snapshot
                link.version = tree.epoch + link.count
                link.acked = False
                link.attempt = 0
            elif link.acked:
                continue
            elif now < link.resend_at:
                tree.interest_due = min(tree.interest_due, link.resend_at)
                continue
            else:
                link.attempt += 1
            self._out.append((peer, Interest(link.version, *snapshot)))
            wait = backoff(session.rto.rto, link.attempt, self.settings.max_rto)
            link.resend_at = now + wait
            tree.interest_due = min(tree.interest_due, link.resend_at)
        tree.interest_dirty = held

    def _on_interest(self, src: str, msg: Interest, now: float) -> None:
        session = self.sessions[src]
        if not session.peer:
            self._refuse(src, f"Interest from agent {src}")
            return
        self._out.append((src, InterestAck(msg.version)))
        link = self._tree.links[src]
        if msg.version <= link.heard:
            return  # a repeat, or overtaken by a newer one
        link.heard = msg.version
        index = self.subscriptions
        old = set(index.patterns_of(src))
        new = set(msg.patterns)
        for pattern in old - new:
            index.remove(src, pattern)
        for pattern in sorted(new - old):
            try:
                index.add(src, pattern)
            except PatternError as exc:
                self.log.append(f"interest from {src}: {exc}")
        if src != self.parent:
            members = frozenset(msg.members)
            via = self.via
            for gone in link.members - members:
                if via.get(gone) == src:
                    del via[gone]
            for member in members:
                via[member] = src
            link.members = members
            if self._repair.orphans:
                self._adopt_peer(src, msg, now)
            if self._repair.stranded:
                self._retry_stranded(now)
        if self.journal.enabled:  # (sorting a root's members is not free)
            self.journal.neighbour(src, tuple(sorted(new)), tuple(sorted(link.members)))
        self._interest_changed(now)

    def interest_settled(self) -> bool:
        """Joined, no change waiting to go out, and every live neighbour has acked what
        it was last sent: a subscription made before has taken effect across the tree."""
        if self._tree.hello_due != INF or self._tree.interest_dirty:
            return False
        for peer in self.peers:
            link = self._tree.links[peer]
            if self.sessions[peer].alive and (not link.acked or link.sent is None):
                return False
        return True

    def _on_interest_ack(self, src: str, msg: InterestAck, now: float) -> None:
        link = self._tree.links.get(src)
        if link is not None and msg.version == link.version:
            link.acked = True
            if self._tree.interest_dirty:  # a newer snapshot waited for this ack
                self._interest_changed(now)

    # --- ops between coordinators ------------------------------------------------------

    def _direct_to(self, dst: str, came_from: str) -> tuple[str, ...]:
        """Where a direct to ``dst`` goes from here: the agent, the child whose subtree
        holds it, or the parent (never back where it came from); nowhere if unknown."""
        session = self.sessions.get(dst)
        if session is not None and not session.peer:
            return (dst,)
        child = self.via.get(dst)
        if child is not None and child != came_from and child in self.sessions:
            return (child,)
        if self.parent and self.parent != came_from and self.parent in self.sessions:
            return (self.parent,)
        return ()

    def _on_peer_deliver(self, src: str, msg: Deliver, now: float) -> None:
        """An op from a neighbour: route it on (once), then ack it."""
        session = self.sessions[src]
        if not session.peer:
            self._refuse(src, f"Deliver from agent {src}")
            return
        if msg.kind == DeliveryKind.TASK:
            self._on_peer_task(src, msg, now)  # acked now; its result comes back later
            return
        if msg.kind == DeliveryKind.RELAY:
            self._on_relay(src, msg, now)  # ``protocol.failover``
            return
        key = (msg.origin, msg.op_id)
        if key not in self._routed:
            kind = msg.kind
            topic = msg.topic
            if kind == DeliveryKind.PUBLISH:
                found = self.subscriptions.subscribers(topic)
                recipients = tuple(n for n in found if n != src)
            elif kind == DeliveryKind.DIRECT:
                recipients = self._direct_to(topic, src)
                if recipients and not self.sessions[recipients[0]].peer:
                    topic = ""  # the agent gets it as a flat coordinator sends it
            elif kind == DeliveryKind.BROADCAST:
                origin = msg.origin
                recipients = tuple(n for n in self.sessions if n != src and n != origin)
            else:
                self._refuse(src, f"a Deliver of kind {kind} from {src}")
                return
            sessions = [self.sessions[n] for n in recipients]
            if self._congested(sessions, now):
                self.stats.busy += 1
                return  # not acked: the neighbour keeps it in its window and resends
            self._dispatch(
                kind,
                msg.origin,
                msg.op_id,
                topic,
                msg.payload,
                msg.checksum,
                recipients,
                sessions,
                now,
            )
        self._peer_ack(src, msg.msg_id)

    def _peer_ack(self, src: str, msg_id: int) -> None:
        """Ack neighbour ``src``'s delivery ``msg_id`` with the next drain."""
        acks = self._tree.peer_acks.get(src)
        if acks is None:
            self._tree.peer_acks[src] = [msg_id]
        else:
            acks.append(msg_id)

    def _take_peer_acks(self) -> None:
        """One ``Ack`` per neighbour for what it delivered since the last drain."""
        for peer, msg_ids in self._tree.peer_acks.items():
            self._out.append((peer, Ack(tuple(msg_ids))))
        self._tree.peer_acks.clear()

    # --- memory, owned by the root -----------------------------------------------------

    def _forward_memory(self, src: str, msg: MemRequest) -> None:
        forward = MemForward(
            src, msg.op_id, msg.verb, msg.namespace, msg.key, msg.value, msg.expected_version
        )
        self._out.append((self.parent, forward))

    def _on_mem_forward(self, src: str, msg: MemForward, now: float) -> None:
        if not self.sessions[src].peer:
            self._refuse(src, f"MemForward from agent {src}")
            return
        if self.parent:
            self._out.append((self.parent, msg))
            return
        request = MemRequest(
            msg.op_id, msg.verb, msg.namespace, msg.key, msg.value, msg.expected_version
        )
        self._apply_memory(msg.origin, request, src)

    def _on_mem_back(self, src: str, msg: MemBack, now: float) -> None:
        if src != self.parent:
            self._refuse(src, f"MemBack from {src}, not my parent")
            return
        session = self.sessions.get(msg.dst)
        if session is not None and not session.peer:
            reply = MemReply(msg.op_id, msg.ok, msg.version, msg.value, msg.error)
            self._out.append((msg.dst, reply))
            return
        child = self.via.get(msg.dst)
        session = self.sessions.get(child) if child is not None else None
        if child is not None and session is not None and session.linked:
            self._out.append((child, msg))  # (else lost: the agent asks again)

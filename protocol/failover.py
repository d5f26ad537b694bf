"""How a tree of coordinators heals when one of them dies: re-parenting, orphans, relays.

A mixin of ``protocol.coordinator.Coordinator``. It acts when the driver says a
neighbour's link closed (``Coordinator.link_closed``: the neighbour's process
died, or a connection to it could not be opened), not when a neighbour is merely
silent: a silent neighbour is failed as an agent is (``protocol.failures``), and
what is held for it waits for it to speak again. Nothing here runs in a flat
coordinator.

Re-parenting. A coordinator knows its ancestors (``parent``, then ``fallbacks``:
grandparent, great-grandparent, up to the root). When its parent's link closes
it forgets the parent (session, stealing state, tasks that came from it: the
parent's other neighbours place those again) and joins the next ancestor
(``PeerHello``, resent every ``ack_timeout`` until its ``Welcome``). A session
for the new parent, not alive until then, takes what was queued for the old one
and the patterns the old one had asked for, so what is routed up meanwhile waits
rather than going nowhere; the new parent de-duplicates by ``(origin, op_id)``.
If the link to that ancestor cannot be opened either, the one after, round the
chain (waiting ``ack_timeout`` after a full round, so a subtree whose root died
rejoins it when it restarts). Only a closed link moves it on, never a slow
answer: a subtree that moved on for a late ``Welcome`` would re-attach away from
the coordinator that keeps what its lost parent held. A ``Welcome`` from an
ancestor it asked earlier is taken. Agents do the same on their own
(``Agent.fail_over``).

Orphans. When a child's link closes, its session, patterns and members stay,
renamed ``child`` + NUL + ``lost`` and not alive, so that what was held for the
child's subtree, and what is routed there while the subtree re-attaches, waits.
As the subtree re-attaches here, each part gets what it is owed: an agent that
says ``Hello``, the publishes its subscriptions match, the directs to it and the
broadcasts it did not send; a child whose ``Interest`` lists members of the lost
subtree, the publishes its patterns match, the directs (and relays) to its
members and every broadcast (it routes them once, de-duplicating). Once every
member is reachable another way, or after ``session_expiry``, the lost session is
forgotten. ``child`` itself may join again meanwhile, afresh.

Relays. A ``Deliver`` of kind ``RELAY`` carries one op to one node, an agent or
a coordinator, wherever it is in the tree: its ``topic`` is the destination, a
NUL, the op's own kind (one digit) and its own topic. Each coordinator forwards
it towards the destination (the destination's own session, the child whose
subtree holds it, else the parent, never back where it came from) and
de-duplicates it by the op and the destination, so a relay never stops the op
itself from being routed (one made here may pass once more, when the tree
re-attached meanwhile and this coordinator is on its way). The coordinator that
has the destination agent delivers the op to it as an ordinary ``Deliver``; a
destination coordinator routes the op as if a neighbour had sent it. A relay
with nowhere to go yet waits (*stranded*) and is tried again on each child's
``Interest`` and each failure sweep, for up to ``session_expiry``.

Refusals. A child that answers ``Reject("not a neighbour")`` re-attached
elsewhere while this one still held it: what it is owed is relayed to it and it
is forgotten. A parent that does: join it again.

A restarted coordinator of a tree (``Coordinator.restore``; the journal keeps its
neighbours' last ``Interest`` too) is welcomed back by its parent with an empty
subtree: its agents and children re-attached elsewhere while it was down. Once
welcomed it relays what its journal says it still owes to nodes that are not
here (agents that have not said hello again, former children) and forgets them;
the unfinished tasks of agents that are not here are dropped, because each agent
submits again the tasks it has no result for when it registers with another
coordinator (``protocol.agent``).
"""

from __future__ import annotations

from collections import deque

from mypy_extensions import trait

from protocol.journal import BusJournal
from protocol.messages import Deliver, DeliveryKind, Interest, Message
from protocol.peers import InterestLink, Orphans, RepairState, TreeState
from protocol.records import NodeEvent
from protocol.sessions import INF, CoordinatorStats, OpKey, Session, Task
from protocol.settings import ProtocolSettings
from protocol.stealing import StealState
from protocol.topics import SubscriptionIndex, matches

RELAY_SEP = "\x00"


def relay_topic(dst: str, deliver: Deliver) -> str:
    """The ``topic`` of a relay of ``deliver`` to ``dst``."""
    return f"{dst}{RELAY_SEP}{deliver.kind}{deliver.topic}"


def relay_parts(topic: str) -> tuple[str, int, str]:
    """``(destination, kind, topic)`` of a relay's ``topic``; ValueError if malformed."""
    dst, sep, rest = topic.partition(RELAY_SEP)
    if not sep or not rest or not dst:
        raise ValueError(f"a relay topic needs destination NUL kind topic, got {topic!r}")
    kind = int(rest[0])
    if kind not in (DeliveryKind.PUBLISH, DeliveryKind.DIRECT, DeliveryKind.BROADCAST):
        raise ValueError(f"a relay carries a publish, direct or broadcast, not kind {kind}")
    return dst, kind, rest[1:]


@trait  # a mixin of Coordinator: mypyc compiles a mixin only as a trait
class TreeRepair:
    """Re-parenting, orphans and relays (module docstring)."""

    node_id: str
    parent: str
    settings: ProtocolSettings
    sessions: dict[str, Session]
    subscriptions: SubscriptionIndex
    stats: CoordinatorStats
    journal: BusJournal
    events: list[NodeEvent]
    log: deque[str]
    via: dict[str, str]
    peers: list[str]
    tasks: dict[OpKey, Task]
    unassigned: deque[Task]
    _out: list[tuple[str, Message]]
    _routed: dict[OpKey, int]
    _parked: dict[str, list[Deliver]]
    _steal: StealState
    _tree: TreeState
    _repair: RepairState
    _next_msg_id: int

    # --- the coordinator's, used here --------------------------------------------------

    def _remember(self, key: OpKey) -> None:
        raise NotImplementedError

    def _enqueue(self, deliver: Deliver, sessions: list[Session], now: float) -> None:
        raise NotImplementedError  # protocol.bus

    def _congested(self, sessions: list[Session], now: float) -> bool:
        raise NotImplementedError  # protocol.bus

    def _peer_ack(self, src: str, msg_id: int) -> None:
        raise NotImplementedError  # protocol.peers

    def _on_peer_deliver(self, src: str, msg: Deliver, now: float) -> None:
        raise NotImplementedError  # protocol.peers

    def _send_hello(self, now: float) -> None:
        raise NotImplementedError  # protocol.peers

    def _new_session(self, node: str, capabilities: tuple[str, ...], now: float) -> Session:
        raise NotImplementedError  # the coordinator's

    def _rearm(self) -> None:
        raise NotImplementedError  # protocol.peers

    def _assign_waiting(self, now: float) -> None:
        raise NotImplementedError  # protocol.tasks

    def _fail(self, session: Session, now: float) -> None:
        raise NotImplementedError  # protocol.failures

    def _interest_changed(self, now: float) -> None:
        raise NotImplementedError  # protocol.peers

    def _load_changed(self, now: float) -> None:
        raise NotImplementedError  # protocol.stealing

    # --- a neighbour's link closed -----------------------------------------------------

    def _neighbour_lost(self, peer: str, now: float) -> None:
        """The link to neighbour ``peer`` closed (it has been failed already)."""
        if peer == self.parent:
            self._reparent(now)
        else:
            self._orphan(peer, now)

    def _held(self, session: Session) -> list[Deliver]:
        """What ``session`` is owed (in flight, then queued), tasks aside."""
        return [
            d
            for d in (*(sent[0] for sent in session.inflight.values()), *session.backlog)
            if d.kind != DeliveryKind.TASK
        ]

    def _take_held(self, session: Session) -> list[Deliver]:
        """``_held``, forgotten by the session and the journal."""
        held = self._held(session)
        owed = (*session.inflight, *(d.msg_id for d in session.backlog))
        self.journal.acked(session.node_id, owed)
        session.inflight.clear()
        session.backlog.clear()
        return held

    def _disowned(self, peer: str, now: float) -> None:
        """Neighbour ``peer`` says it does not take this one for its own. A child (it
        re-attached elsewhere while this one still held it): what it is owed is
        relayed to it, wherever it is now, and it is forgotten. The parent (it let
        this one go): join it again, what waits for it waiting."""
        session = self.sessions.get(peer)
        if session is None or not session.peer:
            return
        if peer == self.parent:
            if session.linked:
                self._fail(session, now)  # what it had from here is placed again
                self._forget_tasks_from(peer)
                session.alive = session.linked = False
                self._repair.moving = True
                self._send_hello(now)
            return
        if session.alive:
            self._fail(session, now)  # what it worked on is placed again
        held = self._take_held(session)
        self._forget_peer(peer)
        self._forget_tasks_from(peer)
        for deliver in held:
            self._relay(peer, deliver, now)
        self.log.append(f"{peer} is not my child: {len(held)} deliveries relayed to it")
        self._interest_changed(now)
        self._load_changed(now)

    def _switch_parent(self, to: str, now: float) -> None:
        """While re-attaching, ancestor ``to`` welcomed an earlier ``PeerHello``: it is
        the parent (what waits for the parent goes to it)."""
        while self.parent != to:
            self._reparent(now, hello=False)

    def _reparent(self, now: float, hello: bool = True) -> None:
        """The parent's role passes to the next ancestor (module docstring): a session
        for it, not alive until its ``Welcome``, takes what was queued for the old
        parent and the patterns the old parent had asked for, so that what is routed
        up meanwhile waits for the new parent rather than going nowhere (its own
        ``Interest`` replaces them)."""
        old = self.parent
        new = self._next_ancestor(old)
        session = self.sessions.get(old)
        held = [] if session is None else self._take_held(session)
        patterns = self.subscriptions.patterns_of(old)
        self._forget_peer(old)
        self._forget_tasks_from(old)
        self._steal.owed_up = 0
        self._steal.relays.clear()
        self.parent = new
        heir = self._new_session(new, (), now)
        heir.peer = True
        heir.alive = heir.linked = False
        heir.backlog.extend(held)
        heir.backlog_since = now
        self.sessions[new] = heir
        self.peers.append(new)
        self._tree.links[new] = InterestLink()
        for pattern in patterns:
            self.subscriptions.add(new, pattern)
        for deliver in held:
            self.journal.delivered(deliver, [new])
        self._repair.moving = True
        self.events.append(NodeEvent(now, "reparenting", self.node_id))
        self.log.append(f"parent {old} lost: joining {new}")
        repair = self._repair
        repair.tried += 1
        if repair.tried > len(repair.ancestors):  # round the chain: wait before again
            repair.tried = 0
            self._tree.hello_due = now + self.settings.ack_timeout
            self._rearm()
        elif hello:
            self._send_hello(now)

    def _next_ancestor(self, current: str) -> str:
        chain = self._repair.ancestors or (current,)
        at = chain.index(current) if current in chain else -1
        return chain[(at + 1) % len(chain)]

    def _orphan(self, child: str, now: float) -> None:
        """Keep ``child``'s session, with the patterns and members it told, under the
        name ``child`` + NUL + ``lost`` while its subtree re-attaches here: what it
        holds, and what is routed to it meanwhile, is handed to that subtree as it
        does (``_adopt_agent``, ``_adopt_peer``), and ``child`` itself may join again
        afresh (restarted, with nothing below it)."""
        session = self.sessions.pop(child, None)
        if session is None:
            return
        self._forget_tasks_from(child)
        lost = f"{child}{RELAY_SEP}lost"
        held = self._held(session)
        self.journal.acked(child, (*session.inflight, *(d.msg_id for d in session.backlog)))
        session.node_id = lost
        session.timer_due = INF  # its timer's entry names the child: set it again if needed
        self.sessions[lost] = session
        self.peers[self.peers.index(child)] = lost
        link = self._tree.links.pop(child)
        self._tree.links[lost] = link
        self._tree.peer_acks.pop(child, None)
        for pattern in self.subscriptions.patterns_of(child):
            self.subscriptions.add(lost, pattern)
        self.subscriptions.remove_node(child)
        for member, via in self.via.items():
            if via == child:
                self.via[member] = lost
        self._steal.views.pop(child, None)
        expires = now + self.settings.session_expiry
        self._repair.orphans[lost] = Orphans(expires, link.members | {child})
        self.events.append(NodeEvent(now, "orphaned", child))
        self.log.append(f"child {child} lost: {len(held)} deliveries kept for its subtree")
        self._load_changed(now)

    def _members_of(self, peer: str) -> frozenset[str]:
        link = self._tree.links.get(peer)
        return link.members if link is not None else frozenset()

    def _forget_peer(self, peer: str) -> None:
        """Drop every trace of neighbour ``peer``; what it was owed was taken already."""
        self.journal.neighbour(peer, (), (), present=False)
        self.sessions.pop(peer, None)
        if peer in self.peers:
            self.peers.remove(peer)
        self._tree.links.pop(peer, None)
        self._tree.peer_acks.pop(peer, None)
        self.subscriptions.remove_node(peer)
        for member in [m for m, child in self.via.items() if child == peer]:
            del self.via[member]
        self._steal.views.pop(peer, None)

    def _forget_tasks_from(self, peer: str) -> None:
        """Drop the tasks neighbour ``peer`` gave here: it is gone, and whoever gave
        them to it places them again (or their submitter submits them again)."""
        gone = [key for key, task in self.tasks.items() if task.came_from == peer]
        for key in gone:
            task = self.tasks.pop(key)
            self._routed.pop(key, None)  # if it is placed here again, it is new
            if task.worker is not None and task.worker in self.sessions:
                self.sessions[task.worker].tasks.discard(key)
        if gone:
            self.unassigned = deque(t for t in self.unassigned if t.came_from != peer)

    # --- orphans -----------------------------------------------------------------------

    def _adopt_agent(
        self, node: str, patterns: tuple[str, ...], session: Session, now: float
    ) -> None:
        """Agent ``node`` registered: give it what its lost coordinator holds for it."""
        for child, orphans in list(self._repair.orphans.items()):
            if node in orphans.members and node not in orphans.handed:
                orphans.handed.add(node)
                held = self._held(self.sessions[child])
                self._hand([d for d in held if _agent_owed(d, node, patterns)], session, now)
                self._settle_orphan(child, now)

    def _adopt_peer(self, node: str, msg: Interest, now: float) -> None:
        """Coordinator ``node`` told its interest: if its subtree now holds members of a
        lost child's, give it what that child holds that it routes on."""
        session = self.sessions[node]
        members = set(msg.members)
        for lost, orphans in list(self._repair.orphans.items()):
            if lost == node:
                continue
            new = (members & orphans.members) - orphans.handed
            if new:
                orphans.handed.update(new)
                held = self._held(self.sessions[lost])
                owed = [d for d in held if _peer_owed(d, msg.patterns, members)]
                self._hand(owed, session, now)
            self._settle_orphan(lost, now)

    def _hand(self, owed: list[Deliver], session: Session, now: float) -> None:
        fresh = [d for d in owed if d.msg_id not in session.inflight]
        if not session.peer:  # an agent gets the op a relay carries
            fresh = [_unwrapped(d, d.msg_id) if d.kind == DeliveryKind.RELAY else d for d in fresh]
        for deliver in fresh:
            self.journal.delivered(deliver, [session.node_id])
            self._enqueue(deliver, [session], now)
        if fresh:
            self.log.append(f"{len(fresh)} orphaned deliveries handed to {session.node_id}")

    def _settle_orphan(self, lost: str, now: float) -> None:
        """Forget a lost child once every other member of its subtree is reachable
        here another way (a session of its own, or in another child's subtree)."""
        child = lost.partition(RELAY_SEP)[0]
        for member in self._repair.orphans[lost].members:
            if member == child:
                continue
            session = self.sessions.get(member)
            if session is not None and session.alive:
                continue
            if self.via.get(member, lost) != lost:
                continue
            return
        self._drop_orphan(lost, now)

    def _drop_orphan(self, lost: str, now: float) -> None:
        del self._repair.orphans[lost]
        session = self.sessions.get(lost)
        if session is not None:
            left = len(self._take_held(session))
            self._forget_peer(lost)
            self.log.append(f"{lost.partition(RELAY_SEP)[0]} forgotten ({left} held left)")
            self._interest_changed(now)

    def _expire_orphans(self, now: float) -> None:
        """Forget a lost child whose subtree did not all re-attach in ``session_expiry``
        (what it still held is dropped: ``protocol.failures._expire`` counts it)."""
        for child, orphans in list(self._repair.orphans.items()):
            if now >= orphans.expires:
                self._drop_orphan(child, now)

    # --- relays ------------------------------------------------------------------------

    def _relay(self, dst: str, deliver: Deliver, now: float) -> None:
        """Send ``deliver`` (a publish, direct or broadcast) towards node ``dst``."""
        relay = Deliver(
            self._next_msg_id,
            DeliveryKind.RELAY,
            deliver.origin,
            deliver.op_id,
            relay_topic(dst, deliver),
            deliver.payload,
            deliver.checksum,
        )
        self._next_msg_id += 1
        self._forward_relay("", relay, dst, now)

    def _on_relay(self, src: str, msg: Deliver, now: float) -> None:
        """A relay from a neighbour: deliver it, route it, or pass it on (once)."""
        try:
            dst, kind, topic = relay_parts(msg.topic)
        except ValueError as exc:
            self._peer_ack(src, msg.msg_id)  # acked, so that it is not resent for ever
            self.stats.refused += 1
            self.log.append(f"relay from {src}: {exc}")
            return
        if dst == self.node_id:
            inner = Deliver(
                msg.msg_id, kind, msg.origin, msg.op_id, topic, msg.payload, msg.checksum
            )
            self._on_peer_deliver(src, inner, now)
            return
        if self._forward_relay(src, msg, dst, now):
            self._peer_ack(src, msg.msg_id)

    def _forward_relay(self, src: str, relay: Deliver, dst: str, now: float) -> bool:
        """Route ``relay`` one hop on (``src`` is "" for one made here); False when
        congested (not acked: the neighbour resends it). One with nowhere to go yet
        waits here (``_strand``). A relay is forwarded once per coordinator, except
        that one made here may pass once more: it can come back when the tree
        re-attached meanwhile and this coordinator is now on its way."""
        key = (f"{relay.origin}{RELAY_SEP}{dst}", relay.op_id)
        seen = self._routed.get(key)
        if seen is not None and (seen > 0 or not src):
            return True
        target = self._relay_target(dst, src)
        if target and src and self._congested([self.sessions[target]], now):
            self.stats.busy += 1
            return False
        self._routed[key] = 1 if src else 0
        if seen is None:
            self._remember(key)
        if not target:
            self._repair.stranded.append((now + self.settings.session_expiry, relay, dst, src))
            self.log.append(f"relay of {relay.origin}:{relay.op_id} to {dst} waits for a route")
            return True
        self._send_relay(relay, dst, target, now)
        return True

    def _relay_target(self, dst: str, came_from: str) -> str:
        """The agent ``dst`` if it is here, else the next hop towards it ("": none)."""
        session = self.sessions.get(dst)
        if session is not None and not session.peer:
            return dst
        return self._relay_hop(dst, came_from)

    def _send_relay(self, relay: Deliver, dst: str, target: str, now: float) -> None:
        """Queue ``relay`` for ``target``: the op itself when ``target`` is the agent."""
        if target == dst and not self.sessions[target].peer:
            deliver = _unwrapped(relay, self._next_msg_id)
        else:
            deliver = Deliver(
                self._next_msg_id,
                relay.kind,
                relay.origin,
                relay.op_id,
                relay.topic,
                relay.payload,
                relay.checksum,
            )
        self._next_msg_id += 1
        self.journal.delivered(deliver, [target])
        self._enqueue(deliver, [self.sessions[target]], now)

    def _retry_stranded(self, now: float) -> None:
        """Send on the relays that had nowhere to go, now that the tree may know where
        their destinations are; drop those that waited ``session_expiry``."""
        waiting = self._repair.stranded
        self._repair.stranded = []
        for expires, relay, dst, came_from in waiting:
            target = self._relay_target(dst, came_from)
            if target:
                self._send_relay(relay, dst, target, now)
            elif now < expires:
                self._repair.stranded.append((expires, relay, dst, came_from))
            else:
                self.stats.dropped += 1
                self.log.append(f"relay of {relay.origin}:{relay.op_id} to {dst} dropped")

    def _relay_hop(self, dst: str, came_from: str) -> str:
        """The neighbour a relay to ``dst`` goes to: ``dst`` itself, the child whose
        subtree holds it, else the parent (never back where it came from)."""
        session = self.sessions.get(dst)
        if session is not None and session.peer:
            return dst
        child = self.via.get(dst)
        if child is not None and child != came_from and child in self.sessions:
            return child
        if self.parent and self.parent != came_from and self.parent in self.sessions:
            return self.parent
        return ""

    # --- a restarted coordinator -------------------------------------------------------

    def _restore_neighbour(
        self, node: str, patterns: tuple[str, ...], members: tuple[str, ...]
    ) -> None:
        """A neighbour from the journal: a session, not alive until it rejoins, with
        the patterns and members it last told, so that what is routed its way before
        then waits for it."""
        session = self._new_session(node, (), 0.0)
        session.peer = True
        session.alive = session.linked = False
        self.sessions[node] = session
        self.peers.append(node)
        self._tree.links[node] = InterestLink(members=frozenset(members))
        for pattern in patterns:
            self.subscriptions.add(node, pattern)
        if node != self.parent:
            for member in members:
                self.via[member] = node

    def _hand_over_restored(self, now: float) -> None:
        """Welcomed back after a restart: relay what the journal owes to nodes not
        here, forget them, and drop the tasks of submitters not here."""
        self._repair.restored = False
        relayed = 0
        for node, session in list(self.sessions.items()):
            if session.alive or node == self.parent:
                continue
            owed = self._take_held(session)
            if session.peer:
                self._forget_peer(node)
            else:
                del self.sessions[node]
                self.subscriptions.remove_node(node)
                self.journal.member(node, session.capabilities, ())
            for deliver in owed:
                self._relay(node, deliver, now)
            relayed += len(owed)
        for node, delivers in list(self._parked.items()):
            if node == self.parent:
                continue  # the parent's session takes them (``_join``)
            del self._parked[node]
            for deliver in delivers:
                if deliver.kind != DeliveryKind.TASK:
                    self._relay(node, deliver, now)
                    relayed += 1
        dropped = [key for key, task in self.tasks.items() if task.origin not in self.sessions]
        for key in dropped:
            del self.tasks[key]
            self.journal.finished(*key)
        if dropped:
            self.unassigned = deque(t for t in self.unassigned if t.origin in self.sessions)
        self.log.append(
            f"restarted: {relayed} deliveries relayed on, {len(dropped)} tasks left to "
            "their submitters"
        )
        self._interest_changed(now)
        if self.unassigned:
            self._assign_waiting(now)


def _unwrapped(relay: Deliver, msg_id: int) -> Deliver:
    """The op a relay carries, as its destination agent gets it."""
    _, kind, topic = relay_parts(relay.topic)
    return Deliver(msg_id, kind, relay.origin, relay.op_id, topic, relay.payload, relay.checksum)


def _agent_owed(deliver: Deliver, node: str, patterns: tuple[str, ...]) -> bool:
    kind = deliver.kind
    if kind == DeliveryKind.RELAY:
        return relay_parts(deliver.topic)[0] == node
    if kind == DeliveryKind.PUBLISH:
        return any(matches(p, deliver.topic) for p in patterns)
    if kind == DeliveryKind.DIRECT:
        return deliver.topic == node
    return deliver.origin != node  # a broadcast


def _peer_owed(deliver: Deliver, patterns: tuple[str, ...], members: set[str]) -> bool:
    kind = deliver.kind
    if kind == DeliveryKind.RELAY:
        return relay_parts(deliver.topic)[0] in members
    if kind == DeliveryKind.PUBLISH:
        return any(matches(p, deliver.topic) for p in patterns)
    if kind == DeliveryKind.DIRECT:
        return deliver.topic in members
    return True  # a broadcast: the coordinator routes it to its own subtree

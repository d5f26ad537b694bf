"""What a fault timeline means, decided once for every driver.

A plan's faults (``protocol.plan.Fault``) are replayed by three drivers: the
tcp supervisor (signals to worker processes, a link proxy), the in-process
hub (paused mailboxes, dropped or delayed routes) and the model (gates on
simulated arrivals). The drivers carry faults out and keep time; the rules
below are the only place that says what they mean, so the three agree.

``timeline(faults)`` orders every injection and heal: by time, at one
instant heals before injections, then by fault id.

A ``Target`` is what one fault can hit: an agent, a tcp worker process (its
agents together), the coordinator or a replica. The driver steps it with
``inject(fault, at)`` and ``heal(fault, at)``; each returns the ``Effect``
the driver must carry out now:

- **Pauses nest.** The first pause in effect stops the target (``PAUSE``);
  only the end of the last one resumes it (``RESUME``). A pause of a dead
  target does nothing, and a kill ends the target's pauses (a new process
  is not stopped).
- **Kills and crashes.** A kill of a live target ends its life (``KILL``).
  A kill of a dead target whose restart is under way kills the process
  being started too (``CANCEL_RESTART``: what it held is never issued), and
  otherwise does nothing. The end of a kill starts a restart (``RESTART``)
  when the target is dead and no restart is under way; the restart begins
  at that instant. When the new life is ready the driver calls
  ``live(life)`` with the ``life`` it read when the restart began: a stale
  restart (killed again meanwhile) is refused.
- **Link faults combine.** Every change is ``LINKS``; ``link()`` gives the
  combined condition of the faults in effect: any partition drops every
  message; a message survives each loss fault independently (the combined
  loss is ``1 - prod(1 - loss)``); delays add up. A replica's partition
  (``PARTITION_REPLICA``) is a link fault of that replica: the link between
  two replicas is cut while either end is partitioned (``between``).
- **An op's fate** (``fate(at)``, for an op due at ``at`` whose origin is
  this target): ``NEVER`` when the origin was dead at ``at`` (a dead
  process issues nothing, and its new life issues only what is due from
  its restart on); ``HOLD`` while it is paused, or when it is due after
  its restart began but the new life is not live yet (issued when it
  resumes or is live); otherwise ``ISSUE``.

Nothing here reads a clock or draws a random number: ``LinkCondition.passes``
takes the driver's seeded draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from enum import IntEnum

from protocol.nodes import COORDINATOR_ID
from protocol.plan import Fault, FaultKind, Plan

LINK_FAULTS = (FaultKind.PARTITION, FaultKind.LINK_DELAY, FaultKind.LINK_LOSS)
LIFE_FAULTS = (FaultKind.KILL_AGENT, FaultKind.CRASH_COORDINATOR, FaultKind.CRASH_REPLICA)
PAUSES = (FaultKind.PAUSE_AGENT, FaultKind.PAUSE_REPLICA)
PARTITIONS = (FaultKind.PARTITION, FaultKind.PARTITION_REPLICA)
REPLICA_FAULTS = (FaultKind.CRASH_REPLICA, FaultKind.PAUSE_REPLICA, FaultKind.PARTITION_REPLICA)


def crashes_coordinator(plan: Plan) -> bool:
    """Whether ``plan`` crashes a coordinator (whose journal must then be kept)."""
    return any(fault.kind == FaultKind.CRASH_COORDINATOR for fault in plan.faults)


def crashed_coordinators(plan: Plan) -> frozenset[str]:
    """The node ids of the coordinators ``plan`` crashes (the root's for ``node`` "")."""
    return frozenset(
        fault.node or COORDINATOR_ID
        for fault in plan.faults
        if fault.kind == FaultKind.CRASH_COORDINATOR
    )


CRASH_EVENT_ROOT = "coordinator"  # the node a crash of the root names in its events


def crash_event_node(node: str) -> str:
    """The node a crash's "injected" and "healed" events name: ``coordinator`` for
    the root (as in a flat run), else the tree node's id."""
    return CRASH_EVENT_ROOT if node in ("", COORDINATOR_ID) else node


class Effect(IntEnum):
    """What the driver must do after a step."""

    NONE = 0
    KILL = 1  # end the target's life now (SIGKILL; drop its state)
    CANCEL_RESTART = 2  # the process being started dies too; its held ops are never issued
    RESTART = 3  # start the target again; call ``live`` when it is ready
    PAUSE = 4  # stop the target (SIGSTOP; queue its messages, hold its ops and timers)
    RESUME = 5  # the last pause ended: handle what queued, in order
    LINKS = 6  # the target's link faults changed: apply ``link()``


class Fate(IntEnum):
    """What becomes of an op due while faults are in effect on its origin."""

    ISSUE = 0
    HOLD = 1
    NEVER = 2


class Step:
    """One injection or heal of the timeline."""

    __slots__ = ("at", "inject", "fault")

    def __init__(self, at: float, inject: bool, fault: Fault) -> None:
        self.at = at
        self.inject = inject
        self.fault = fault

    def __repr__(self) -> str:
        what = "inject" if self.inject else "heal"
        return f"Step({self.at}, {what}, fault {self.fault.fault_id})"


def timeline(faults: Iterable[Fault]) -> list[Step]:
    """Every injection and heal in time order: heals first at one instant, then by id."""
    steps = []
    for fault in faults:
        steps.append(Step(fault.at, True, fault))
        steps.append(Step(fault.end, False, fault))
    steps.sort(key=_step_order)
    return steps


def _step_order(step: Step) -> tuple[float, bool, int]:
    return (step.at, step.inject, step.fault.fault_id)


class LinkCondition:
    """The combined effect of the link faults in effect on one target."""

    __slots__ = ("partitioned", "loss", "delay")

    def __init__(self, partitioned: bool, loss: float, delay: float) -> None:
        self.partitioned = partitioned
        self.loss = loss
        self.delay = delay

    @property
    def clear(self) -> bool:
        return not self.partitioned and self.loss == 0.0 and self.delay == 0.0

    def passes(self, draw: Callable[[], float]) -> float | None:
        """The extra delay of one message, or None when it is dropped. ``draw`` (a
        seeded uniform draw in [0, 1)) is called once, and only when loss is in effect."""
        if self.partitioned:
            return None
        if self.loss > 0.0 and draw() < self.loss:
            return None
        return self.delay


CLEAR = LinkCondition(False, 0.0, 0.0)


def combine(faults: Iterable[Fault]) -> LinkCondition:
    """The combined condition of link ``faults`` (see the module docstring)."""
    partitioned = False
    kept = 1.0
    delay = 0.0
    any_fault = False
    for fault in faults:
        any_fault = True
        if fault.kind in PARTITIONS:
            partitioned = True
        elif fault.kind == FaultKind.LINK_LOSS:
            kept *= 1.0 - fault.loss
        elif fault.kind == FaultKind.LINK_DELAY:
            delay += fault.delay
    if not any_fault:
        return CLEAR
    return LinkCondition(partitioned, 1.0 - kept, delay)


def between(a: Target, b: Target) -> LinkCondition:
    """The condition of the link between two replicas: their link faults combined."""
    if not a.links and not b.links:
        return CLEAR
    return combine([*a.links, *b.links])


class Target:
    """The faults in effect on one target (module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dead = False
        self.restarting = False
        self.restart_at = math.inf  # when the restart under way began
        self.life = 0  # bumped by every kill: a stale restart sees it changed
        self.pauses: set[int] = set()  # fault ids of the pauses in effect
        self.links: list[Fault] = []  # link faults in effect, in injection order
        self.down: list[list[float]] = []  # [died, issuing again from] spans, in order
        self._link = CLEAR

    @property
    def paused(self) -> bool:
        return bool(self.pauses)

    @property
    def alive(self) -> bool:
        """Live and not paused: it runs."""
        return not self.dead and not self.pauses

    def link(self) -> LinkCondition:
        """The combined condition of the link faults in effect."""
        return self._link

    def inject(self, fault: Fault, at: float) -> Effect:
        """``fault`` starts at ``at``: what the driver must do."""
        kind = fault.kind
        if kind in LIFE_FAULTS:
            if self.dead:
                if not self.restarting:
                    return Effect.NONE
                self.restarting = False
                self.restart_at = math.inf
                self.life += 1
                return Effect.CANCEL_RESTART
            self.dead = True
            self.life += 1
            self.pauses.clear()
            self.down.append([at, math.inf])
            return Effect.KILL
        if kind in PAUSES:
            if self.dead:
                return Effect.NONE
            self.pauses.add(fault.fault_id)
            return Effect.PAUSE if len(self.pauses) == 1 else Effect.NONE
        self.links.append(fault)
        self._link = combine(self.links)
        return Effect.LINKS

    def heal(self, fault: Fault, at: float) -> Effect:
        """``fault`` ends at ``at``: what the driver must do."""
        kind = fault.kind
        if kind in LIFE_FAULTS:
            if self.dead and not self.restarting:
                self.restarting = True
                self.restart_at = at
                return Effect.RESTART
            return Effect.NONE
        if kind in PAUSES:
            if fault.fault_id not in self.pauses:
                return Effect.NONE  # it hit a dead target, or a kill ended it
            self.pauses.discard(fault.fault_id)
            return Effect.NONE if self.pauses else Effect.RESUME
        self.links.remove(fault)
        self._link = combine(self.links)
        return Effect.LINKS

    def live(self, life: int) -> bool:
        """The restart begun in ``life`` is ready: True when it is current (the target
        is live again and issues what is due from the restart on), False when stale."""
        if life != self.life or not self.dead or not self.restarting:
            return False
        self.dead = self.restarting = False
        self.down[-1][1] = self.restart_at
        self.restart_at = math.inf
        return True

    def fate(self, at: float) -> Fate:
        """What becomes of an op due at ``at`` whose origin is this target, now."""
        if self.restarting and at >= self.restart_at:
            return Fate.HOLD
        if self.dead or self.down_at(at):
            return Fate.NEVER
        if self.pauses:
            return Fate.HOLD
        return Fate.ISSUE

    def down_at(self, when: float) -> bool:
        """True when the target was dead at ``when`` (before its restart began)."""
        for died, back in reversed(self.down):
            if died <= when < back:
                return True
            if back <= when:
                return False
        return False

"""One agent over one link, driven by greenlets: the Locust user's engine.

How it works. ``GreenAgent`` holds a ``protocol.agent.Agent`` (the same sans-IO
core the asyncio workers and the model run) and one link to the coordinator
(``real.locust.links``: a TCP socket, or a WebSocket to the portal's gateway).
It is written for gevent: under Locust, sockets and ``time.sleep`` are gevent's,
so a blocking call yields to the other users. It never imports the asyncio
driver.

- ``start`` has the core say hello on the link, and spawns two greenlets: the
  reader (every ``recv`` is fed to a ``RoutedDecoder``; each frame goes to
  ``Agent.receive`` with ``now`` read per read, then one flush) and the timer
  (sleeps until the core's ``next_deadline``, or until a flush moves it
  earlier, then ``Agent.on_timer``).
- ``flush`` drains the core and writes its messages as routed frames in one
  ``send``, under a lock: a send can yield mid-write, and two greenlets must
  never interleave their bytes on one stream.
- ``replay(ops, t0)`` is open loop, as the asyncio workers replay: it sleeps
  until each op's time ``t0 + op.at`` on the core clock and issues it with that
  time as ``due`` (``protocol.workload.issue``), never waiting for a reply, so
  latency counts from the schedule and coordinated omission stays corrected.
  An op already ``shed_after`` late is refused at the door by the core.
- ``records(t0, limit)`` is what the run needs from this agent, on plan time
  (seconds since ``t0``): completions, accepted and shed op ids, memory history.

The core clock is ``clock()``: seconds since a shared ``epoch`` on the wall
clock (``time.time``), so every process of one host stamps on one time base.
Across hosts it is as good as the hosts' clock sync (docs/scale-out.md).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from protocol.agent import Agent, memory_until
from protocol.codec import encode_body
from protocol.envelope import RoutedDecoder, encode_routed, node_id_bytes
from protocol.nodes import COORDINATOR_ID
from protocol.plan import AgentSpec, Operation
from protocol.settings import ProtocolSettings
from protocol.workload import issue
from real.locust.links import Link

IDLE_WAIT = 0.5  # s the timer greenlet sleeps when the core has no deadline
YIELD_EVERY = 0.002  # s a replay that is behind runs before it lets the others run


class GreenAgent:
    """One agent core on one link (module docstring)."""

    def __init__(
        self, spec: AgentSpec, settings: ProtocolSettings, epoch: float, spawn: Any, lock: Any
    ) -> None:
        """``spawn`` starts a greenlet (``gevent.spawn``), ``lock`` is a fresh
        ``gevent.lock.Semaphore``; ``epoch`` is the wall-clock zero of the core clock."""
        self.spec = spec
        self.agent = Agent(
            spec.agent_id, COORDINATOR_ID, settings, spec.capabilities, spec.subscriptions
        )
        self.settings = settings
        self.epoch = epoch
        self._spawn = spawn
        self._lock = lock
        self._link: Link | None = None
        self._node = node_id_bytes(spec.agent_id)
        self._decoder = RoutedDecoder()
        self._wake: Callable[[], None] = lambda: None
        self._on_refused: Callable[[], None] = lambda: None
        self.registered_at: float | None = None
        self.errors: list[str] = []
        self.closed = False
        self.greenlets: list[Any] = []

    def clock(self) -> float:
        return time.time() - self.epoch

    def start(
        self,
        link: Link,
        on_welcome: Callable[[float], None],
        on_refused: Callable[[], None] = lambda: None,
    ) -> None:
        """Say hello on ``link`` (``real.locust.links``: tcp, or the portal's
        WebSocket gateway), and start reading and timing. ``on_welcome`` gets the
        time of the coordinator's welcome; ``on_refused`` is called if it rejects
        the agent instead (a wrong token, say: ``errors`` says why)."""
        self._link = link
        self._on_welcome = on_welcome
        self._on_refused = on_refused
        self.agent.start(self.clock())
        self.flush()
        self.greenlets = [self._spawn(self._read), self._spawn(self._time)]

    def flush(self) -> None:
        """Drain the core and write its messages in one ``sendall`` (under the lock)."""
        out = self.agent.drain()
        if self.registered_at is None and self.agent.registered:
            self.registered_at = self.clock()
            self._on_welcome(self.registered_at)
        if self.agent.rejected is not None and not self.errors:
            self.errors.append(f"{self.spec.agent_id} rejected: {self.agent.rejected}")
            self._on_refused()
        if out and self._link is not None and not self.closed:
            data = b"".join(encode_routed(self._node, encode_body(msg)) for _dst, msg in out)
            with self._lock:
                try:
                    self._link.send(data)
                except OSError as exc:
                    self._lost(f"write failed: {exc}")
        self._wake()

    def _read(self) -> None:
        link = self._link
        assert link is not None
        while not self.closed:
            try:
                data = link.recv()
            except OSError as exc:
                self._lost(f"read failed: {exc}")
                return
            if not data:
                self._lost("closed by the coordinator")
                return
            now = self.clock()
            try:
                for _node, msg in self._decoder.feed(data):
                    self.agent.receive(COORDINATOR_ID, msg, now)
            except Exception as exc:  # a core bug or a bad frame: the run is invalid
                self.errors.append(f"{self.spec.agent_id}: {exc!r}")
                self._lost("read error")
                return
            self.flush()

    def _time(self) -> None:
        import gevent.event

        woken = gevent.event.Event()

        def wake() -> None:
            woken.set()

        self._wake = wake
        while not self.closed:
            deadline = self.agent.next_deadline()
            wait = IDLE_WAIT if deadline is None else deadline - self.clock()
            if wait > 0:
                woken.clear()
                woken.wait(min(wait, IDLE_WAIT))
                continue
            self.agent.on_timer(self.clock())
            self.flush()

    def replay(self, ops: Sequence[Operation], t0: float) -> int:
        """Issue ``ops`` open loop at ``t0 + op.at`` (core clock); how many were issued
        late by more than a millisecond."""
        late = 0
        yielded = self.clock()
        for op in ops:
            due = t0 + op.at
            wait = due - self.clock()
            if wait > 0 or self.clock() - yielded > YIELD_EVERY:  # when behind, still
                time.sleep(max(0.0, wait))  # let readers and timers (heartbeats) run
                yielded = self.clock()
            now = self.clock()
            if now - due > 0.001:
                late += 1
            issue(self.agent, op, now, due)
            self.flush()
        return late

    def records(self, t0: float, limit: float) -> dict[str, Any]:
        """This agent's records on plan time (module docstring), as plain lists."""
        agent = self.agent
        return {
            "agent": self.spec.agent_id,
            "completions": [
                (c.op_id, c.node, c.at - t0, c.duplicate, c.intact)
                for c in agent.completions
                if c.at <= limit
            ],
            "accepted": list(agent.accepted),
            "shed": list(agent.shed),
            "memory": [
                tuple(call._replace(invoked=call.invoked - t0, returned=call.returned - t0))
                for call in memory_until(agent, limit)
            ],
            "registered": None if self.registered_at is None else self.registered_at - t0,
            "errors": list(self.errors) + list(agent.errors),
        }

    def _lost(self, why: str) -> None:
        if not self.closed:
            self.closed = True
            self.errors.append(f"{self.spec.agent_id}: link lost ({why})")

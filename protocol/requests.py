"""An agent's requests to its coordinator: an adaptive window, retries, Busy and shedding.

Requests (publish, direct, broadcast, task submit, memory) enter a local
queue. At most ``limit`` of them are in flight (sent, not yet answered); the
rest wait locally, where they cost the coordinator nothing. An answer
(``Accepted`` or ``MemReply``) frees a slot and the next queued request goes
out.

Admission control, in the client (as Google SRE's client-side throttling
and Netflix's adaptive concurrency limits do it). ``limit`` adapts between
1 and ``request_window`` from the round trips of first sends (Karn's rule:
a resent request is never a sample). It starts at ``INITIAL_LIMIT`` and,
like TCP's slow start, grows by one per answer (doubling per round trip)
until the first sign of a queue. After that, a round trip more than
``delay_target`` above the smallest one seen means a queue is standing
somewhere between this agent and the coordinator, so the limit shrinks by
a fifth, at most once per round trip; any other answer grows it by
``1 / limit`` (one per window of answers). ``Busy`` halves it. So under
overload the excess waits here instead of in the coordinator's socket
buffers, where it would delay everybody's heartbeats and acks.

A new request is refused at the door, shed before it is even built, when the
queue already holds more than the window can send within ``shed_after`` at
the measured round trip (``admits``): work that cannot start in time is not
taken on. Queued requests are served oldest first, but once the oldest has
waited ``delay_target`` the queue is *standing* and the newest goes first
(adaptive LIFO): under overload the work that is admitted is fresh, and the
old work is shed. A request that has waited ``shed_after`` (only time while
the link is open counts: a request queued while the coordinator is away
waits for it) is given up: it goes to ``shed``, is never sent again, and
counts as neither delivered nor lost. Only requests that the coordinator
never accepted are shed: queued ones, and ones it refused with ``Busy``. One
in flight (sent, unanswered) may have been accepted, so it is resent, never
shed; and when an earlier copy of a refused request turns out to have been
accepted (its ``Accepted`` comes after the ``Busy``, or even after it was
shed: a duplicate or a retransmission overtook the refusal), it counts as
answered: it leaves the queue, and the agent records it as accepted (an op
both shed and accepted counts as accepted).

An in-flight request that is not answered within the adaptive timeout
(``protocol.retransmit``) is resent. One timer serves the window, as TCP's
serves a connection: requests in flight are kept in the order they were last
sent, with that time, and the timer fires when the oldest may have expired.
A timeout backs off the timeout of every request (so a resend waits twice as
long) and shrinks the window, each once per timeout, since round trips too
long to sample (Karn's rule) are the strongest sign of a queue.

A ``Busy`` answer puts the refused request back at the head of the queue
and pauses *all* sending for ``retry_after``, doubling per consecutive
refusal up to ``max_busy_backoff``; any acceptance resets the doubling.
"""

from __future__ import annotations

from collections import deque

from protocol.messages import Broadcast, Direct, MemRequest, Publish, TaskSubmit
from protocol.retransmit import RtoEstimator, backoff
from protocol.settings import ProtocolSettings

Request = Publish | Direct | Broadcast | TaskSubmit | MemRequest
INF = float("inf")
INITIAL_LIMIT = 64  # requests in flight before any round trip was measured
DECREASE = 0.8  # the limit's factor on a round trip over the target
STRAY_LIMIT = 4096  # shed requests remembered in case a stray copy is accepted after all
MIN_RTT_SAMPLES = 1000  # the smallest round trip is forgotten after this many samples


class RequestWindow:
    """The requests of one agent that are queued, in flight or being retried."""

    def __init__(self, settings: ProtocolSettings) -> None:
        self.settings = settings
        self.window = settings.request_window
        self.limit = float(min(INITIAL_LIMIT, settings.request_window))
        self._slow_start = True  # until the first sign of a queue: +1 per answer
        self.open = False
        # in flight: the request and when it was last sent, oldest send first
        self.inflight: dict[int, tuple[Request, float]] = {}
        self.queue: deque[tuple[Request, float]] = deque()  # (request, queued at)
        self.paused_until: float | None = None
        self.refusals = 0
        self.shed: list[int] = []
        self._out: list[Request] = []
        self._timer_due = INF  # the retransmission timer: the oldest send's timeout
        self._resent: set[int] = set()  # in flight and sent more than once: no RTT sample
        self._queued_at: dict[int, float] = {}  # in flight: when first queued
        self._busy: dict[int, Request] = {}  # refused with Busy, not yet answered or shed
        self._kept: set[int] = set()  # maybe accepted by a coordinator since lost: never shed
        self._stray: dict[int, Request] = {}  # shed after being sent, newest STRAY_LIMIT
        self._rto = RtoEstimator(settings.request_timeout, settings.max_rto)
        self._min_rtt = INF
        self._min_samples = 0
        self._next_min_rtt = INF
        self._decreased_at = -INF
        self._shed_after = settings.shed_after if settings.shed_after > 0 else INF

    def __len__(self) -> int:
        return len(self.inflight) + len(self.queue)

    @property
    def ready(self) -> bool:
        """Whether ``take`` has requests to send."""
        return bool(self._out)

    def take(self) -> list[Request]:
        """Requests to send now."""
        out, self._out = self._out, []
        return out

    def admits(self, arrived: float, now: float) -> bool:
        """Whether a new request that arrived at ``arrived`` can be queued. While
        the link is open it is refused at the door when it has already waited
        ``shed_after`` (its generator fell behind), or when the queue holds more
        than this window can send within ``shed_after`` at the round trip
        measured; so the caller need not even build it."""
        if not self.open:
            return True
        if arrived + self._shed_after <= now:
            return False
        if not self.queue:
            return True
        srtt = self._rto.srtt
        if srtt is None or srtt <= 0:
            return True
        return len(self.queue) * srtt < self.limit * self._shed_after

    def refuse(self, op_id: int) -> None:
        """Shed ``op_id`` at the door (``admits`` said no): it is never queued."""
        self.shed.append(op_id)

    def submit(self, request: Request, now: float) -> None:
        self.queue.append((request, now))
        self._pump(now)

    def resume(self, request: Request) -> None:
        """Put an answered request in flight again (an agent's task submitted again
        after a fail-over): ``reopen`` resends it, and it is never shed."""
        self.inflight[request.op_id] = (request, -INF)
        self._kept.add(request.op_id)

    def close(self) -> None:
        """The link is (re)starting: send nothing until ``reopen``. What is in flight
        may have been accepted by the coordinator just lost (its answer lost with
        it): it is never shed, even if the next coordinator refuses it with ``Busy``."""
        self.open = False
        self._kept.update(self.inflight)

    def reopen(self, now: float) -> None:
        """Registered (again): resend what was in flight, then fill the window.

        Queued requests get their full ``shed_after`` again: the time the
        link was down is not the coordinator refusing them.
        """
        self.open = True
        self.queue = deque((request, max(at, now)) for request, at in self.queue)
        for request, _ in list(self.inflight.values()):
            self._send(request, now, retry=True)
        self._pump(now)

    def answered(self, op_id: int, now: float) -> Request | None:
        """``op_id`` was answered; returns the request, or None for a repeat answer."""
        self._kept.discard(op_id)
        entry = self.inflight.pop(op_id, None)
        if entry is None:
            return self._late_answer(op_id)
        request, sent = entry
        self._busy.pop(op_id, None)
        self._rto.answer(op_id, now)
        if op_id not in self._resent:  # sent once: a round-trip sample (Karn)
            self._adapt(now - sent, now)
        self._forget(op_id)
        self.refusals = 0
        self._pump(now)
        return request

    def refused(self, op_id: int, retry_after: float, now: float) -> None:
        """``op_id`` was refused for flow control: requeue it and pause sending."""
        entry = self.inflight.pop(op_id, None)
        if entry is None:
            return
        request = entry[0]
        self._rto.cancel(op_id)
        queued_at = self._queued_at.pop(op_id, now)
        self._forget(op_id)
        self.queue.appendleft((request, queued_at))
        self._busy[op_id] = request
        wait = backoff(retry_after, self.refusals, self.settings.max_busy_backoff)
        self.refusals += 1
        self.limit = max(1.0, self.limit / 2)
        self._slow_start = False
        self.paused_until = max(self.paused_until or now, now + wait)
        self._shed_expired(now)

    def on_timer(self, now: float) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
        self._pump(now)
        if now >= self._timer_due:
            self._timer_due = INF
            self._resend_expired(now)

    def _resend_expired(self, now: float) -> None:
        """The retransmission timer fired: resend every request in flight for the
        timeout or longer, oldest first, and set the timer for the oldest left.
        One timer serves the window, as TCP's serves a connection; it rests while
        the link is closed (``reopen`` resends everything)."""
        inflight = self.inflight
        if not self.open or not inflight:
            return
        timeout = self._rto.rto
        expired = []
        for request, sent in inflight.values():
            if sent + timeout > now:
                break  # sent in order: the rest are younger
            expired.append(request)
        if expired:
            self._timed_out(now)
            for request in expired:
                self._send(request, now, retry=True)
        self._arm(next(iter(inflight.values()))[1])

    def _timed_out(self, now: float) -> None:
        """A request went unanswered for a timeout: the path is congested (or lossy).
        The timeout backs off for every request, and the window shrinks, each at
        most once per timeout, as TCP does on a retransmission timeout."""
        self._slow_start = False
        if now - self._decreased_at >= self._rto.rto:
            self.limit = max(1.0, self.limit * DECREASE)
            self._decreased_at = now
        self._rto.expired(now)

    def next_deadline(self) -> float | None:
        due: float | None = self._timer_due if self._timer_due != INF else None
        pause = self.paused_until
        if pause is not None and (due is None or pause < due):
            due = pause
        if self.queue and self.open:
            shed = self.queue[0][1] + self._shed_after  # the oldest one's shed time (inf: never)
            if shed != INF and (due is None or shed < due):
                due = shed
        return due

    # --- the window ---------------------------------------------------------------

    def _adapt(self, rtt: float, now: float) -> None:
        """Grow or shrink ``limit`` from one round-trip sample."""
        if rtt < self._next_min_rtt:
            self._next_min_rtt = rtt
        self._min_samples += 1
        if rtt < self._min_rtt:
            self._min_rtt = rtt
        elif self._min_samples >= MIN_RTT_SAMPLES:  # let the floor rise with the load's path
            self._min_rtt, self._next_min_rtt = self._next_min_rtt, INF
            self._min_samples = 0
        if rtt > self._min_rtt + self.settings.delay_target:
            self._slow_start = False
            if now - self._decreased_at >= rtt:
                self.limit = max(1.0, self.limit * DECREASE)
                self._decreased_at = now
        elif self.limit < self.window:
            step = 1.0 if self._slow_start else 1.0 / self.limit
            self.limit = min(float(self.window), self.limit + step)

    def _shed_expired(self, now: float) -> None:
        """Give up the queued requests that have waited ``shed_after``.

        The head is the oldest, except after ``Busy`` requeued a request taken
        from the tail; older ones behind it are then shed once it is.
        """
        queue = self.queue
        shed_after = self._shed_after
        kept = self._kept
        while queue and queue[0][1] + shed_after <= now:  # the sum next_deadline gives
            if kept and queue[0][0].op_id in kept:
                request, _ = queue.popleft()
                queue.append((request, now))  # it waits its turn again, never shed
                continue
            op_id = queue.popleft()[0].op_id
            sent = self._busy.pop(op_id, None)
            if sent is not None:  # a stray copy may still be accepted: remember it a while
                self._stray[op_id] = sent
                if len(self._stray) > STRAY_LIMIT:
                    del self._stray[next(iter(self._stray))]
            self.shed.append(op_id)

    def _late_answer(self, op_id: int) -> Request | None:
        """An answer for a request not in flight: a repeat (None), or the acceptance
        of an earlier copy of one since refused with ``Busy`` or shed. That one
        was accepted after all: take it out of the queue so it is neither sent
        again nor shed, and return it so the agent records the answer."""
        request = self._busy.pop(op_id, None)
        if request is not None:
            self.queue = deque(entry for entry in self.queue if entry[0].op_id != op_id)
            self.refusals = 0
            return request
        return self._stray.pop(op_id, None)

    def _pump(self, now: float) -> None:
        if not self.open:
            return
        self._shed_expired(now)
        if self.paused_until is not None:
            return
        queue = self.queue
        inflight = self.inflight
        limit = self.limit
        standing_since = now - self.settings.delay_target
        queued_at = self._queued_at
        while queue and len(inflight) < limit:
            standing = queue[0][1] < standing_since
            request, at = queue.pop() if standing else queue.popleft()
            queued_at[request.op_id] = at
            self._send(request, now, retry=False)

    def _send(self, request: Request, now: float, retry: bool) -> None:
        """Send, put in flight (at the back: the youngest send) and make sure the
        timer is armed.

        A first send is timed for the round-trip estimate; a resend is not
        (Karn's rule). The timeout has backed off already if this is a resend
        (``_timed_out``).
        """
        op_id = request.op_id
        self._out.append(request)
        inflight = self.inflight
        if retry:
            self._rto.cancel(op_id)
            self._resent.add(op_id)
            inflight.pop(op_id, None)
        else:
            self._rto.start(op_id, now)
        inflight[op_id] = (request, now)
        if self._timer_due == INF:
            self._arm(now)

    def _arm(self, sent: float) -> None:
        """Set the timer for a request sent at ``sent``, the oldest in flight."""
        self._timer_due = sent + self._rto.rto

    def _forget(self, op_id: int) -> None:
        self._queued_at.pop(op_id, None)
        self._resent.discard(op_id)

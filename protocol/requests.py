"""An agent's requests to its coordinator: a send window, retries and Busy pacing.

Requests (publish, direct, broadcast, task submit, memory) enter a local
FIFO queue. At most ``request_window`` of them are in flight (sent, not yet
answered); the rest wait locally, where they cost the coordinator nothing.
An answer (``Accepted`` or ``MemReply``) frees a slot and the next queued
request goes out.

An in-flight request that is not answered within the adaptive timeout
(``protocol.retransmit``) is resent, waiting twice as long each time.

A ``Busy`` answer puts the refused request back at the head of the queue
and pauses *all* sending for ``retry_after``, doubling per consecutive
refusal up to ``max_busy_backoff``; any acceptance resets the doubling.
Pausing the whole agent, not just the refused request, is what keeps an
overloaded coordinator from spending its time refusing retries: the offered
load above capacity waits in the agents' queues (and its latency, measured
from the schedule, shows it) instead of circling the network.
"""

from __future__ import annotations

from collections import deque

from protocol.messages import Broadcast, Direct, MemRequest, Publish, TaskSubmit
from protocol.retransmit import RetryHeap, RtoEstimator, backoff
from protocol.settings import ProtocolSettings

Request = Publish | Direct | Broadcast | TaskSubmit | MemRequest


class RequestWindow:
    """The requests of one agent that are queued, in flight or being retried."""

    def __init__(self, settings: ProtocolSettings) -> None:
        self.settings = settings
        self.window = settings.request_window
        self.open = False
        self.inflight: dict[int, Request] = {}
        self.queue: deque[Request] = deque()
        self.paused_until: float | None = None
        self.refusals = 0
        self._out: list[Request] = []
        self._due: dict[int, float] = {}
        self._attempts: dict[int, int] = {}
        self._retries: RetryHeap[tuple[float, int]] = RetryHeap()
        self._rto = RtoEstimator(settings.request_timeout, settings.max_rto)

    def __len__(self) -> int:
        return len(self.inflight) + len(self.queue)

    def take(self) -> list[Request]:
        """Requests to send now."""
        out, self._out = self._out, []
        return out

    def submit(self, request: Request, now: float) -> None:
        self.queue.append(request)
        self._pump(now)

    def close(self) -> None:
        """The link is (re)starting: send nothing until ``reopen``."""
        self.open = False

    def reopen(self, now: float) -> None:
        """Registered (again): resend what was in flight, then fill the window."""
        self.open = True
        for request in list(self.inflight.values()):
            self._send(request, now, retry=True)
        self._pump(now)

    def answered(self, op_id: int, now: float) -> Request | None:
        """``op_id`` was answered; returns the request, or None for a repeat answer."""
        request = self.inflight.pop(op_id, None)
        if request is None:
            return None
        self._rto.answer(op_id, now)
        self._forget(op_id)
        self.refusals = 0
        self._pump(now)
        return request

    def refused(self, op_id: int, retry_after: float, now: float) -> None:
        """``op_id`` was refused for flow control: requeue it and pause sending."""
        request = self.inflight.pop(op_id, None)
        if request is None:
            return
        self._rto.cancel(op_id)
        self._forget(op_id)
        self.queue.appendleft(request)
        wait = backoff(retry_after, self.refusals, self.settings.max_busy_backoff)
        self.refusals += 1
        self.paused_until = max(self.paused_until or now, now + wait)

    def on_timer(self, now: float) -> None:
        if self.paused_until is not None and now >= self.paused_until:
            self.paused_until = None
            self._pump(now)
        for due, op_id in self._retries.pop_due(now):
            request = self.inflight.get(op_id)
            if request is not None and self._due.get(op_id) == due and self.open:
                self._send(request, now, retry=True)

    def next_deadline(self) -> float | None:
        retry = self._retries.next_due()
        pause = self.paused_until
        if pause is None:
            return retry
        return pause if retry is None or pause < retry else retry

    def _pump(self, now: float) -> None:
        if not self.open or self.paused_until is not None:
            return
        queue = self.queue
        inflight = self.inflight
        while queue and len(inflight) < self.window:
            request = queue.popleft()
            inflight[request.op_id] = request
            self._send(request, now, retry=False)

    def _send(self, request: Request, now: float, retry: bool) -> None:
        """Send and arm the one live retry (older heap entries go stale).

        A first send is timed for the round-trip estimate; a resend is not
        (Karn's rule) and waits twice as long as the previous one.
        """
        op_id = request.op_id
        self._out.append(request)
        if retry:
            self._rto.cancel(op_id)
            attempt = self._attempts.get(op_id, 0) + 1
            self._attempts[op_id] = attempt
        else:
            self._rto.start(op_id, now)
            attempt = 0
        due = now + backoff(self._rto.rto, attempt, self.settings.max_rto)
        self._due[op_id] = due
        self._retries.push(due, (due, op_id))

    def _forget(self, op_id: int) -> None:
        self._due.pop(op_id, None)
        self._attempts.pop(op_id, None)

"""The availability prober: probes on a schedule, the run's one status request, and
what came back, for every driver.

A run measures uptime by probing the coordinator. Node ``PROBER_ID`` sends
``Probe(k)`` at ``(k - 1) * interval`` for ``k = 1, 2, ...`` while that time
is before the plan's duration, and a probe is answered when its
``ProbeReply`` comes back (``ProbeResult``: sent, answered or None). At
``plan.status_at`` it sends the run's one ``StatusRequest``; the parts of
its ``StatusReply`` are joined (``protocol.status.StatusParts``) into
``status``, and a ``Reject`` is kept as ``status_refused``. A probe the
coordinator never saw (it was down, or the link died) stays unanswered.

The drivers keep time and move the messages:

- ``next_probe_at()`` is when the next probe is due (None once the last was
  sent); ``probe(now)`` returns it and records it as sent at ``now``;
- ``status_at`` is when to ask for the status, ``status_request()`` the
  request (recorded as asked);
- ``receive(msg, now)`` takes anything sent to the prober and returns True
  when it settled something: a probe answered for the first time, the
  status complete, or refused. A duplicate, a reply to another request or an
  unknown probe id settles nothing;
- ``settled`` is True when every probe sent is answered and the status, if
  asked, is complete or refused;
- ``retry(now)``: with a replicated coordinator, when the replica the prober
  was talking to refused it as not the leader or its link died, the probes
  to send again to the next one: those still unanswered whose deadline has
  not passed, each at most ``PROBE_TRIES`` times in all: at once to a leader
  the refusal named, after ``RETRY_PAUSE`` otherwise (an election may be
  under way; the driver keeps that time). So a probe is what a
  client's request is: it follows a redirect and fails over within its own
  deadline, and uptime is the share of moments at which a client was served
  in time, not the share that happened to pick the leader.

Nothing here reads a clock.
"""

from __future__ import annotations

from typing import Any

from protocol.messages import (
    Message,
    Probe,
    ProbeReply,
    Reject,
    StatusReply,
    StatusRequest,
    leader_hint,
)
from protocol.plan import STATUS_REQUEST_ID, Plan
from protocol.records import ProbeResult
from protocol.status import StatusParts

PROBE_TRIES = 5  # sends of one probe at most
RETRY_PAUSE = 0.005  # s before a probe goes again to a replica nobody named as leader


def retry_pause(named_leader: bool) -> float:
    """How long a driver waits before ``Prober.retry``: none when a refusal named the
    leader, ``RETRY_PAUSE`` otherwise (an election may be under way, or a replica died)."""
    return 0.0 if named_leader else RETRY_PAUSE


class Prober:
    """One run's availability probes and status request (module docstring)."""

    def __init__(self, plan: Plan) -> None:
        self.interval = plan.probe_interval
        self.deadline = plan.probe_deadline
        self.duration = plan.duration
        self.token = plan.settings.token
        self.status_at: float | None = plan.status_at
        self.results: list[ProbeResult] = []
        self.status: dict[str, Any] | None = None
        self.status_refused: str | None = None
        self.asked = False
        self._parts = StatusParts(STATUS_REQUEST_ID)
        self._answered = 0
        self._tries: dict[int, int] = {}  # probe id: sends, for the probes sent again
        self._open = 0  # results before this index are answered or past their deadline

    def next_probe_at(self) -> float | None:
        """When the next probe is due, or None: every probe has been sent."""
        if self.interval <= 0:
            return None
        at = len(self.results) * self.interval
        return at if at < self.duration else None

    def probe(self, now: float) -> Probe:
        """The next probe, recorded as sent at ``now``."""
        probe_id = len(self.results) + 1
        self.results.append(ProbeResult(probe_id, now, None))
        return Probe(probe_id)

    def retry(self, now: float) -> list[Probe]:
        """The probes to send again to another replica (module docstring), each
        counted as one more try."""
        results = self.results
        while self._open < len(results) and (
            results[self._open].answered is not None
            or now - results[self._open].sent >= self.deadline
        ):
            self._open += 1
        again: list[Probe] = []
        for sent in results[self._open :]:
            tries = self._tries.get(sent.probe_id, 1)
            if sent.answered is None and now - sent.sent < self.deadline and tries < PROBE_TRIES:
                self._tries[sent.probe_id] = tries + 1
                again.append(Probe(sent.probe_id))
        return again

    def status_request(self) -> StatusRequest:
        """The run's status request, recorded as asked."""
        self.asked = True
        return StatusRequest(STATUS_REQUEST_ID, self.token)

    def receive(self, msg: Message, now: float) -> bool:
        """Take a reply sent to the prober; True when it settled a probe or the status."""
        if type(msg) is ProbeReply:
            return self._answer(msg.probe_id, now)
        if self.status is not None or self.status_refused is not None:
            return False
        if type(msg) is StatusReply:
            whole = self._parts.add(msg)
            if whole is None:  # another request's, or more parts to come
                return False
            self.status = whole
            return True
        if type(msg) is Reject:
            if leader_hint(msg.reason) is not None:
                return False  # a replica that does not lead: the driver asks another
            self.status_refused = msg.reason
            return True
        return False

    def _answer(self, probe_id: int, now: float) -> bool:
        if not 1 <= probe_id <= len(self.results):
            return False
        sent = self.results[probe_id - 1]
        if sent.answered is not None:
            return False
        self.results[probe_id - 1] = sent._replace(answered=now)
        self._answered += 1
        return True

    @property
    def settled(self) -> bool:
        """Every probe sent is answered, and the status, if asked, has come or was refused."""
        status_done = not self.asked or self.status is not None or self.status_refused is not None
        return status_done and self._answered == len(self.results)

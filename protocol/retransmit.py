"""Retransmission timing: an adaptive timeout and a heap of due retries.

``RtoEstimator`` is TCP's (RFC 6298, Jacobson/Karels): it keeps a smoothed
round-trip time and its variation from samples, and the timeout is
``srtt + 4 * rttvar``, never below the configured minimum or above the
maximum. Only one message is timed at a time and a retransmitted message
is never timed (Karn's rule), so queueing delay raises the timeout instead
of triggering retransmissions that would add load to an overloaded node:
without this, a system pushed past capacity collapses into resending.

A path whose messages time out backs off as a whole (``expired``): its
timeout doubles, at most once per timeout, and stays doubled until a fresh
sample, as TCP keeps a backed-off timer. The coordinator keeps one
estimator per agent link, so a slow agent's deliveries are retried less
often (one retry storm cannot feed on itself) while other agents' are not.

``backoff(rto, attempt)`` also doubles the timeout per retry of the same
message; ``next_reconnect_wait`` does the same for an agent's reconnect
attempts, between ``reconnect_min`` and ``reconnect_max``, and
``ReconnectBackoff`` says when a lost link's back-off starts again from the
minimum (the link was healthy, a refusal named the leader, or a live replica
knew no leader yet). ``RetryHeap``
orders pending retries by due time; entries are never removed early, the
owner checks when an entry pops whether it still matters.
"""

from __future__ import annotations

import heapq
from typing import Generic, TypeVar

from protocol.settings import ProtocolSettings

T = TypeVar("T")
MAX_BACKOFFS = 6  # a path's timeout doubles at most this often (64 x), capped by maximum


class RtoEstimator:
    """Smoothed RTT and the retransmission timeout derived from it."""

    __slots__ = (
        "minimum",
        "maximum",
        "srtt",
        "rttvar",
        "timed_key",
        "timed_at",
        "backoffs",
        "backed_off_at",
        "rto",
    )

    def __init__(self, minimum: float, maximum: float) -> None:
        self.minimum = minimum
        self.maximum = maximum
        self.srtt: float | None = None
        self.rttvar = 0.0
        self.timed_key: object = None
        self.timed_at = 0.0
        self.backoffs = 0
        self.backed_off_at = float("-inf")
        self.rto = min(maximum, minimum)  # the timeout now; kept current by _update

    def _update(self) -> None:
        base = self.minimum if self.srtt is None else max(self.minimum, self.srtt + 4 * self.rttvar)
        self.rto = min(self.maximum, base * (1 << self.backoffs))

    def expired(self, now: float) -> None:
        """Something sent over this path timed out: double the timeout for everything
        sent from now on, at most once per timeout, until a fresh sample (RFC 6298
        5.5 and 5.7, per path: a burst of expiries is one congestion event)."""
        if now - self.backed_off_at >= self.rto and self.backoffs < MAX_BACKOFFS:
            self.backoffs += 1
            self.backed_off_at = now
            self._update()

    def start(self, key: object, now: float) -> None:
        """Time ``key`` if nothing is being timed."""
        if self.timed_key is None:
            self.timed_key = key
            self.timed_at = now

    def cancel(self, key: object) -> None:
        """``key`` was retransmitted: its answer would be ambiguous (Karn)."""
        if self.timed_key == key:
            self.timed_key = None

    def answer(self, key: object, now: float) -> None:
        """``key`` was answered: take a sample if it was the timed one."""
        if self.timed_key != key:
            return
        self.timed_key = None
        self.backoffs = 0
        sample = now - self.timed_at
        if self.srtt is None:
            self.srtt = sample
            self.rttvar = sample / 2
        else:
            self.rttvar = 0.75 * self.rttvar + 0.25 * abs(self.srtt - sample)
            self.srtt = 0.875 * self.srtt + 0.125 * sample
        self._update()


def backoff(rto: float, attempt: int, maximum: float) -> float:
    """The timeout for retry number ``attempt`` (0 = first send)."""
    factor: float = 2.0 ** min(attempt, 16)
    return min(maximum, rto * factor)


def next_reconnect_wait(settings: ProtocolSettings, wait: float | None = None) -> float:
    """The wait before an agent's next reconnect attempt: ``reconnect_min`` first,
    then double the previous ``wait``, at most ``reconnect_max``."""
    if wait is None:
        return settings.reconnect_min
    return min(2 * wait, settings.reconnect_max)


ELECTION_PATIENCE = 4  # refusals naming no leader met at the minimum wait before doubling


class ReconnectBackoff:
    """One agent link's reconnect back-off, the same rule in the real worker and
    the model. After a link closes (``lost``) the next attempt waits
    ``reconnect_min`` when the link had served registered agents until then
    (``healthy``) or a replica's refusal named the leader; a replica that refused
    naming no leader is alive and an election is under way, so the first
    ``ELECTION_PATIENCE`` such refusals in a row also wait the minimum; anything
    else, and every connect that fails (``failed``: the replica is down), doubles
    the last wait, at most ``reconnect_max``."""

    def __init__(self, settings: ProtocolSettings) -> None:
        self.settings = settings
        self.wait = settings.reconnect_min
        self.unnamed = 0  # refusals naming no leader in a row

    def lost(self, healthy: bool, hint: str | None) -> float:
        """The link closed; ``hint`` is ``protocol.messages.leader_hint`` of the
        refusal that closed it (None: no refusal). The wait before the next attempt."""
        if healthy or hint:
            self.unnamed = 0
            self.wait = self.settings.reconnect_min
        elif hint == "" and self.unnamed < ELECTION_PATIENCE:
            self.unnamed += 1
            self.wait = self.settings.reconnect_min
        else:
            self.wait = next_reconnect_wait(self.settings, self.wait)
        return self.wait

    def failed(self) -> float:
        """A connect failed; the wait before the next attempt."""
        self.wait = next_reconnect_wait(self.settings, self.wait)
        return self.wait


class RetryHeap(Generic[T]):
    """Pending retries ordered by due time (ties by insertion order)."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, T]] = []
        self._seq = 0

    def __len__(self) -> int:
        return len(self._heap)

    def push(self, due: float, item: T) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, item))

    def next_due(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[T]:
        """Every item due at or before ``now``, earliest first."""
        heap = self._heap
        items = []
        while heap and heap[0][0] <= now:
            items.append(heapq.heappop(heap)[2])
        return items

"""Protocol tunables shared by the coordinator and agent state machines.

One frozen dataclass, filled in by the harness from the scenario's
``protocol:`` section and passed unchanged to both drivers, so the real
system and the model run with the same timers and windows.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from hmac import compare_digest

DEV_TOKEN = "swarmtwin-dev-token"  # public: in the docs and the source
TOKEN_ENV = "SWARMTWIN_TOKEN"  # where `swarmtwin agents` reads its token, off the command line


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    """Timers are in seconds, windows in messages.

    ``ack_timeout`` and ``request_timeout`` are the *minimum* retransmission
    timeouts of the coordinator and of agents; the live timeout adapts to
    measured round trips (``protocol.retransmit``) and backs off per retry up
    to ``max_rto``. A ``Busy`` answer is retried after ``busy_retry``,
    doubling per consecutive refusal up to ``max_busy_backoff``, and an
    agent has at most ``request_window`` requests in flight.

    Admission control (``protocol.requests``, ``protocol.bus``) keeps the
    latency of admitted work near ``delay_target``. An agent's window of
    requests in flight adapts between 1 and ``request_window``: it shrinks
    when a request's round trip exceeds the smallest seen by more than
    ``delay_target`` (or on ``Busy``) and grows back by one per window of
    answers otherwise. A request that has waited ``shed_after`` in the
    agent's queue, counting only time the agent could send, is given up:
    *shed*, never sent again, neither delivered nor lost (0 disables it).
    The coordinator answers ``Busy`` to an op for a live agent whose backlog
    has not emptied for ``delay_target`` (a standing queue, as CoDel sees it).

    ``durable_bus`` makes a persisting coordinator (tcp) hold ``Accepted``
    until the op is in its database, so accepted messages and tasks survive
    a coordinator crash (``protocol.journal``); it costs a commit per batch.
    ``reconnect_min``/``reconnect_max`` bound an agent's reconnect backoff.
    A failed agent's deliveries are held (bounded by ``Busy``) until it
    returns or ``session_expiry`` passes, when they are dropped.

    Limits that keep one client from growing the coordinator's memory without
    bound, each refused with a reply rather than by dropping anything: an
    agent follows at most ``max_subscriptions`` patterns (``Error``, or
    ``Reject`` for a ``Hello`` carrying more); the memory store holds at most
    ``max_memory_keys`` keys and ``max_memory_bytes`` bytes (value plus
    namespace and key text), and a value has at most ``max_value_bytes``
    (a write beyond them is answered ``MemReply(ok=False)`` and not applied).

    An agent runs one task at a time; ``task_slots`` is how many it may hold at
    once (running and waiting at it; 0: no limit, each task going to the capable
    agent holding the fewest). Tasks beyond wait at the coordinator, where a tree
    can move them (below); tasks held by an agent stay with it, as a prefetch
    does (Celery's ``prefetch_multiplier``, Dask's worker saturation).

    ``task_placement`` says how a tree of coordinators places tasks
    (``protocol.stealing``): ``steal`` (run where submitted; idle subtrees steal
    from loaded ones), ``central`` (every task climbs to the root, which hands it
    to a subtree with a free slot) or ``local`` (run where submitted, no
    stealing). A flat coordinator places every task the same way.
    """

    token: str = DEV_TOKEN
    heartbeat_interval: float = 0.5
    failure_after: float = 1.5
    ack_timeout: float = 1.0
    request_timeout: float = 2.0
    credit: int = 256
    max_backlog: int = 4096
    busy_retry: float = 0.01
    max_busy_backoff: float = 1.0
    request_window: int = 64
    delay_target: float = 0.01
    shed_after: float = 0.03
    max_rto: float = 10.0
    durable_bus: bool = False
    reconnect_min: float = 0.01
    reconnect_max: float = 0.5
    session_expiry: float = 30.0
    max_subscriptions: int = 1024
    max_memory_keys: int = 1_000_000
    max_memory_bytes: int = 1 << 30
    max_value_bytes: int = 1 << 18
    task_slots: int = 0
    task_placement: str = "steal"

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is the shared token (compared in constant time)."""
        return compare_digest(token.encode(), self.token.encode())

    def bind_refusal(self, host: str) -> str:
        """Why a server must not listen on ``host`` with these settings ("" if it may):
        a host other machines can reach needs a secret token, not the public default."""
        if self.token != DEV_TOKEN or is_loopback(host):
            return ""
        return (
            f"{host} is reachable from other machines: choose a secret token first "
            "(the default token is public)"
        )


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # a name other than localhost may resolve anywhere

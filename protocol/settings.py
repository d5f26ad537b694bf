"""Protocol tunables shared by the coordinator and agent state machines.

One frozen dataclass, filled in by the harness from the scenario's
``protocol:`` section and passed unchanged to both drivers, so the real
system and the model run with the same timers and windows.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ProtocolSettings:
    """Timers are in seconds, windows in messages."""

    token: str = "swarmtwin-dev-token"
    heartbeat_interval: float = 0.5
    failure_after: float = 1.5
    ack_timeout: float = 1.0
    request_timeout: float = 2.0
    credit: int = 256
    max_backlog: int = 4096
    busy_retry: float = 0.01

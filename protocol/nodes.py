"""The node ids every driver and tool agrees on.

A node id is a plain string (``protocol.messages``). Two are well known: the
coordinator's, which every agent's messages go to, and the availability
prober's, which sends ``Probe`` and ``StatusRequest`` without registering.
Agents take any other id (the harness names them ``agent-00000`` and so on;
``protocol.links`` names the link nodes of a multiplexing process).
"""

from __future__ import annotations

COORDINATOR_ID = "coord"
PROBER_ID = "probe-0"

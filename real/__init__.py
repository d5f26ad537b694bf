"""swarmtwin's real driver: the sans-IO core on asyncio, in one process or over TCP.

``real.inproc.run.run_plan`` runs the coordinator and every agent on one event
loop, connected by direct calls through per-node inboxes. ``real.tcp.run``
runs a coordinator server process and agent worker processes on loopback.
"""

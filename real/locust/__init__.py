"""Load from Locust: each Locust user is one swarmtwin agent, driven by greenlets.

``greenagent`` is one agent core on one gevent socket; ``locustfile`` is the
Locust side (users, and the master's and workers' custom messages); ``run`` is
the driver ``swarmtwin locust`` calls (docs/scale-out.md).
"""

"""swarmtwin's model: the sans-IO protocol core on a SimPy clock.

``run_plan(plan, calibration, progress=None) -> DriverResult`` replays a
plan with every node (the coordinator and each agent) modelled as a
single-server FIFO queue whose service times, timer costs and network hop
delays come from a ``Calibration`` (``sim.calibration``; measured by
``harness/calibrate/measure.py``). ``last_stats()`` returns the simulator's own
counters for the last run in this process, as a dict: ``messages`` (every
message delivered to a node), ``timers`` (timer jobs served),
``wall_seconds`` (the whole ``run_plan``), ``run_wall_seconds`` (the main
event loop only) and ``messages_per_wall_s``.

Modules: ``distribution`` (quantile tables and seeded inverse-CDF sampling),
``calibration`` (the JSON calibration file and how one is chosen),
``engine`` (servers, message arrivals, timers), ``faults`` (the plan's fault
timeline: kills, pauses, a coordinator crash and restart, bad links),
``driver`` (registration, workload, probes, stopping, the result).

The engine (the per-message hot path) may run compiled by mypyc, as
``protocol`` may (``native``): a fresh build's folder is searched first.
"""

from native.select import compiled_dir

_compiled = compiled_dir(__path__[0])
if _compiled is not None:
    __path__.insert(0, _compiled)

from sim.calibration import Calibration, load_calibration, save_calibration  # noqa: E402
from sim.distribution import Distribution  # noqa: E402
from sim.driver import last_stats, run_plan  # noqa: E402

__all__ = [
    "Calibration",
    "Distribution",
    "last_stats",
    "load_calibration",
    "run_plan",
    "save_calibration",
]

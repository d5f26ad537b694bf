"""Where the model's independent runs go: a local process pool or a Dask cluster.

How it works. ``sweep_executor(cluster, workers)`` is a context manager that
yields a ``concurrent.futures.Executor``:

- without ``cluster``, a ``ProcessPoolExecutor`` of ``workers`` processes on
  this machine (the default; Python's default start method, so no resource
  tracker process outlives it);
- with ``cluster``, the address of a Dask scheduler (``tcp://host:8786``),
  ``distributed.Client(cluster).get_executor()``: ``map`` and ``submit`` send
  each job to the cluster's workers and bring its result back.

A job is a module-level function of plain, picklable data (a scenario as a
dict, a replication number, a ``Calibration`` resolved here rather than a
path that may not exist on another host), so it goes to either the same way.
The model is deterministic for a plan, a calibration and a seed, so where a
job ran does not change what it predicts; ``tests/harness/test_sweep.py``
runs the same points on both and compares every figure but the simulator's
own wall time. A Dask worker must have swarmtwin installed at the same
commit (``swarmtwin --version`` names it); docs/scale-out.md says how.

``local_workers()`` is how many processes the local pool gets (every CPU this
process may use); ``describe(cluster, workers)`` names where the runs go.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager

CONNECT_TIMEOUT = 10.0  # s to reach a Dask scheduler before giving up


class ClusterError(RuntimeError):
    """The Dask scheduler at ``--cluster`` could not be reached."""


@contextmanager
def sweep_executor(cluster: str | None, workers: int) -> Iterator[Executor]:
    """An executor for independent model runs (module docstring); shut down on exit."""
    if cluster is None:
        with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
            yield pool
        return
    from distributed import Client

    try:
        client = Client(cluster, timeout=CONNECT_TIMEOUT, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise ClusterError(f"cannot reach the Dask scheduler at {cluster}: {exc}") from exc
    try:
        with client.get_executor(pure=False) as executor:
            yield executor
    finally:
        client.close()


def local_workers() -> int:
    """Processes for the model on this machine: every CPU this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def describe(cluster: str | None, workers: int) -> str:
    """Where the runs go, in words."""
    if cluster is None:
        return f"{workers} local processes"
    return f"the Dask cluster at {cluster}"

"""The Locust driver: a plan replayed by Locust users against a real tcp coordinator.

How it works. ``run_plan(plan, processes)`` starts the coordinator in a child
process, as the asyncio tcp driver does (``real.tcp.children.ServerProcess``),
writes a job file (the plan, the coordinator's port, the wall-clock epoch of
the core clock and where the records go) and runs Locust headless on
``real/locust/locustfile.py`` as a subprocess: ``--users`` and
``--spawn-rate`` the plan's agent count (one user per agent, plus any HTTP
users), ``--processes P`` for P worker processes beside the master, whose
master listens on loopback (none: one local process), and Locust's ``--csv``
and ``--html`` into ``out_dir``. When every agent is welcomed, the master
writes ``t0`` (the load's start on the shared clock) to ``go.json``; this
driver then probes the coordinator from that instant
(``real.tcp.prober.TcpProber``), so uptime is measured as for every tcp run.
Locust ends when the master has every user's records, or at ``--run-time``.

``master`` (``Master``): the users run on Locust workers on other hosts
(``run_worker`` there, ``swarmtwin locust --worker``). The coordinator and
Locust's master listen on the master's address, the plan's token is the given
one, and Locust's master waits for the workers, which fetch the job over
Locust's messages (``real.locust.job``). ``portal`` (``Portal``): the web portal
is served beside the coordinator for the run, on its address; the agents join
through its WebSocket gateway, or HTTP users send the memory ops to its API.

The records (per agent: completions, accepted and shed op ids, the memory
history, on plan time; and each Locust process's CPU) become one
``DriverResult("real", "tcp")``, whose summary, run folder and history row are
those of any run (``harness.run.runner`` with ``driver=``). Missing agents'
records, a Locust that failed, a worker that refused the job or an agent's
error make the run invalid, with the reason.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import os
import pickle
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from importlib.metadata import version
from pathlib import Path
from typing import Any

from protocol.plan import Plan
from protocol.records import Completion, DriverResult, MemCall, ProcessUsage
from protocol.settings import TOKEN_ENV
from real.clock import RunClock, new_event_loop
from real.locust.job import DEFAULT_MASTER_PORT, JOB_ENV
from real.tcp.children import ChildProcesses, ServerProcess
from real.tcp.prober import TcpProber
from real.usage import own_usage

LOOPBACK = "127.0.0.1"
LOCUSTFILE = Path(__file__).with_name("locustfile.py")  # never imported here: it patches
# the process for gevent (``locust`` does on import), which would hang this one's threads
START_GRACE = 30.0  # s for the users to spawn, connect and register
STOP_GRACE = 15.0  # s past the plan's end for the records to reach the master


@dataclass(frozen=True)
class Master:
    """A master for Locust workers on other hosts (``swarmtwin locust --master``):
    the coordinator and Locust's master listen on ``host`` (the address the workers
    reach), Locust's master on ``port``; the load waits for ``workers`` workers, at
    most ``wait`` seconds. The coordinator's ``token`` replaces the plan's (a
    non-loopback ``host`` needs a secret one); each worker brings its own."""

    host: str
    workers: int
    token: str
    port: int = DEFAULT_MASTER_PORT
    wait: float = 120.0


# (host, coordinator port, token) -> an ``async with`` that serves the portal attached
# to that coordinator and yields its agents' gateway URL: the harness's ``portal_gateway``
Gateway = Callable[[str, int, str], AbstractAsyncContextManager[str]]


@dataclass(frozen=True)
class Portal:
    """The web portal beside the coordinator (``serve``, the harness's
    ``portal_gateway``): ``agents`` join through its WebSocket gateway rather than
    on tcp; ``http_users`` Locust users send the plan's memory ops to its HTTP API
    rather than the agents (0: none)."""

    serve: Gateway
    agents: bool = False
    http_users: int = 0


def run_plan(
    plan: Plan,
    processes: int = 0,
    out_dir: Path | None = None,
    master: Master | None = None,
    portal: Portal | None = None,
) -> DriverResult:
    """Replay ``plan`` through Locust (module docstring); ``processes`` 0: one process;
    ``master``: the users run on workers elsewhere, none here; ``portal``: the web
    portal is served beside the coordinator, and some or all load goes through it."""
    loop = new_event_loop()  # uvloop, as the other real drivers' loops
    try:
        return loop.run_until_complete(_run(plan, processes, out_dir, master, portal))
    finally:
        loop.close()


def locust_command(
    plan: Plan,
    processes: int,
    run_time: float,
    out: Path,
    master: Master | None = None,
    http_users: int = 0,
) -> list[str]:
    users = str(len(plan.agents) + http_users)
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless"]
    command += ["--users", users, "--spawn-rate", users, "--run-time", f"{math.ceil(run_time)}s"]
    command += ["--stop-timeout", "1", "--loglevel", "WARNING", "--only-summary"]
    command += ["--csv", str(out / "locust"), "--html", str(out / "locust.html")]
    if master is not None:
        command += ["--master", "--master-bind-host", master.host]
        command += ["--master-bind-port", str(master.port)]
        command += ["--expect-workers", str(master.workers)]
        command += ["--expect-workers-max-wait", str(math.ceil(master.wait))]
    elif processes > 0:  # Locust's master on loopback, on a free port: not on every address
        port = str(free_port())
        command += ["--processes", str(processes), "--master-bind-host", LOOPBACK]
        command += ["--master-bind-port", port, "--master-host", LOOPBACK, "--master-port", port]
    return command + ["SwarmAgent", *(["PortalHttpUser"] if http_users else [])]


def worker_command(master_host: str, master_port: int, processes: int) -> list[str]:
    """Locust worker processes for a master on another host (``swarmtwin locust --worker``)."""
    command = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--worker"]
    command += ["--master-host", master_host, "--master-port", str(master_port)]
    command += ["--loglevel", "WARNING"]
    if processes > 0:
        command += ["--processes", str(processes)]
    return command


def run_worker(
    master_host: str, master_port: int, processes: int, token: str, timeout: float
) -> int:
    """Run Locust workers until their master ends the run (at most ``timeout`` s);
    the exit code of Locust, or 124 at the timeout. Their agents present ``token``."""
    env = {k: v for k, v in os.environ.items() if k != JOB_ENV}
    env[TOKEN_ENV] = token  # in the environment, not in argv where ps shows it
    command = worker_command(master_host, master_port, processes)
    with subprocess.Popen(command, env=env, start_new_session=True) as process:
        try:
            return process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return 124
        finally:
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)


def free_port() -> int:
    """A TCP port free on loopback now (for Locust's master)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


async def _run(
    plan: Plan,
    processes: int,
    out_dir: Path | None,
    master: Master | None,
    portal: Portal | None,
) -> DriverResult:
    wall = time.perf_counter()
    if master is not None:
        plan = dataclasses.replace(
            plan, settings=dataclasses.replace(plan.settings, token=master.token)
        )
    result = DriverResult("real", "tcp")
    children = ChildProcesses()
    with tempfile.TemporaryDirectory(prefix="swarmtwin-locust-") as scratch:
        out = out_dir or Path(scratch)
        out.mkdir(parents=True, exist_ok=True)
        records_path = os.path.join(scratch, "records.pickle")
        try:
            host = LOOPBACK if master is None else master.host
            server = await ServerProcess.start(children, plan.settings, host=host)
            token = plan.settings.token
            serving = portal.serve(host, server.port, token) if portal else nullcontext()
            async with serving as url:
                job = {
                    "plan": plan,
                    "host": host,
                    "port": server.port,
                    "gateway": url if portal and portal.agents else None,
                    "portal": url and url.replace("ws://", "http://").removesuffix("/ws/agent"),
                    "http_users": portal.http_users if portal else 0,
                    "epoch": time.time(),
                    "output": records_path,
                    "go": os.path.join(scratch, "go.json"),
                }
                await _locust(job, processes, out, master, scratch, result)
            usage, report = await server.stop()
            if usage is not None:
                result.processes.insert(0, usage)
            if report is not None:
                result.notes.append(f"coordinator: {report.stats}, {report.flushes} flushes")
        finally:
            children.reap()
            result.notes.extend(children.notes)
        _merge(result, plan, records_path)
    users = len(plan.agents)
    if master is not None:
        where = f"{master.workers} Locust worker processes elsewhere (master on {master.host})"
    else:
        where = f"{processes} worker processes" if processes else "one process"
    via = " through the portal's WebSocket gateway" if portal and portal.agents else ""
    result.notes.insert(
        0, f"load: Locust {version('locust')}, {users} users (one per agent) on {where}{via}"
    )
    if portal and portal.http_users:
        result.notes.insert(
            1,
            f"the memory ops went through the portal's HTTP API, from {portal.http_users} "
            "Locust HTTP users (POST /api/system/memory), not from their agents",
        )
    result.processes.append(own_usage("harness"))
    result.wall_seconds = time.perf_counter() - wall
    return result


async def _locust(
    job: dict[str, Any],
    processes: int,
    out: Path,
    master: Master | None,
    scratch: str,
    result: DriverResult,
) -> None:
    """Run Locust on ``job`` until its master quits (or its run time is up), probing
    the coordinator from ``t0`` into ``result``."""
    plan: Plan = job["plan"]
    job_path = os.path.join(scratch, "job.pickle")
    with open(job_path, "wb") as handle:
        pickle.dump(job, handle)
    waiting = 0.0 if master is None else master.wait  # for the workers elsewhere
    run_time = waiting + START_GRACE + plan.duration + plan.drain_timeout + STOP_GRACE
    env = {**os.environ, JOB_ENV: job_path}
    with open(out / "locust.log", "wb") as log:
        process = await asyncio.create_subprocess_exec(
            *locust_command(plan, processes, run_time, out, master, job["http_users"]),
            env=env,
            stdout=log,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
    spawned = time.perf_counter()
    probing = None
    try:
        address = (job["host"], job["port"])
        probing = await _probe_from_go(process, job["go"], job["epoch"], address, plan, waiting)
        code = await asyncio.wait_for(process.wait(), run_time + 30.0)
    except TimeoutError:
        result.errors.append("Locust did not end by its --run-time")
        code = None
    finally:  # Locust's master and its workers: one session, ended together
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    if code not in (0, None):
        result.notes.append(f"locust exited with {code} (locust.log in the run folder)")
    if probing is None:
        return
    task, prober = probing
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    result.probes = list(prober.core.results)
    result.status = prober.core.status
    result.spawn_at = spawned - prober.clock.t0  # Locust started, before t0


async def _probe_from_go(
    process: asyncio.subprocess.Process,
    go_path: str,
    epoch: float,
    address: tuple[str, int],
    plan: Plan,
    waiting: float,
) -> tuple[asyncio.Task[None], TcpProber] | None:
    """Wait for the master's ``go.json``; start probing at its ``t0``."""
    deadline = time.perf_counter() + waiting + START_GRACE
    while time.perf_counter() < deadline and process.returncode is None:
        t0 = _read_go(go_path)
        if t0 is not None:
            t0_perf = time.perf_counter() + (epoch + t0 - time.time())
            host, port = address
            prober = TcpProber(port, plan, RunClock(t0_perf), host=host)
            return asyncio.get_running_loop().create_task(prober.run()), prober
        await asyncio.sleep(0.01)
    return None


def _read_go(path: str) -> float | None:
    try:
        with open(path) as handle:
            return float(json.load(handle)["t0"])
    except (OSError, ValueError, KeyError):
        return None


def _merge(result: DriverResult, plan: Plan, path: str) -> None:
    """Every agent's records into ``result``; missing agents make it invalid."""
    try:
        with open(path, "rb") as handle:
            written: dict[str, Any] = pickle.load(handle)  # the master's, in our scratch
    except OSError:
        written = {}
    records: dict[str, dict[str, Any]] = written.get("agents", {})
    result.errors.extend(written.get("errors", []))
    missing = [spec.agent_id for spec in plan.agents if spec.agent_id not in records]
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        result.errors.append(f"no records from {len(missing)} agents ({shown})")
    history = result.mem_history
    assert history is not None
    workers: dict[str, int] = {}
    syncs: dict[str, tuple[float, float]] = {}
    processes: dict[str, tuple[float, int, float]] = {}  # Locust worker: CPU, RSS, load CPU
    late = 0
    for agent, data in sorted(records.items()):
        result.completions.extend(Completion(*row) for row in data["completions"])
        result.accepted.extend(data["accepted"])
        result.shed.extend(data["shed"])
        history.extend(MemCall(*row) for row in data["memory"])
        if data["registered"] is not None:
            result.registered[agent] = data["registered"]
        result.errors.extend(data["errors"])
        result.notes.extend(note for note in data.get("notes", ()) if note not in result.notes)
        worker = str(data.get("worker", "?"))
        workers[worker] = workers.get(worker, 0) + len(data["completions"])
        if "process" in data:  # its Locust process's CPU when it reported: keep the last
            cpu, rss, load = data["process"]
            seen = processes.get(worker, (0.0, 0, 0.0))
            processes[worker] = (max(seen[0], cpu), max(seen[1], rss), max(seen[2], load))
        late += int(data.get("late", 0))
        if "sync" in data:  # a worker elsewhere: its clock's offset from the master's
            syncs[worker] = data["sync"]
    if late:
        result.notes.append(f"{late:,} ops issued over 1 ms after their scheduled time")
    result.end_time = plan.duration + plan.drain_timeout
    if workers:
        counts = ", ".join(f"{n:,}" for _, n in sorted(workers.items()))
        result.notes.append(f"completions recorded per Locust worker: {counts}")
    for number, (_worker, (cpu, rss, load)) in enumerate(sorted(processes.items())):
        result.processes.append(ProcessUsage(f"locust worker {number}", rss, cpu, load))
    if syncs:
        shown = ", ".join(
            f"{offset * 1e3:+.2f} ms (within {error * 1e3:.2f})" for offset, error in syncs.values()
        )
        result.notes.append(f"Locust workers' clock offsets from the master's: {shown}")

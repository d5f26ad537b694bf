"""The locustfile: each Locust user is one swarmtwin agent replaying its share of a plan.

``swarmtwin locust`` (``real.locust.run``) writes a job file (the compiled plan,
the coordinator's address, the wall-clock epoch of the core clock, where to
write the records) and starts Locust on this file with ``SWARMTWIN_LOCUST_JOB``
naming it. The same module runs in the master and in every worker; the
messages between them are Locust's custom messages:

    user (worker) -> master   st_claim   {seq, kind}         which agent am I?
    master -> worker          st_agent   {seq, index}        plan.agents[index]
    user -> master            st_ready   {agent}             welcomed by the coordinator
    master -> every worker    st_go      {t0}                all N welcomed; start at t0
    user -> master            st_records {agent, ...}        at t0 + duration + drain
    master                    writes every user's records to the job's output, quits

A user that cannot join (no connection, or the coordinator rejects its agent)
sends its records with the reason before the load starts; the master then ends
the run at once, and the driver marks it invalid with that reason.

A worker on another host (``swarmtwin locust --worker --master-host H``) has no
job file; it first syncs its clock and fetches the job (``real.locust.job``):

    worker -> master          st_time    {seq, sent}         the master's clock?
    master -> worker          st_time    {seq, sent, now}
    worker -> master          st_job     {}                  the job, please
    master -> worker          st_job     {plan, host, port, epoch, digest, version, ...}
    worker -> master          st_refused {reason}            another build's job: the
                                                             run ends at once, invalid

Two user classes. ``SwarmAgent`` (``kind`` "agent") is one agent, on tcp or
through the portal's WebSocket gateway (``real.locust.links``). With HTTP users
in the job, ``PortalHttpUser`` (``kind`` "http") users send the plan's memory
ops to the portal's HTTP API instead of their agents (``real.locust.httpuser``),
each every n-th of them. Both classes have a ``fixed_count`` from the job, which
the master's Locust dispatches.

Each index is handed out by the master, once, in order, so the users of any
number of workers on any number of hosts cover the plan exactly. The
load starts only when every agent is registered, as the asyncio driver starts
it, and every user replays its ops open loop from the same ``t0``
(``real.locust.greenagent``). Records, not Locust's rounded statistics, are the
source of every figure: the run's summary is computed from them exactly as for
the asyncio driver. Locust's own statistics stay empty (no request events).
"""

from __future__ import annotations

import itertools
import json
import os
import pickle
import resource
import time
from collections import defaultdict
from typing import Any, NoReturn

import gevent
from gevent.event import AsyncResult
from gevent.lock import Semaphore
from locust import User, events, task
from locust.runners import MasterRunner, WorkerRunner

from protocol.plan import OpKind
from protocol.settings import TOKEN_ENV  # a remote worker's token: its own, not the master's
from real.locust.greenagent import GreenAgent
from real.locust.httpuser import HttpMemory
from real.locust.job import (
    JOB_ENV,
    SYNC_ROUNDS,
    JobRefused,
    best_offset,
    decode_job,
    encode_job,
)
from real.locust.links import TcpLink, WebSocketLink

GO_LEAD = 0.5  # s between the last welcome and t0
CLAIM_TIMEOUT = 60.0
JOB_TIMEOUT = 60.0  # s a remote worker waits for the master's job


def _with_ops(job: dict[str, Any]) -> dict[str, Any]:
    """Deal the plan's ops: by origin agent, and with HTTP users the memory ops
    to them instead (user ``i`` of ``n`` takes every ``n``-th, in time order)."""
    ops: dict[str, list[Any]] = defaultdict(list)
    http_users = job.get("http_users", 0)
    shares: list[list[Any]] = [[] for _ in range(http_users)]
    for op in job["plan"].operations:
        if http_users and op.kind == OpKind.MEMORY:
            shares[op.op_id % http_users].append(op)
        else:
            ops[op.origin].append(op)
    job["ops"] = ops
    job["http_ops"] = shares
    return job


def _load_job() -> dict[str, Any] | None:
    """The job file's job (the master, a local run, its forked workers); None on a
    worker started on its own, which asks the master for it."""
    path = os.environ.get(JOB_ENV)
    if not path:
        return None
    with open(path, "rb") as handle:
        job: dict[str, Any] = pickle.load(handle)  # our own file, written by real.locust.run
    return _with_ops(job)


JOB = _load_job()


class _Master:
    """The master's side: hands out agents, starts the load, gathers the records."""

    def __init__(self, environment: Any) -> None:
        self.environment = environment
        self.runner = environment.runner
        assert JOB is not None
        self.job = JOB
        self.plan = JOB["plan"]
        self.next = {"agent": 0, "http": 0}  # the next index to hand out, per user class
        self.users = len(self.plan.agents) + JOB.get("http_users", 0)  # records to await
        self.ready: set[str] = set()
        self.records: dict[str, Any] = {}
        self.workers: dict[str, str] = {}  # agent -> the worker that runs it
        self.went = False
        self.encoded: dict[str, Any] | None = None  # the job, for workers elsewhere
        self.errors: list[str] = []

    def claim(self, environment: Any, msg: Any) -> None:
        kind = msg.data.get("kind", "agent")
        index = self.next[kind]
        self.next[kind] += 1
        if kind == "agent" and index < len(self.plan.agents):
            self.workers[self.plan.agents[index].agent_id] = msg.node_id
        elif kind == "http":
            self.workers[http_name(index)] = msg.node_id
        self.runner.send_message(
            "st_agent", {"seq": msg.data["seq"], "index": index}, client_id=msg.node_id
        )

    def on_ready(self, environment: Any, msg: Any) -> None:
        self.ready.add(msg.data["agent"])
        if not self.went and len(self.ready) == len(self.plan.agents):
            self.went = True
            t0 = self.job["clock"]() + GO_LEAD
            with open(self.job["go"], "w") as handle:  # the driver's prober starts at t0
                json.dump({"t0": t0}, handle)
            self.runner.send_message("st_go", {"t0": t0})

    def on_time(self, environment: Any, msg: Any) -> None:
        reply = {**msg.data, "now": time.time()}
        self.runner.send_message("st_time", reply, client_id=msg.node_id)

    def on_job(self, environment: Any, msg: Any) -> None:
        if self.encoded is None:
            self.encoded = encode_job(self.job)
        self.runner.send_message("st_job", self.encoded, client_id=msg.node_id)

    def on_records(self, environment: Any, msg: Any) -> None:
        data = msg.data
        data["worker"] = self.workers.get(data["agent"], msg.node_id)
        self.records[data["agent"]] = data
        if not self.went and data["errors"]:  # an agent that could not join: no load
            self.errors.extend(data["errors"])
            self._finish()
        elif len(self.records) == self.users:
            self._finish()

    def on_refused(self, environment: Any, msg: Any) -> None:
        """A worker refused the job (another build): the run ends, invalid, at once."""
        self.errors.append(f"Locust worker {msg.node_id} refused the job: {msg.data['reason']}")
        self._finish()

    def _finish(self) -> None:
        with open(self.job["output"], "wb") as handle:
            pickle.dump({"agents": self.records, "errors": self.errors}, handle)
        gevent.spawn_later(0.1, self.runner.quit)


class _Worker:
    """A worker's side: answers its users' claims and the go."""

    def __init__(self, environment: Any) -> None:
        self.runner = environment.runner
        self.seq = itertools.count()
        self.claims: dict[int, AsyncResult] = {}
        self.go: AsyncResult = AsyncResult()
        self.times: dict[int, AsyncResult] = {}
        self.job: AsyncResult = AsyncResult()  # the master's st_job data
        self.ready: AsyncResult = AsyncResult()  # the decoded job
        if JOB is not None:
            self.ready.set(JOB)

    def claim(self, kind: str = "agent") -> int:
        seq = next(self.seq)
        waiter = self.claims[seq] = AsyncResult()
        self.runner.send_message("st_claim", {"seq": seq, "kind": kind})
        index: int = waiter.get(timeout=CLAIM_TIMEOUT)
        return index

    def on_agent(self, environment: Any, msg: Any) -> None:
        waiter = self.claims.pop(msg.data["seq"], None)
        if waiter is not None:
            waiter.set(msg.data["index"])

    def on_go(self, environment: Any, msg: Any) -> None:
        self.go.set(msg.data["t0"])

    def fetch_job(self) -> None:
        """A worker without a job file: sync the clock with the master, then get
        the job (module docstring); a job it refuses stops this worker."""
        global JOB
        samples = []
        for seq in range(SYNC_ROUNDS):
            waiter = self.times[seq] = AsyncResult()
            self.runner.send_message("st_time", {"seq": seq, "sent": time.time()})
            data = waiter.get(timeout=JOB_TIMEOUT)
            samples.append((data["sent"], data["now"], time.time()))
        offset, error = best_offset(samples)
        self.runner.send_message("st_job", {})
        try:
            job = decode_job(self.job.get(timeout=JOB_TIMEOUT), os.environ.get(TOKEN_ENV, ""))
        except JobRefused as exc:
            self.runner.send_message("st_refused", {"reason": str(exc)})
            raise
        job["epoch"] -= offset  # this host's wall clock, shifted onto the master's
        job["sync"] = (offset, error)
        JOB = _with_ops(job)
        self.ready.set(JOB)

    def on_time(self, environment: Any, msg: Any) -> None:
        waiter = self.times.pop(msg.data["seq"], None)
        if waiter is not None:
            waiter.set(msg.data)

    def on_job(self, environment: Any, msg: Any) -> None:
        self.job.set(msg.data)


WORKER: _Worker | None = None


@events.init.add_listener
def _on_init(environment: Any, **_kwargs: Any) -> None:
    global WORKER
    runner = environment.runner
    if not isinstance(runner, WorkerRunner):  # the master, or a local runner
        if JOB is None:
            raise RuntimeError(f"{JOB_ENV} is not set: start the master with swarmtwin locust")
        epoch = JOB["epoch"]
        JOB["clock"] = lambda: time.time() - epoch
        master = _Master(environment)
        runner.register_message("st_claim", master.claim)
        runner.register_message("st_ready", master.on_ready)
        runner.register_message("st_records", master.on_records)
        runner.register_message("st_time", master.on_time)
        runner.register_message("st_job", master.on_job)
        runner.register_message("st_refused", master.on_refused)
    if not isinstance(runner, MasterRunner):  # a worker, or a local runner
        WORKER = _Worker(environment)
        runner.register_message("st_agent", WORKER.on_agent)
        runner.register_message("st_go", WORKER.on_go)
        if JOB is None:  # a worker on its own: the master has the job
            runner.register_message("st_time", WORKER.on_time)
            runner.register_message("st_job", WORKER.on_job)
            gevent.spawn(WORKER.fetch_job)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def http_name(index: int) -> str:
    return f"http-{index}"


def _wait_for_job(worker: _Worker) -> dict[str, Any] | None:
    try:
        job: dict[str, Any] = worker.ready.get(timeout=JOB_TIMEOUT + 10.0)
    except gevent.Timeout:
        return None  # no job (refused: the worker's log says why); the run is invalid
    return job


class _PlanUser(User):
    """What both user classes do around their work: get the job and an index of
    their ``kind`` from the master, and at the end report their records."""

    abstract = True
    kind = "agent"
    cpu_at_go = 0.0

    def _claim(self) -> tuple[_Worker, dict[str, Any], int]:
        worker = WORKER
        assert worker is not None
        job = _wait_for_job(worker)
        if job is None:
            self._idle()
        return worker, job, worker.claim(self.kind)

    def _report(self, worker: _Worker, job: dict[str, Any], records: dict[str, Any]) -> None:
        if "sync" in job:
            records["sync"] = job["sync"]
        cpu = _cpu_seconds()  # this Locust process's: so far, and since the load began
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        records["process"] = (cpu, peak, cpu - self.cpu_at_go)
        worker.runner.send_message("st_records", records)
        self._idle()

    def _idle(self) -> NoReturn:
        while True:  # until the master quits the run, which kills this greenlet
            gevent.sleep(3600)


class SwarmAgent(_PlanUser):
    """One swarmtwin agent (module docstring); its whole life is one task."""

    fixed_count = 0 if JOB is None else len(JOB["plan"].agents)  # the master's count rules

    @task
    def life(self) -> None:
        worker, job, index = self._claim()
        plan = job["plan"]
        if index >= len(plan.agents):  # more users than agents: this one idles
            self._idle()
        spec = plan.agents[index]
        agent = GreenAgent(spec, plan.settings, job["epoch"], gevent.spawn, Semaphore())
        runner = worker.runner

        def failed(why: str | None = None) -> None:  # before the load: the run ends, invalid
            records = agent.records(0.0, -1.0)
            if why is not None:
                records["errors"].append(f"{spec.agent_id}: {why}")
            runner.send_message("st_records", records)

        gateway = job.get("gateway")
        try:
            link = WebSocketLink(gateway) if gateway else TcpLink(job["host"], job["port"])
        except Exception as exc:  # noqa: BLE001 - any failure to connect ends the run
            where = gateway or f"{job['host']}:{job['port']}"
            failed(f"cannot connect to {where}: {exc!r}")
            self._idle()
        agent.start(
            link,
            lambda _at: runner.send_message("st_ready", {"agent": spec.agent_id}),
            failed,
        )
        t0: float = worker.go.get()
        self.cpu_at_go = _cpu_seconds()
        late = agent.replay(job["ops"][spec.agent_id], t0)
        end = t0 + plan.duration + plan.drain_timeout
        gevent.sleep(max(0.0, end - agent.clock()))
        self._report(worker, job, {**agent.records(t0, end), "late": late})


class PortalHttpUser(_PlanUser):
    """One user of the web portal's HTTP API: it sends its share of the plan's memory
    ops there (``real.locust.httpuser``), when the run has HTTP users."""

    fixed_count = 0 if JOB is None else JOB.get("http_users", 0)
    kind = "http"

    @task
    def life(self) -> None:
        worker, job, index = self._claim()
        if index >= job["http_users"]:
            self._idle()
        plan = job["plan"]
        token = plan.settings.token
        user = HttpMemory(http_name(index), job["portal"], token, job["epoch"], gevent.spawn)
        t0: float = worker.go.get()
        self.cpu_at_go = _cpu_seconds()
        late = user.replay(job["http_ops"][index], t0, gevent.sleep)
        end = t0 + plan.duration + plan.drain_timeout
        gevent.sleep(max(0.0, end - user.clock()))
        self._report(worker, job, {**user.records(t0, end), "late": late})

"""A tcp run whose coordinator or workers survived an exception is invalid.

Three ways an exception used to be only logged, each made to reach
``DriverResult.errors`` (``real.tcp.run``):

- the coordinator server's timer callback (``coordinator.on_timer``);
- a core error in a coordinator life that a crash fault SIGKILLed, whose
  report never arrives: the server writes each core error to its event log
  at once, and the run reads every life's log;
- a tcp worker's own loop callbacks (an agent's ``on_timer``, anything else
  on its loop): the worker reports them in ``WorkerResult.errors``.

The server and the worker run in this process, on one event loop, with a
core object wrapped so that one method raises once (the core is compiled,
so the wrapper stands in front of it). The killed life is a fork of this
process, SIGKILLed once its core error is in its event log.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import pytest

import real.tcp.server as server_module
import real.tcp.worker_process as worker_process
import real.tcp.workers as workers
from protocol.agent import Agent
from protocol.codec import encode_body
from protocol.envelope import encode_routed, node_id_bytes
from protocol.messages import Probe
from protocol.plan import AgentSpec
from protocol.records import DriverResult
from protocol.settings import ProtocolSettings
from real.clock import RunClock, new_event_loop
from real.tcp.children import Child
from real.tcp.framing import PipeChannel
from real.tcp.recordlog import read_events
from real.tcp.run import _merge_core_logs, _worker_errors, life_logs
from real.tcp.server import CORE_ERROR, CORE_ERROR_KIND, ServerReport, serve
from real.tcp.worker_process import WorkerResult, WorkerSpec, _run_worker
from real.tcp.workers import AgentHost

T = TypeVar("T")
SETTINGS = ProtocolSettings()
WAIT = 5.0  # the bound of every wait on a condition (none is expected to take long)


def run(coro_fn: Callable[[], Awaitable[T]]) -> T:
    loop = new_event_loop(False)
    try:
        return loop.run_until_complete(coro_fn())
    finally:
        loop.close()


class FailsOnce:
    """Stands in front of a core object; its method ``name`` raises the first time
    and counts the calls after that."""

    def __init__(self, core: Any, name: str) -> None:
        self._core = core
        self._name = name
        self.failed = False
        self.calls_after = 0

    def __getattr__(self, attr: str) -> Any:
        method = getattr(self._core, attr)
        if attr != self._name:
            return method

        def call(*args: Any) -> Any:
            if not self.failed:
                self.failed = True
                raise RuntimeError(f"injected {attr} failure")
            self.calls_after += 1
            return method(*args)

        return call


async def until(condition: Callable[[], bool], what: str) -> None:
    """Wait (polling, at most ``WAIT`` s) until ``condition()`` holds."""
    try:
        async with asyncio.timeout(WAIT):
            while not condition():
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"not within {WAIT} s: {what}") from None


def core_error_lines(path: Path) -> list[str]:
    return [e.node for e in read_events([str(path)], 0.0) if e.kind == CORE_ERROR_KIND]


async def start_server(event_log: Path) -> tuple[int, asyncio.Event, asyncio.Task[ServerReport]]:
    ports: asyncio.Queue[int] = asyncio.Queue()
    stop = asyncio.Event()
    task = asyncio.get_running_loop().create_task(
        serve(settings=SETTINGS, ready=ports.put_nowait, stop=stop, event_log=str(event_log))
    )
    return await ports.get(), stop, task


def wrap_coordinator(monkeypatch: pytest.MonkeyPatch, method: str) -> list[FailsOnce]:
    """Make the next servers' coordinators fail once in ``method``; the wrappers."""
    made: list[FailsOnce] = []

    def wrapped(core: Any) -> Any:
        made.append(FailsOnce(core, method))
        return made[-1]

    monkeypatch.setattr(server_module, "slow_coordinator", wrapped)
    return made


# --- 1. the coordinator server's timer ----------------------------------------------------


def test_an_exception_in_the_servers_timer_is_a_core_error_of_the_run(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    made = wrap_coordinator(monkeypatch, "on_timer")
    log = tmp_path / "coordinator.events.0"

    async def session() -> ServerReport:
        port, stop, server = await start_server(log)
        host = AgentHost("127.0.0.1", port, [AgentSpec("a1")], SETTINGS, 1, RunClock())
        host.start()
        await host.wait_registered(WAIT)  # the hello arms the core's failure sweep
        await until(lambda: made[0].failed, "the coordinator's timer fired")
        await until(lambda: made[0].calls_after > 0, "the timer was armed again")
        await host.close()
        stop.set()
        return await server

    report = run(session)
    assert report.core_errors == 1
    assert f"{CORE_ERROR} on a timer (logged)" in report.events
    assert core_error_lines(log) == [f"{CORE_ERROR} on a timer (logged)"]
    result = DriverResult("real", "tcp", end_time=1e9)
    _merge_core_logs(result, life_logs([str(log)]), 0.0)
    assert result.errors == ["coordinator: core error on a timer (logged)"]
    assert all(e.kind != CORE_ERROR_KIND for e in result.events)
    assert any(e.kind == "registered" and e.node == "a1" for e in result.events)


# --- 2. a coordinator life killed by a crash fault -------------------------------------


def _killed_life(conn: Any, event_log: str) -> None:
    """A forked coordinator life: serve until SIGKILLed (it never reports)."""

    async def main() -> None:
        await serve(settings=SETTINGS, ready=conn.send, event_log=event_log)

    run(main)


def test_the_core_errors_of_a_sigkilled_coordinator_life_reach_the_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    wrap_coordinator(monkeypatch, "receive")  # inherited by the fork
    first, second = tmp_path / "coordinator.events.0", tmp_path / "coordinator.events.1"
    ours, theirs = multiprocessing.Pipe()
    life = multiprocessing.get_context("fork").Process(
        target=_killed_life, args=(theirs, str(first)), daemon=True
    )
    life.start()
    try:
        assert ours.poll(WAIT), "the first life did not listen"
        port = int(ours.recv())

        async def poke() -> None:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(encode_routed(node_id_bytes("probe-x"), encode_body(Probe(1))))
            await writer.drain()
            await until(lambda: bool(core_error_lines(first)), "the core error in the log")
            writer.close()

        run(poke)
    finally:
        assert life.pid is not None
        os.kill(life.pid, signal.SIGKILL)  # the crash fault: no report from this life
        life.join(WAIT)
    assert life.exitcode == -signal.SIGKILL

    async def clean_life() -> ServerReport:
        port, stop, server = await start_server(second)
        host = AgentHost("127.0.0.1", port, [AgentSpec("a1")], SETTINGS, 1, RunClock())
        host.start()
        await host.wait_registered(WAIT)
        await host.close()
        stop.set()
        return await server

    monkeypatch.undo()  # the next life's core is sound
    report = run(clean_life)
    assert report.core_errors == 0 and not any(e.startswith(CORE_ERROR) for e in report.events)
    result = DriverResult("real", "tcp", end_time=1e9)
    _merge_core_logs(result, life_logs([str(first), str(second)]), 0.0)
    assert result.errors == ["coordinator: core error on a Probe from 'probe-x' (logged)"]
    assert any(e.node == "a1" for e in result.events)  # the later life's events are kept


# --- 3. a worker's own loop callbacks ------------------------------------------------------


def test_exceptions_in_a_workers_loop_are_reported_and_become_errors(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(worker_process, "tune_gc", lambda: "")  # this process's gc stays
    wrapped: list[FailsOnce] = []

    def agent(*args: Any, **kwargs: Any) -> Any:
        made = Agent(*args, **kwargs)
        if args[0] != "w0":
            return made
        wrapped.append(FailsOnce(made, "on_timer"))
        return wrapped[-1]

    monkeypatch.setattr(workers, "Agent", agent)

    def boom() -> None:
        raise ValueError("injected callback failure")

    async def session() -> tuple[WorkerResult | None, Any]:
        loop = asyncio.get_running_loop()
        port, stop, server = await start_server(tmp_path / "events")
        ours, theirs = multiprocessing.Pipe()
        parent, child = PipeChannel(ours), PipeChannel(theirs)
        spec = WorkerSpec(
            index=0,
            host="127.0.0.1",
            port=port,
            agents=(AgentSpec("w0"), AgentSpec("w1")),
            operations=(),
            settings=SETTINGS,
            connections=0,
            epoch=time.perf_counter(),
            duration=0.0,
            drain_timeout=WAIT,
            use_uvloop=False,
            log_dir=str(tmp_path),
        )
        worker = loop.create_task(_run_worker(spec, child))
        ready = await parent.get(timeout=WAIT)
        assert isinstance(ready, tuple) and ready[0] == "ready", ready
        parent.send(("go", time.perf_counter()))
        await until(lambda: wrapped[0].failed, "w0's heartbeat timer fired")
        after_boom = loop.create_future()
        loop.call_soon(boom)
        loop.call_soon(after_boom.set_result, None)  # callbacks run in order
        await after_boom
        parent.send("stop")
        async with asyncio.timeout(WAIT):
            result = await worker
        handler = loop.get_exception_handler()
        for channel in (parent, child):
            channel.close()
        stop.set()
        await server
        return result, handler

    result, handler = run(session)
    assert handler is None  # the worker put the loop's handler back
    assert result is not None
    injected = "RuntimeError('injected on_timer failure')"
    assert result.errors[0] == f"core error on a timer of 'w0': {injected}"
    assert len(result.errors) == 2 and "injected callback failure" in result.errors[1]
    assert "w1" in result.registered  # the other agent went on
    pool = [Child("worker-0", cast(Any, None), cast(Any, None))]
    errors = _worker_errors(pool, [result])
    assert errors == [f"worker-0: {error}" for error in result.errors]

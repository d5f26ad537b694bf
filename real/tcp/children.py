"""The child processes of a tcp run: how they start, what they run, how they are reaped.

Children are started like ``multiprocessing``'s "spawn" (a fresh
interpreter: no inherited event loop, sockets or locks) but with
``subprocess`` running ``python -c CHILD_BOOT ROOT FD NAME``: the child puts
this checkout first on ``sys.path``, wraps the inherited end of a
``multiprocessing.Pipe`` (``pass_fds``) and reads its role and arguments as
the first message (``child_main``: "coordinator", "worker" or "proxy").
Unlike ``multiprocessing.Process`` this never re-imports the caller's
``__main__`` (a script without a ``__main__`` guard still works, and
pytest's entry point is not re-imported per child) and starts no
``resource_tracker`` helper, so the only children are the run's own.

No orphans: ``ChildProcesses`` remembers every child it ever started,
including the earlier lives of restarted ones. ``reap`` closes every pipe
(a child whose pipe closes stops by itself), sends SIGCONT to any child a
fault left stopped, joins each process with a timeout, then terminates and
finally kills any that remain, noting each one it had to kill.

``ServerProcess`` is the coordinator child. ``kill`` SIGKILLs it (a fault)
and ``restart`` starts a new one on the same port and database; the new
process binds with SO_REUSEADDR and retries while the port is busy.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from protocol.records import ProcessUsage
from protocol.settings import ProtocolSettings
from real.clock import new_event_loop
from real.tcp.framing import PipeChannel
from real.tcp.server import DEFAULT_HOST, ServerReport, serve
from real.tcp.worker_process import run_worker
from real.usage import own_usage

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHILD_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[1]); "
    "from real.tcp.children import child_main; sys.exit(child_main(sys.argv[2:]))"
)
SERVER_START_TIMEOUT = 30.0
JOIN_TIMEOUT = 5.0
RESTART_BIND_RETRY = 5.0


@dataclass(slots=True)
class Child:
    """A child process and our end of its pipe."""

    name: str
    process: subprocess.Popen[bytes]
    channel: PipeChannel
    count: int = 0
    failed: str | None = None
    killed: bool = False  # SIGKILLed by a fault: its end of the pipe closing is expected
    booting: bool = False  # a restarted life before "go": its supervisor reads its pipe

    @property
    def alive(self) -> bool:
        return self.process.poll() is None


@dataclass(slots=True)
class ChildProcesses:
    """Every child of one run, so that ``reap`` can leave none behind."""

    children: list[Child] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def start(self, name: str, role: str, *args: Any) -> Child:
        """Start a child interpreter (``CHILD_BOOT``) and send it ``(role, args)``."""
        ours, theirs = multiprocessing.Pipe(duplex=True)
        fd = theirs.fileno()
        command = [sys.executable, "-c", CHILD_BOOT, ROOT, str(fd), name]
        process = subprocess.Popen(command, pass_fds=(fd,))
        theirs.close()
        child = Child(name, process, PipeChannel(ours))
        self.children.append(child)
        child.channel.send((role, args))
        return child

    def reap(self, timeout: float = JOIN_TIMEOUT) -> None:
        """Close every pipe, wait for each child, terminate then kill the stubborn ones."""
        for child in self.children:
            child.channel.close()
            if child.alive:  # a SIGSTOPped child could not act on its pipe closing
                with contextlib.suppress(ProcessLookupError):
                    os.kill(child.process.pid, signal.SIGCONT)
        deadline = time.monotonic() + timeout
        for child in self.children:
            with contextlib.suppress(subprocess.TimeoutExpired):
                child.process.wait(max(0.0, deadline - time.monotonic()))
        for child in self.children:
            if child.alive:
                self.notes.append(f"{child.name} did not exit in {timeout} s: terminated")
                child.process.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.process.wait(1.0)
            if child.alive:
                self.notes.append(f"{child.name} ignored SIGTERM: killed")
                child.process.kill()
                child.process.wait()


def child_main(argv: list[str]) -> int:
    """Entry point of a child process; ``argv`` is ``[FD, NAME]``.

    The parent's first message on the pipe names the role ("coordinator",
    "worker" or "proxy") and its arguments. SIGINT is ignored: on Ctrl-C the
    parent closes the pipes and every child stops on its own.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn = Connection(int(argv[0]))
    try:
        role, args = conn.recv()
    except (EOFError, OSError):
        return 1
    if role == "coordinator":
        server_process_main(conn, *args)
    elif role == "worker":
        run_worker(conn, *args)
    elif role == "tree":
        from real.tcp.tree_process import tree_process_main  # trees only

        tree_process_main(conn, *args)
    elif role == "replica":
        from real.tcp.replica_process import replica_process_main  # replicas only

        replica_process_main(conn, *args)
    elif role == "proxy":
        from real.netfault.process import proxy_process_main  # link faults only

        proxy_process_main(conn, *args)
    else:
        return 2
    return 0


def kill_child(child: Child | None) -> None:
    """SIGKILL ``child`` if it runs (a crash fault), marking it killed."""
    if child is not None and child.alive:
        child.killed = True
        with contextlib.suppress(ProcessLookupError):
            os.kill(child.process.pid, signal.SIGKILL)


class ServerProcess:
    """A coordinator server in a child process, which a fault may kill and restart."""

    def __init__(
        self,
        children: ChildProcesses,
        settings: ProtocolSettings,
        db_path: str | None = None,
        use_uvloop: bool = True,
        event_log: str | None = None,
        host: str = DEFAULT_HOST,
    ) -> None:
        self.children = children
        self.host = host  # the address it listens on: loopback unless told
        self.settings = settings
        self.db_path = os.path.abspath(db_path) if db_path else None
        self.use_uvloop = use_uvloop
        self.event_log = event_log
        self.child: Child | None = None
        self.port = 0
        self.lives = 0
        self.event_logs: list[str] = []  # one per life: a torn line stays in its file

    @classmethod
    async def start(
        cls,
        children: ChildProcesses,
        settings: ProtocolSettings,
        db_path: str | None = None,
        use_uvloop: bool = True,
        event_log: str | None = None,
        host: str = DEFAULT_HOST,
    ) -> ServerProcess:
        """Start the coordinator on a free port of ``host``; return once it listens."""
        server = cls(children, settings, db_path, use_uvloop, event_log, host)
        await server.spawn()
        return server

    async def spawn(self) -> float:
        """Start a coordinator process (on ``self.port`` if set); perf_counter when listening."""
        event_log = None
        if self.event_log is not None:
            event_log = f"{self.event_log}.{self.lives}"
            self.event_logs.append(event_log)
        args = (self.settings, self.db_path, self.use_uvloop, self.host, self.port, event_log)
        self.child = self.children.start("coordinator", "coordinator", *args)
        self.lives += 1
        reply = await self.child.channel.get(timeout=SERVER_START_TIMEOUT)
        if not (isinstance(reply, tuple) and reply[0] == "port"):
            raise RuntimeError(f"the coordinator process did not start (got {reply!r})")
        self.port = int(reply[1])
        return float(reply[2]) if len(reply) > 2 else time.perf_counter()

    def kill(self) -> None:
        """SIGKILL the coordinator (a crash fault)."""
        kill_child(self.child)

    @property
    def alive(self) -> bool:
        return self.child is not None and self.child.alive

    @property
    def pid(self) -> int | None:
        return None if self.child is None else self.child.process.pid

    async def stop(self, timeout: float = 10.0) -> tuple[ProcessUsage | None, ServerReport | None]:
        """Ask the server to stop; its usage and report, or Nones if it did not answer."""
        child = self.child
        if child is None or not child.alive:
            self.children.notes.append("the coordinator was not running at the end")
            return None, None
        child.channel.send("stop")
        try:
            while True:
                reply = await child.channel.get(timeout=timeout)
                if reply is None:
                    break
                if isinstance(reply, tuple) and reply[0] == "done":
                    return reply[1], reply[2]
        except TimeoutError:
            pass
        self.children.notes.append("the coordinator did not report on stop")
        return None, None


def server_process_main(
    conn: Connection,
    settings: ProtocolSettings,
    db_path: str | None,
    use_uvloop: bool = True,
    host: str = DEFAULT_HOST,
    port: int = 0,
    event_log: str | None = None,
) -> None:
    """The coordinator child's entry: report the port, serve until told to stop.

    Pipe protocol: sends ``("port", port, perf_counter when listening)``;
    stops on ``"stop"`` or when the parent's end closes; then sends
    ``("done", ProcessUsage, ServerReport)``. A given ``port`` (a restart)
    is retried for ``RESTART_BIND_RETRY`` seconds while it is still busy.
    """
    loop = new_event_loop(use_uvloop)
    try:
        serving = _serve_for_parent(conn, settings, db_path, host, port, event_log)
        report = loop.run_until_complete(serving)
        conn.send(("done", own_usage("coordinator"), report))
    except (OSError, EOFError):
        pass
    finally:
        loop.close()
        conn.close()


async def _serve_for_parent(
    conn: Connection,
    settings: ProtocolSettings,
    db_path: str | None,
    host: str,
    port: int,
    event_log: str | None,
) -> ServerReport:
    channel = PipeChannel(conn)
    stop = asyncio.Event()

    async def watch_parent() -> None:
        while True:
            item = await channel.get()
            if item is None or item == "stop":
                stop.set()
                return

    def ready(bound: int) -> None:
        channel.send(("port", bound, time.perf_counter()))

    watcher = asyncio.get_running_loop().create_task(watch_parent())
    retry = RESTART_BIND_RETRY if port else 0.0
    try:
        return await serve(host, port, settings, db_path, ready, stop, None, event_log, retry)
    finally:
        watcher.cancel()

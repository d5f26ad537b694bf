"""The model's cost figures for one machine and transport, kept as JSON.

A ``Calibration`` says how long things take on the machine it was measured on
(``harness/calibrate/measure.py`` measures it; ``swarmtwin calibrate`` runs that):

- ``service[role][message type name]``: CPU time a node of ``role``
  (``"coordinator"`` or ``"agent"``) spends handling one message of that type
  (``receive`` plus ``drain``). For an agent, the names of request types
  (``Publish``, ``Direct`` ...) mean the cost of *issuing* that request. The
  entry ``"*"`` (every message of the role pooled) is the fallback for a type
  that was not measured.
- ``timer[role]``: CPU time of one ``on_timer`` plus ``drain``.
- ``hop``: one-way delay of one message between two nodes on the transport.
- ``per_byte_seconds`` and ``per_message_seconds``: the codec's cost (encode
  plus decode) as a least-squares line over the encoded size, charged on top
  of the service time of every message a node receives. Both are 0 on
  ``inproc``, where messages are passed by reference; ``per_byte_measured``
  and ``per_message_measured`` keep the measured line anyway.
- ``per_recipient_seconds``: a coordinator's cost for each ``Deliver`` a
  job emits (fan-out makes a ``Publish`` cost more), charged on top of the
  service time; the coordinator's service times were measured with it
  taken out (``harness.calibrate.scaling``, figure (f)).
- ``batch_saving``: per role, what a message saves when it joins a batch
  that is already queued at its node (the real drivers drain a node once
  per batch); the model applies it to a message that reaches a node whose
  previous job has not started yet (figure (g)).
- ``payload_issue_per_byte`` and ``payload_receive_per_byte``: building a
  payload and its CRC-32 at the sender, and verifying the CRC-32 at each
  receiver, per payload byte; charged on both transports (the codec's
  ``per_byte_seconds`` is tcp's on top).
- ``cores``: the CPUs the calibrating process could use. On ``tcp`` the
  model's process servers (the coordinator, each agent worker) share that
  many cores (``sim.cores``); 0 means unknown, and then every process has a
  core of its own.
- ``timeslice``: how long the kernel lets a busy process keep a core before
  another runnable one gets it: three busy processes on two cores each stall
  for this long at a time (``harness.calibrate.loop.measure_timeslice``). With
  shared ``cores``, a process that has run back to back for its share of
  slices while more processes than cores have work waits one slice
  (``sim.engine.Engine._sliced``); 0 (unmeasured) leaves slices out.
- ``timer_slack``: the driver's timer granularity. A deadline is armed
  rounded up to a multiple of it, as the real tcp server and agent workers
  do (5 ms) so that deadlines of many links or agents that fall close
  together share one wake-up;
  0 arms every deadline exactly (the real ``inproc`` driver).
- ``wakeup``: how late a timed wake-up runs on the real event loop (sleep
  until a target time, sleeping again if woken early, as the real replay
  loop does), in bands of the requested wait (``WakeBand``): uvloop's
  millisecond clock makes a 2 ms sleep up to 0.6 ms late but a 0.2 ms one
  almost exact. The model delays every workload wake-up, probe and protocol
  timer by a draw from the band of its wait; no bands wake exactly on time.
- ``agent_restart`` and ``coordinator_restart``: how long a killed agent
  worker process, or a crashed coordinator server, takes from being started
  again until it is live (process start-up, imports, for the coordinator
  reopening its SQLite state); ``sim.faults`` replays a kill or a crash
  with them. ``swarmtwin calibrate --transport tcp`` measures both by
  killing and restarting real processes (``harness.calibrate.restart``);
  on inproc an agent restarts at once (0) and the coordinator cannot crash.
- ``commit`` and ``commit_per_byte``: how long a Raft replica's event loop is
  blocked persisting one ``Ready`` (hard state, new entries, commit index,
  maybe a snapshot) to its SQLite file in one transaction
  (``real.tcp.raftstore.RaftStore``: WAL, ``synchronous=FULL``, so the fsync
  is included): ``commit`` is the fixed part, ``commit_per_byte`` the cost
  per byte of entry data in the ready. ``swarmtwin calibrate --transport
  tcp`` times real saves of realistic readies at a few entry sizes in a
  fresh directory under the default temporary folder, where real runs keep
  their replica databases (``harness.calibrate.commit``); ``commit_method``
  says how. The model charges it to a replica's loop at each flush that
  persisted a ready (``sim.replicas``): the loop waits on the disk, so it
  delays what the replica sends but occupies no core. None (inproc, or a
  file written before) means the model charges nothing for it and says so.
- ``replica_flush`` and ``replica_flush_per_byte`` (figure (k),
  ``harness.calibrate.replicas``): a Raft replica's CPU for one flush besides
  what the model charges elsewhere (its messages, the disk wait): storing
  entries, applying committed ones to its state, encoding its messages, the
  loop turn; a fixed part per flush and a cost per byte stored and applied,
  fitted from the CPU of real follower processes at several loads.
  ``replica_method`` says how. None: the model charges no flush CPU.
- ``cpu_scale`` and ``job_seconds``: per role, what the real process's CPU
  time says the figures above miss (figure (i), ``harness.calibrate.cpu``).
  Every CPU cost of the role (service, timers, codec, payload, fan-out) is
  multiplied by ``cpu_scale`` (default 1), and every job (a message that did
  not join a batch, a timer) costs ``job_seconds`` more (default 0): the
  wake-up, the socket read and write and the framing a lone message pays and
  a batched one shares. A message joining a batch saves it again.
- ``cpu_sharing``: ``"per-node"`` (each node has its own CPU, as docs/design.md
  models it) or ``"one-loop"`` (every node shares one server, as the real
  ``inproc`` driver shares one event loop).

Every figure is a ``Distribution`` that carries its own ``method``: one line
on how it was measured. The file also records the host, Python version,
date, transport and ``how`` (the command that produced it).

``load_calibration`` picks the newest file for this host and transport from
the reports folder's ``calibrations/`` (``calibrations_dir``: the CLI's
``--reports``, ``reports/`` by default, where ``swarmtwin calibrate`` writes);
failing that it returns the default shipped in ``sim/calibrations/`` (inside
the installed package) together with a warning string for the report.
"""

from __future__ import annotations

import json
import math
import re
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from sim.distribution import Distribution

ROLES = ("coordinator", "agent")
POOLED = "*"
CPU_SHARING = ("per-node", "one-loop")
FORMAT = 1
CALIBRATIONS = "calibrations"  # the subfolder of a reports folder that holds calibrations
REPORTS_DIR = Path("reports") / CALIBRATIONS
SHIPPED_DIR = Path(__file__).parent / "calibrations"
AGENT_RESTART = 0.35  # s, a killed agent worker back to live: measured by the real driver
COORDINATOR_RESTART = 0.45  # s, a crashed coordinator back to live: likewise


@dataclass(frozen=True)
class WakeBand:
    """Wake-up lateness for waits shorter than ``wait_below`` (and not an earlier band's)."""

    wait_below: float
    lateness: Distribution

    def to_dict(self) -> dict[str, Any]:
        below = None if math.isinf(self.wait_below) else self.wait_below
        return {"wait_below": below, "lateness": self.lateness.to_dict()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> WakeBand:
        below = data.get("wait_below")
        return cls(
            math.inf if below is None else float(below), Distribution.from_dict(data["lateness"])
        )


@dataclass(frozen=True)
class Calibration:
    """Service times, timer cost, hop delay and per-byte cost for one transport."""

    host: str
    python: str
    date: str
    transport: str
    service: dict[str, dict[str, Distribution]]
    timer: dict[str, Distribution]
    hop: Distribution
    per_byte_seconds: float = 0.0
    per_message_seconds: float = 0.0
    per_byte_measured: float = 0.0
    per_message_measured: float = 0.0
    per_byte_method: str = ""
    per_recipient_seconds: float = 0.0
    payload_issue_per_byte: float = 0.0
    payload_receive_per_byte: float = 0.0
    payload_method: str = ""
    per_recipient_method: str = ""
    batch_saving: dict[str, float] = field(default_factory=dict)
    batch_method: str = ""
    timer_slack: float = 0.0
    cores: int = 0
    timeslice: float = 0.0  # s, how long a process waits for a core another busy one holds
    timeslice_method: str = ""
    wakeup: tuple[WakeBand, ...] = ()
    cpu_sharing: str = "per-node"
    agent_restart: float = AGENT_RESTART  # measured by the real driver; see the fault docs
    coordinator_restart: float = COORDINATOR_RESTART
    restart_method: str = ""
    commit: Distribution | None = None  # s, one Raft ready's SQLite transaction, fsync included
    commit_per_byte: float = 0.0  # s per byte of entry data in the ready
    commit_method: str = ""
    replica_flush: Distribution | None = None  # s of CPU per replica flush, fixed part
    replica_flush_per_byte: float = 0.0  # s per byte a flush encodes and applies
    replica_method: str = ""
    cpu_scale: dict[str, float] = field(default_factory=dict)
    job_seconds: dict[str, float] = field(default_factory=dict)
    cpu_method: str = ""
    how: str = ""
    notes: tuple[str, ...] = ()
    source: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if self.cpu_sharing not in CPU_SHARING:
            raise ValueError(f"cpu_sharing must be one of {CPU_SHARING}, not {self.cpu_sharing!r}")
        for role in ROLES:
            if role not in self.timer:
                raise ValueError(f"calibration has no timer cost for {role!r}")
            if POOLED not in self.service.get(role, {}):
                raise ValueError(f"calibration has no pooled ('*') service time for {role!r}")

    def service_for(self, role: str, type_name: str) -> Distribution:
        """Service time of ``type_name`` at ``role``, or the role's pooled figure."""
        table = self.service[role]
        return table.get(type_name) or table[POOLED]

    def with_changes(self, **changes: Any) -> Calibration:
        """A copy with some fields replaced (``dataclasses.replace``)."""
        return replace(self, **changes)

    @classmethod
    def deterministic(
        cls,
        service: float,
        hop: float,
        timer: float = 0.0,
        transport: str = "inproc",
        per_byte: float = 0.0,
        per_message: float = 0.0,
        cpu_sharing: str = "per-node",
        timer_slack: float = 0.0,
    ) -> Calibration:
        """Every service time exactly ``service``, every hop exactly ``hop`` (for tests)."""
        fixed = Distribution.constant(service)
        return cls(
            host="synthetic",
            python="",
            date="",
            transport=transport,
            service={role: {POOLED: fixed} for role in ROLES},
            timer={role: Distribution.constant(timer) for role in ROLES},
            hop=Distribution.constant(hop),
            per_byte_seconds=per_byte,
            per_message_seconds=per_message,
            per_byte_measured=per_byte,
            per_message_measured=per_message,
            per_byte_method="synthetic",
            cpu_sharing=cpu_sharing,
            timer_slack=timer_slack,
            how="Calibration.deterministic()",
            source="synthetic",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "how": self.how,
            "host": self.host,
            "python": self.python,
            "date": self.date,
            "transport": self.transport,
            "cpu_sharing": self.cpu_sharing,
            "timer_slack": self.timer_slack,
            "cores": self.cores,
            "timeslice": self.timeslice,
            "timeslice_method": self.timeslice_method,
            "wakeup": [band.to_dict() for band in self.wakeup],
            "agent_restart": self.agent_restart,
            "coordinator_restart": self.coordinator_restart,
            "per_byte_seconds": self.per_byte_seconds,
            "per_message_seconds": self.per_message_seconds,
            "per_byte_measured": self.per_byte_measured,
            "per_message_measured": self.per_message_measured,
            "per_byte_method": self.per_byte_method,
            "per_recipient_seconds": self.per_recipient_seconds,
            "payload_issue_per_byte": self.payload_issue_per_byte,
            "payload_receive_per_byte": self.payload_receive_per_byte,
            "cpu_scale": dict(self.cpu_scale),
            "job_seconds": dict(self.job_seconds),
            "cpu_method": self.cpu_method,
            "payload_method": self.payload_method,
            "per_recipient_method": self.per_recipient_method,
            "batch_saving": dict(self.batch_saving),
            "batch_method": self.batch_method,
            "restart_method": self.restart_method,
            "commit": None if self.commit is None else self.commit.to_dict(),
            "commit_per_byte": self.commit_per_byte,
            "commit_method": self.commit_method,
            "replica_flush": None if self.replica_flush is None else self.replica_flush.to_dict(),
            "replica_flush_per_byte": self.replica_flush_per_byte,
            "replica_method": self.replica_method,
            "hop": self.hop.to_dict(),
            "timer": {role: dist.to_dict() for role, dist in self.timer.items()},
            "service": {
                role: {name: dist.to_dict() for name, dist in table.items()}
                for role, table in self.service.items()
            },
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "") -> Calibration:
        if data.get("format") != FORMAT:
            raise ValueError(
                f"{source or 'calibration'}: unsupported format {data.get('format')!r}"
            )
        return cls(
            host=str(data["host"]),
            python=str(data["python"]),
            date=str(data["date"]),
            transport=str(data["transport"]),
            service={
                role: {name: Distribution.from_dict(d) for name, d in table.items()}
                for role, table in data["service"].items()
            },
            timer={role: Distribution.from_dict(d) for role, d in data["timer"].items()},
            hop=Distribution.from_dict(data["hop"]),
            per_byte_seconds=float(data.get("per_byte_seconds", 0.0)),
            per_message_seconds=float(data.get("per_message_seconds", 0.0)),
            per_byte_measured=float(data.get("per_byte_measured", 0.0)),
            per_message_measured=float(data.get("per_message_measured", 0.0)),
            per_byte_method=str(data.get("per_byte_method", "")),
            per_recipient_seconds=float(data.get("per_recipient_seconds", 0.0)),
            payload_issue_per_byte=float(data.get("payload_issue_per_byte", 0.0)),
            payload_receive_per_byte=float(data.get("payload_receive_per_byte", 0.0)),
            payload_method=str(data.get("payload_method", "")),
            per_recipient_method=str(data.get("per_recipient_method", "")),
            batch_saving={k: float(v) for k, v in (data.get("batch_saving") or {}).items()},
            batch_method=str(data.get("batch_method", "")),
            restart_method=str(data.get("restart_method", "")),
            timer_slack=float(data.get("timer_slack", 0.0)),
            cores=int(data.get("cores", 0)),
            timeslice=float(data.get("timeslice", 0.0)),
            timeslice_method=str(data.get("timeslice_method", "")),
            wakeup=tuple(WakeBand.from_dict(band) for band in data.get("wakeup") or ()),
            cpu_sharing=str(data.get("cpu_sharing", "per-node")),
            agent_restart=float(data.get("agent_restart", AGENT_RESTART)),
            coordinator_restart=float(data.get("coordinator_restart", COORDINATOR_RESTART)),
            commit=_optional(data.get("commit")),
            commit_per_byte=float(data.get("commit_per_byte", 0.0)),
            commit_method=str(data.get("commit_method", "")),
            replica_flush=_optional(data.get("replica_flush")),
            replica_flush_per_byte=float(data.get("replica_flush_per_byte", 0.0)),
            replica_method=str(data.get("replica_method", "")),
            cpu_scale={k: float(v) for k, v in (data.get("cpu_scale") or {}).items()},
            job_seconds={k: float(v) for k, v in (data.get("job_seconds") or {}).items()},
            cpu_method=str(data.get("cpu_method", "")),
            how=str(data.get("how", "")),
            notes=tuple(data.get("notes", ())),
            source=source,
        )


def _optional(data: dict[str, Any] | None) -> Distribution | None:
    return None if data is None else Distribution.from_dict(data)


def save_calibration(calibration: Calibration, path: Path) -> Path:
    """Write ``calibration`` as indented JSON to ``path`` (parents created).

    Lists of numbers (quantile tables) are kept on one line each, so the
    file stays readable.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(calibration.to_dict(), indent=2)
    text = _NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)
    path.write_text(text + "\n")
    return path


_NUMBER_LIST = re.compile(r"\[\s*([-+0-9.eE,\s]*?)\s*\]")


def read_calibration(path: Path) -> Calibration:
    """One calibration file."""
    return Calibration.from_dict(json.loads(path.read_text()), source=str(path))


def calibrations_dir(reports: Path) -> Path:
    """Where ``swarmtwin calibrate`` writes and the model looks, under a reports folder."""
    return reports / CALIBRATIONS


def shipped_path(transport: str) -> Path:
    """The default shipped for ``transport``: ``default.json`` or ``default-<transport>.json``."""
    name = "default.json" if transport == "inproc" else f"default-{transport}.json"
    return SHIPPED_DIR / name


def calibration_filename(calibration: Calibration) -> str:
    """``<host>-<transport>-<date>.json``, with the date made file-name safe."""
    stamp = "".join(ch for ch in calibration.date if ch.isalnum())
    return f"{calibration.host}-{calibration.transport}-{stamp}.json"


def load_calibration(
    path: Path | str | None = None,
    transport: str = "inproc",
    directory: Path | None = None,
) -> tuple[Calibration, str | None]:
    """The calibration to use, and a warning when it was not measured here.

    With ``path``, that file. Otherwise the newest file in ``directory``
    (default ``REPORTS_DIR``; callers pass ``calibrations_dir(reports)``) whose
    host is this host and whose transport is ``transport``; failing that, the
    shipped default for ``transport``.
    """
    directory = REPORTS_DIR if directory is None else directory
    host = socket.gethostname()
    if path is not None:
        calibration = read_calibration(Path(path))
        return calibration, _mismatch(calibration, host, transport)
    found = newest_calibration(directory, host, transport)
    if found is not None:
        return found, None
    shipped = shipped_path(transport)
    if not shipped.exists():
        raise FileNotFoundError(
            f"no calibration for transport {transport!r} (looked for {shipped})"
        )
    calibration = read_calibration(shipped)
    warning = (
        f"no calibration for host {host!r} and transport {transport!r} in {directory}; "
        f"using the shipped default {shipped.name} (measured on {calibration.host!r}, "
        f"{calibration.date}); run `swarmtwin calibrate --transport {transport}`"
    )
    return calibration, warning


def newest_calibration(directory: Path, host: str, transport: str) -> Calibration | None:
    """The newest readable calibration in ``directory`` for ``host`` and ``transport``."""
    best: tuple[str, str, Calibration] | None = None
    for candidate in sorted(directory.glob("*.json")) if directory.is_dir() else []:
        try:
            calibration = read_calibration(candidate)
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if calibration.host != host or calibration.transport != transport:
            continue
        key = (calibration.date, candidate.name, calibration)
        if best is None or key[:2] > best[:2]:
            best = key
    return best[2] if best is not None else None


def _mismatch(calibration: Calibration, host: str, transport: str) -> str | None:
    problems = []
    if calibration.host != host:
        problems.append(f"was measured on {calibration.host!r}, not on this host {host!r}")
    if calibration.transport != transport:
        problems.append(f"is for transport {calibration.transport!r}, not {transport!r}")
    if not problems:
        return None
    return f"calibration {calibration.source}: " + " and ".join(problems)

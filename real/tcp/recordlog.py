"""Durable record logs: what a worker's agents handled, and a coordinator's node events.

How it works. A worker process keeps one ``RecordLog`` file per life
(``worker-<index>.<life>.log`` in the run's scratch directory). In every
``AgentHost.flush``, *before* that turn's acks are handed to the sockets,
``RecordLog.record`` appends the turn's new records of the touched agents
(``Completion``s, accepted op ids, ``WriteAck``s, shed op ids) as one
binary block with one ``os.write``::

    block  = header + completions + accepted + write acks + shed
    header = <IIII  counts of the four kinds
    completion = <qIdB   op_id, agent index, core time, flags (1 duplicate, 2 intact)
    accepted   = <qI     op_id, agent index
    write ack  = <qIqId  op_id, agent index, version, checksum, core time
    shed       = <qI     op_id, agent index

Agent indexes are positions in the worker's ``WorkerSpec.agents``; times are
the worker's core clock (seconds since its ``epoch``), which the parent shifts
to plan time. Namespaces and keys of write acks come from the plan's op.

Why no fsync. The log guards against a SIGKILLed *process*, not a host
crash: once ``write(2)`` has returned, the bytes are in the kernel's page
cache and survive the process, so the parent (and the worker's next life)
read them back. A write cut short by the kill leaves a torn last block, which
``read_log`` drops; each life writes its own file, so a torn tail never
misaligns a later append. Because a record is durable before its ack leaves,
every delivery the coordinator saw acknowledged is in the log, and a
restarted worker can ``Agent.recall`` it (``recall_sets``), so redeliveries
stay suppressed across the kill. A delivery handled but not yet logged was
not acked either: it is redelivered and handled (and logged) once, by the
next life.

The coordinator keeps an ``EventLog`` the same way for the core's
``NodeEvent``s (one text line each, perf_counter time), so the events of a
killed coordinator's earlier life reach the parent too.
"""

from __future__ import annotations

import glob
import os
import struct
from collections.abc import Iterable
from dataclasses import dataclass, field

from protocol.agent import Agent
from protocol.records import NodeEvent

HEADER = struct.Struct("<IIII")
COMPLETION = struct.Struct("<qIdB")
ACCEPTED = struct.Struct("<qI")
WRITE_ACK = struct.Struct("<qIqqd")  # op id, agent, version, crc (-1: a delete), at
DUPLICATE = 1
INTACT = 2

CompletionRecord = tuple[int, int, float, int]  # op_id, agent index, core time, flags
AcceptedRecord = tuple[int, int]  # op_id, agent index
AckRecord = tuple[int, int, int, int, float]  # op_id, agent index, version, checksum, time


def log_path(directory: str, worker: int, life: int) -> str:
    """The record log of ``worker``'s ``life``-th process."""
    return os.path.join(directory, f"worker-{worker}.{life}.log")


def lives_of(directory: str, worker: int, before: int | None = None) -> list[str]:
    """Every record log of ``worker``, oldest life first (only lives below ``before``)."""
    paths = glob.glob(os.path.join(glob.escape(directory), f"worker-{worker}.*.log"))
    lives = sorted((int(p.rsplit(".", 2)[-2]), p) for p in paths)
    return [p for life, p in lives if before is None or life < before]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class RecordLog:
    """Appends the new records of touched agents, one ``os.write`` per flush."""

    def __init__(self, path: str, agent_ids: Iterable[str]) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self.fd: int | None = os.open(path, flags, 0o600)
        self.index = {node: i for i, node in enumerate(agent_ids)}
        self._marks: dict[str, list[int]] = {node: [0, 0, 0, 0] for node in self.index}
        self.writes = 0
        self.bytes = 0

    def record(self, touched: dict[str, Agent]) -> None:
        """Append what ``touched`` agents recorded since the last call."""
        if self.fd is None:
            return
        completions: list[bytes] = []
        accepted: list[bytes] = []
        acks: list[bytes] = []
        shed: list[bytes] = []
        marks = self._marks
        index = self.index
        for node, agent in touched.items():
            mark = marks.get(node)
            if mark is None:  # a link's voucher node: it records nothing
                continue
            records = agent.completions
            if len(records) > mark[0]:
                i = index[node]
                pack = COMPLETION.pack
                completions += [pack(c[0], i, c[2], c[3] | c[4] << 1) for c in records[mark[0] :]]
                mark[0] = len(records)
            if len(agent.accepted) > mark[1]:
                i = index[node]
                accepted += [ACCEPTED.pack(op_id, i) for op_id in agent.accepted[mark[1] :]]
                mark[1] = len(agent.accepted)
            if len(agent.write_acks) > mark[2]:
                i = index[node]
                acks += [
                    WRITE_ACK.pack(a.op_id, i, a.version, a.checksum, a.at)
                    for a in agent.write_acks[mark[2] :]
                ]
                mark[2] = len(agent.write_acks)
            if len(agent.shed) > mark[3]:
                i = index[node]
                shed += [ACCEPTED.pack(op_id, i) for op_id in agent.shed[mark[3] :]]
                mark[3] = len(agent.shed)
        if completions or accepted or acks or shed:
            head = HEADER.pack(len(completions), len(accepted), len(acks), len(shed))
            data = b"".join((head, *completions, *accepted, *acks, *shed))
            _write_all(self.fd, data)
            self.writes += 1
            self.bytes += len(data)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


@dataclass(slots=True)
class LogRecords:
    """The records of one or more logs, in file order."""

    completions: list[CompletionRecord] = field(default_factory=list)
    accepted: list[AcceptedRecord] = field(default_factory=list)
    write_acks: list[AckRecord] = field(default_factory=list)
    shed: list[AcceptedRecord] = field(default_factory=list)  # same layout: op_id, agent
    torn: int = 0  # logs whose last block was cut short

    def unique(self) -> int:
        """Completions that were not suppressed duplicates."""
        return sum(1 for c in self.completions if not c[3] & DUPLICATE)


def read_logs(paths: Iterable[str]) -> LogRecords:
    """Every whole block of ``paths``; a torn last block is dropped."""
    records = LogRecords()
    for path in paths:
        try:
            with open(path, "rb") as file:
                data = file.read()
        except FileNotFoundError:
            continue
        if not _parse(memoryview(data), records):
            records.torn += 1
    return records


def _parse(data: memoryview, records: LogRecords) -> bool:
    offset = 0
    end = len(data)
    while end - offset >= HEADER.size:
        nc, na, nw, ns = HEADER.unpack_from(data, offset)
        sizes = (nc * COMPLETION.size, na * ACCEPTED.size, nw * WRITE_ACK.size, ns * ACCEPTED.size)
        start = offset + HEADER.size
        if start + sum(sizes) > end:
            return False
        c_end = start + sizes[0]
        a_end = c_end + sizes[1]
        records.completions.extend(COMPLETION.iter_unpack(data[start:c_end]))
        records.accepted.extend(ACCEPTED.iter_unpack(data[c_end:a_end]))
        w_end = a_end + sizes[2]
        records.write_acks.extend(WRITE_ACK.iter_unpack(data[a_end:w_end]))
        records.shed.extend(ACCEPTED.iter_unpack(data[w_end : w_end + sizes[3]]))
        offset = w_end + sizes[3]
    return offset == end


def recall_sets(
    records: LogRecords,
    agent_ids: tuple[str, ...],
    origins: dict[int, str],
    own_tasks: set[int],
) -> dict[str, tuple[list[tuple[str, int]], list[int]]]:
    """Per agent, ``(handled, results)`` for ``Agent.recall`` from earlier lives' records.

    ``origins`` maps the op id of every publish, direct and broadcast to its
    origin; ``own_tasks`` are the task op ids these agents submitted (their
    ``TaskDone`` completions). Memory replies are not recalled.
    """
    recalled: dict[str, tuple[list[tuple[str, int]], list[int]]] = {
        node: ([], []) for node in agent_ids
    }
    for op_id, index, _, flags in records.completions:
        if flags & DUPLICATE:
            continue
        handled, results = recalled[agent_ids[index]]
        origin = origins.get(op_id)
        if origin is not None:
            handled.append((origin, op_id))
        elif op_id in own_tasks:
            results.append(op_id)
    return recalled


class EventLog:
    """The coordinator's ``NodeEvent``s, one line each (``at kind node``, perf_counter)."""

    def __init__(self, path: str) -> None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self.fd: int | None = os.open(path, flags, 0o600)

    def append(self, events: list[NodeEvent], t0: float) -> None:
        """Append ``events`` whose ``at`` counts from perf_counter ``t0``."""
        if self.fd is None or not events:
            return
        lines = "".join(f"{t0 + e.at!r}\t{e.kind}\t{e.node}\n" for e in events)
        _write_all(self.fd, lines.encode())

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def read_events(paths: Iterable[str], t0: float) -> list[NodeEvent]:
    """The events of every log, with times made relative to perf_counter ``t0``."""
    events: list[NodeEvent] = []
    for path in paths:
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                text = file.read()
        except FileNotFoundError:
            continue
        for line in text.split("\n")[:-1]:  # a line without its newline is torn
            parts = line.split("\t")
            if len(parts) == 3:
                try:
                    events.append(NodeEvent(float(parts[0]) - t0, parts[1], parts[2]))
                except ValueError:
                    continue
    return events

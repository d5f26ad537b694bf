"""The queueing model: protocol nodes as single-server FIFO queues on a SimPy clock.

Every node (the coordinator and each agent) owns a ``Server``: one event
loop is one CPU doing one thing at a time. Three kinds of job reach a node,
all through that server: a message arriving, a timer falling due, and (on
an agent) a workload operation being issued.

How a job is served. A job that reaches the node at time ``t`` starts at
``start = max(t, server.busy_until)``, holds the server for a service time
``s`` drawn from the calibration (for the node's role and the message type,
plus, where the transport encodes, ``per_message_seconds`` and
``per_byte_seconds`` times the message's encoded size), and ends at
``end = start + s``. Two calibrated refinements follow the real drivers:
a message that reaches a node whose previous message job has not started
yet joins that job's batch and saves the role's ``batch_saving`` (the real
drivers drain a node once per batch; it still costs at least
``MIN_BATCH_SHARE`` of ``s``); and a coordinator's message job costs
``per_recipient_seconds`` more for each ``Deliver`` it emits, so a
publish to 100 subscribers costs more than one to 5. Payload work is
charged by size on both transports: ``payload_issue_per_byte`` times the
op's size when an agent issues it (build the payload, checksum it) and
``payload_receive_per_byte`` times the payload's length when an agent
receives a ``Deliver`` (verify it). A calibration's figure (i), where set,
scales every CPU cost of a role by ``cpu_scale`` and adds ``job_seconds`` to
every job: a wake-up of the process (a message that joins no batch and finds
its process idle, an op issued by an idle replay loop, a timer). A message
joining a batch, or reaching a process still busy with earlier work (whose
loop reads it without sleeping), saves it again. Every server adds up what it was charged,
by part, and its jobs (``Server.busy``, ``Engine.busy``): the model's CPU per
process, to set beside what a real process measured. With ``share_cores(n)`` (the tcp
layout: separate processes on one machine) a job also needs one of the
machine's ``n`` cores (``sim.cores``) before it can start, and, with the
calibration's ``timeslice``, the kernel's time slices apply (``_sliced``): while
more processes than cores have work, one that has run back to back for its share
of slices (two of 4 ms each for three processes on two cores) is descheduled for
one, as the kernel preempts a busy process at its tick. Jobs are handled in
the order they reach the node, which is the order SimPy fires their
events, so ``busy_until`` alone is an
exact single-server FIFO queue (Lindley's recursion); no SimPy process and
no explicit queue object are needed. The core is then called with
``now=end``: ``receive(src, msg, end)``, ``on_timer(end)`` or
``issue(agent, op, end)``, followed by ``drain()``.

The call happens when the job reaches the node, with the later ``end`` as
its clock. That is observationally the same as calling it at ``end``: every
access to a node's state goes through its server, in order, so nothing can
see the state between ``start`` and ``end``. Each message from ``drain()``
is scheduled as an arrival at its destination at ``end + hop``, with the hop
delay drawn from the calibration (plus ``tree_hop`` between two coordinators of
a tree: a what-if of levels on other sites, ``model.tree_hop_ms``). One SimPy
event per message, one per timer, one per workload instant: that keeps the
model fast.

Batches (``batching``, on for the tcp layout of agents in worker processes,
off in a run with faults, whose gates act per message). A real process
handles everything one socket read brought, then flushes once: a drain's
messages bound for one process leave in one write. So the messages one job
drains for the nodes of one process travel as one ``Batch`` event, with one
hop draw. On arrival its messages are served in order, as above, each after
the first joining the batch (``batch_saving``); then every node served is
drained, and all they drained departs at the end of the batch, grouped
again by destination process. A run of one message object for several agents
of the process (a fanned-out ``Deliver``: the real coordinator sends it as one
fan-out frame per worker connection) pays the codec's cost once. A lone message still travels as an
``Arrival``, so light traffic is modelled exactly as before.

Timers: after every job the node's ``next_deadline()`` is read (and, with
a ``timer_slack``, rounded up to a multiple of it, as the real tcp driver
arms it); if it is earlier than the timer already armed (or none is armed)
a timer event is scheduled for it, late by a draw from the calibration's
``wakeup`` band for that wait (the real loop's timers are not exact).
A timer event that is no longer the armed one is stale and ignored.
Should ``on_timer`` leave a deadline in the past (a core bug: a rejected
agent's hello once did), it is polled every ``STUCK_POLL`` seconds instead
of spinning at one instant.

With ``cpu_sharing == "one-loop"`` all nodes share a single ``Server``.

A coordinator spread over several hosts (``add_node(..., hosts=N)``, the
what-if of a scenario's ``model.coordinator_hosts``) owns N servers, one
per host. A message reaching it is served by the host of its sender:
``hosts[sender.index % N]``, where ``index`` counts the nodes in the order
they were added, so the agents are dealt round-robin over the hosts, as a
coordinator sharded by agent would own them. Its timer jobs (resends,
failure sweeps: a small share of the work) run on host 0. Every host acts
on the one shared ``Coordinator`` state with no cost for keeping that
state consistent between hosts and no extra hop to forward a message to
the host of its recipient: the model of N hosts is an upper bound on what
sharding the coordinator can give (docs/whatif.md). The hosts' jobs
interleave in arrival order, so the core can see ``now`` step back by up
to one host's backlog between two unrelated messages; causally related
messages still reach it in order, since a reply arrives after its cause
has ended.

Nodes that persist (``add_node(..., persists=True)``: a Raft replica,
``sim.replicas``). A real replica's loop handles everything it read, then
writes to its disk, then sends: nothing leaves before the write. So such a
node's jobs drain nothing; the first job after a flush schedules a ``Flush``
event at its end, which SimPy fires after every arrival due by then, so every
job queued at the node by then runs first and shares it (a group commit). The
flush calls the core's ``persist(start)``, which returns the CPU it took
(charged as service, on a core) and how long its writes then blocked the
loop: the server stays busy that long but holds no core (the process waits
on the disk), counted as ``Server.blocked``, not as CPU. Then
what the jobs produced is drained and sent, as from any job.

Faults (``sim.faults``) hook in without touching the hot path of a
fault-free run: ``after_coordinator``, when set, runs after every
coordinator job before its drain (persistence, events); ``serve`` runs a
driver-side job (a closed link) free of service time; and the injector
swaps the nodes' ``arrive`` callbacks and the timer callback for its gates.

``close()`` breaks the engine's reference cycles (its bound methods kept
as callbacks) so that a finished model is freed by reference counting
while the cyclic collector is paused.

The prober is a node without a server: it records the arrival time of each
``ProbeReply``. All random draws come from the one ``random.Random`` given
to the engine, in event order, so a run is a pure function of plan,
calibration and seed.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable

import simpy
from simpy.events import NORMAL

from protocol.agent import Agent
from protocol.codec import body_size
from protocol.coordinator import Coordinator
from protocol.messages import (
    MESSAGE_TYPES,
    Broadcast,
    Deliver,
    Direct,
    MemRequest,
    Message,
    Publish,
    TaskSubmit,
    Welcome,
)
from protocol.plan import Operation, OpKind
from protocol.workload import issue
from sim.calibration import Calibration
from sim.cores import Cores
from sim.distribution import Distribution, Sampler
from sim.nodes import (
    BUSY_PARTS,
    Arrival,
    Batch,
    Callbacks,
    Flush,
    Persisting,
    Server,
    SimNode,
    TimerDue,
)

STUCK_POLL = 0.001
MIN_BATCH_SHARE = 0.1  # a batched message still costs at least this share of its service
REQUEST_TYPES: dict[OpKind, type[Message]] = {
    OpKind.PUBLISH: Publish,
    OpKind.DIRECT: Direct,
    OpKind.BROADCAST: Broadcast,
    OpKind.TASK: TaskSubmit,
    OpKind.MEMORY: MemRequest,
}


class Engine:
    """Nodes, servers and the network on one ``simpy.Environment``."""

    def __init__(
        self, env: simpy.Environment, calibration: Calibration, rng: random.Random
    ) -> None:
        self.env = env
        self.calibration = calibration
        self.rng = rng
        self.nodes: dict[str, SimNode] = {}
        self.hop = calibration.hop.sampler(rng)
        self.tree_hop = 0.0  # added to each hop between two coordinators (a what-if)
        self.per_byte = calibration.per_byte_seconds
        self.per_message = calibration.per_message_seconds
        self.wire = bool(self.per_byte or self.per_message)
        self.per_recipient = calibration.per_recipient_seconds * self._scale("coordinator")
        self.cores: Cores | None = None  # set by ``share_cores``
        self.slice = 0.0  # the kernel's time slice, with shared cores (``_sliced``)
        self._cpus: list[Server] = []  # every process's server, for ``_sliced``
        self.payload_issue = calibration.payload_issue_per_byte * self._scale("agent")
        self.payload_receive = calibration.payload_receive_per_byte * self._scale("agent")
        self.slack = calibration.timer_slack
        self._wake_bands = [(b.wait_below, b.lateness.sampler(rng)) for b in calibration.wakeup]
        self.shared = Server(env.now) if calibration.cpu_sharing == "one-loop" else None
        self._processes: dict[str, Server] = {}
        self._samplers: dict[tuple[str, str], Sampler] = {}
        self._tables: dict[str, dict[type, Sampler]] = {}
        self._timer_cb: Callbacks = (self._on_timer,)
        self._batch_cb: Callbacks = (self._arrive_batch,)
        self._flush_cb: Callbacks = (self._on_flush,)
        self.batching = False  # group each drain's messages per destination process (tcp)
        self._schedule = env.schedule
        self._find = self.nodes.get
        self._size_cache: tuple[Message | None, int] = (None, 0)
        self.messages = 0
        self.timers = 0
        self.undeliverable = 0
        self.on_completions: Callable[[Agent, int], None] = lambda agent, before: None
        self.on_welcome: Callable[[SimNode, float], None] = lambda node, at: None
        self.on_shed: Callable[[list[int]], None] = lambda op_ids: None
        self.on_probe_reply: Callable[[Message, float], None] = lambda msg, at: None
        # called after every coordinator job, before its drain (``sim.faults`` persists there)
        self.after_coordinator: Callable[[Coordinator], None] | None = None

    # --- building --------------------------------------------------------------

    def share_cores(self, count: int) -> None:
        """Make every process server share ``count`` cores (``sim.cores``)."""
        if self.shared is not None:
            raise ValueError("one shared loop is one CPU already; cores do not apply")
        self.cores = Cores(count, self.env.now)
        self.slice = self.calibration.timeslice

    def add_node(
        self,
        node_id: str,
        core: Coordinator | Agent | Persisting,
        role: str,
        process: str | None = None,
        hosts: int = 1,
        persists: bool = False,
    ) -> SimNode:
        """Add a protocol node of ``role`` with its own server, the shared one, or
        the server of OS ``process`` (nodes hosted by one process share its CPU).

        ``hosts > 1`` (a coordinator only) gives the node that many servers of
        its own; each message is served by its sender's host (module docstring).
        ``persists`` (a coordinator role whose core is ``Persisting``): its output
        leaves at its next ``Flush`` (module docstring).
        """
        if hosts > 1 and (role != "coordinator" or self.shared is not None or process):
            raise ValueError("only a coordinator with a CPU of its own can have several hosts")
        if self.shared is not None:
            server = self.shared
        elif process is not None:
            if process not in self._processes:
                self._cpus.append(self._processes.setdefault(process, Server(self.env.now)))
            server = self._processes[process]
        else:
            server = Server(self.env.now)
            self._cpus.append(server)
        service, timer = self._service(role), self._timer_sampler(role)
        node = SimNode(node_id, core, role, server, service, timer, len(self.nodes))
        scale = self._scale(role)
        node.job = self._job(role)
        node.saving = self.calibration.batch_saving.get(role, 0.0) * scale + node.job
        node.wire_message = self.per_message * scale
        node.wire_byte = self.per_byte * scale
        if hosts > 1:
            node.hosts = (server, *(Server(self.env.now) for _ in range(hosts - 1)))
        node.arrive = (self._arrive_agent,) if role == "agent" else (self._arrive_coordinator,)
        node.persists = persists
        self.nodes[node_id] = node
        return node

    def busy(self) -> dict[str, dict[str, float]]:
        """CPU seconds each simulated process was charged, by part (``Server.busy``):
        ``coordinator`` (all its hosts; a tree's coordinators in processes, each
        process by name), each worker process by name, ``agents``
        for agents with a CPU each, or ``loop`` when every node shares one."""
        names = {id(server): name for name, server in self._processes.items()}
        found: dict[int, tuple[str, Server]] = {}
        for node in self.nodes.values():
            for server in node.hosts or ((node.server,) if node.server is not None else ()):
                if self.shared is not None:
                    name = "loop"
                elif node.role == "coordinator":
                    name = names.get(id(server), "coordinator")  # a tree's: its process
                else:
                    name = names.get(id(server), "agents")
                found.setdefault(id(server), (name, server))
        totals: dict[str, dict[str, float]] = {}
        for name, server in found.values():
            zero = dict.fromkeys((*BUSY_PARTS, "jobs", "saved", "blocked"), 0.0)
            parts = totals.setdefault(name, zero)
            for part, seconds in server.busy().items():
                parts[part] += seconds
        return totals

    def add_prober(self, node_id: str) -> SimNode:
        """A measuring node without a server: it only timestamps what reaches it."""
        node = SimNode(node_id, None, "prober", None, {}, lambda: 0.0, len(self.nodes))
        node.arrive = (self._arrive_prober,)
        self.nodes[node_id] = node
        return node

    def close(self) -> None:
        """Drop the nodes and the callbacks that point back at the engine (see above)."""
        for node in self.nodes.values():
            node.arrive = ()
        self.nodes.clear()
        self._timer_cb = ()
        self._batch_cb = ()
        self._flush_cb = ()
        self.on_completions = lambda agent, before: None
        self.on_welcome = lambda node, at: None
        self.on_shed = lambda op_ids: None
        self.on_probe_reply = lambda msg, at: None

    def _service(self, role: str) -> dict[type, Sampler]:
        """Message type -> service-time sampler, one table shared by every node of ``role``."""
        table = self._tables.get(role)
        if table is None:
            table = {cls: self._sampler(role, cls.__name__) for cls in MESSAGE_TYPES}
            self._tables[role] = table
        return table

    def _sampler(self, role: str, type_name: str) -> Sampler:
        distribution = self.calibration.service_for(role, type_name)
        key = (role, type_name if type_name in self.calibration.service[role] else "*")
        if key not in self._samplers:
            self._samplers[key] = self._in_situ(distribution, role).sampler(self.rng)
        return self._samplers[key]

    def _timer_sampler(self, role: str) -> Sampler:
        key = (role, "timer")
        if key not in self._samplers:
            timer = self._in_situ(self.calibration.timer[role], role)
            self._samplers[key] = timer.sampler(self.rng)
        return self._samplers[key]

    def _scale(self, role: str) -> float:
        """The calibration's ``cpu_scale`` for ``role`` (1: none measured)."""
        return self.calibration.cpu_scale.get(role, 1.0)

    def _sliced(self, server: Server, start: float) -> float:
        """When a job of ``server``'s process that could start at ``start`` runs, once the
        kernel's time slices are counted: a process that has run back to back for its
        share of slices while more processes than cores have work is descheduled for
        one slice (three busy processes on two cores: each runs two slices, waits one).
        A process waiting on its disk (a replica's commit) has no CPU work: it neither
        counts as busy nor carries its run across the wait."""
        if start > server.busy_until or server.disk_until >= server.busy_until:
            # it was idle, or waiting on its disk: a new run (a core is ``Cores``' matter)
            server.run_since = start
            server.ran = 0.0
            return start
        cores = len(self.cores.free) if self.cores is not None else 1
        busy = 0  # processes with CPU work at ``start``: not idle, not waiting on a disk
        for cpu in self._cpus:
            if cpu is server or (
                cpu.busy_until > start and not cpu.disk_from <= start < cpu.disk_until
            ):
                busy += 1
        if busy <= cores or server.ran < self.slice * cores / (busy - cores):
            return start
        start += self.slice
        server.run_since = start
        server.ran = 0.0
        return start

    def _claim(self, cores: Cores, server: Server, start: float) -> float:
        """When a job of ``server``'s process ready at ``start`` gets a core: after any
        slice it must wait (``_sliced``), then when a core is free (``Cores.claim``)."""
        if self.slice:
            start = self._sliced(server, start)
        return cores.claim(start)

    def _message_cost(
        self, node: SimNode, server: Server, service: float, joins: bool, awake: bool
    ) -> float:
        """A message's service time on ``node`` once batching and wake-ups are counted:
        one that ``joins`` a queued batch saves the role's batch saving and the job cost
        (keeping ``MIN_BATCH_SHARE`` of its own work); one reaching an ``awake`` process
        saves the job cost (its loop reads it without sleeping); else it is a job."""
        if joins:
            full = service  # the floor is a share of the message's own work, not of the job
            service = max(service - node.saving, (service - node.job) * MIN_BATCH_SHARE)
            server.saved += full - service
        elif awake:
            server.saved += node.job
            service -= node.job
        else:
            server.jobs += 1
        return service

    def _job(self, role: str) -> float:
        """The calibration's ``job_seconds`` for ``role`` (0: none measured)."""
        return self.calibration.job_seconds.get(role, 0.0)

    def _in_situ(self, distribution: Distribution, role: str) -> Distribution:
        """A job's cost as the real process pays it: scaled, plus the per-job cost
        (unchanged, and drawn identically, for a calibration without figure (i))."""
        scale, job = self._scale(role), self._job(role)
        if scale == 1.0 and job == 0.0:
            return distribution
        return distribution.affine(scale, job)

    # --- sending -----------------------------------------------------------------

    def send(self, src: str, dst: str, msg: Message, delay: float = 0.0) -> None:
        """Put ``msg`` on the network ``delay`` seconds from now; it arrives one hop later."""
        target = self.nodes.get(dst)
        if target is None:
            self.undeliverable += 1
            return
        delay += self.hop()
        if self.tree_hop and self._between_coordinators(self.nodes.get(src), target):
            delay += self.tree_hop
        self.env.schedule(Arrival(target.arrive, target, src, msg), NORMAL, delay)

    @staticmethod
    def _between_coordinators(source: SimNode | None, target: SimNode) -> bool:
        return source is not None and source.role == "coordinator" == target.role

    def start_agent(self, node: SimNode) -> None:
        """``start`` now (no service time charged) and send its hello: an agent's, or
        a child coordinator's of a tree (``PeerHello``)."""
        core = node.core
        assert core is not None
        core.start(self.env.now)
        self._emit(node, core, self.env.now, self.env.now)

    def serve(self, node: SimNode, job: Callable[[float], None]) -> None:
        """Run ``job(end)`` on ``node``'s core as a job that costs no service time
        (a driver-side event such as a closed link), then send what it drained."""
        now = self.env.now
        server = node.server
        assert server is not None and node.core is not None
        end = max(server.busy_until, now)
        job(end)
        core = node.core
        if node.role == "coordinator":
            if self.after_coordinator is not None and not node.persists:
                self.after_coordinator(core)  # type: ignore[arg-type]
            self._emit(node, core, end, now, fanout=server)
        else:
            self._emit(node, core, end, now)

    def issue(self, node: SimNode, op: Operation, on_schedule: bool = True) -> None:
        """Serve a workload operation on its origin agent: charged as issuing its request.

        ``on_schedule`` ops arrived at ``op.at`` and are shed at the door once
        they waited ``shed_after`` (``protocol.workload.issue``); ops a fault
        held back (``sim.faults``) are issued as new, as the real drivers do.
        The door decides when the agent gets to the op, before anything is built,
        so a refused op costs nothing; an admitted one is charged its issue cost
        and sent when that ends."""
        now = self.env.now
        server = node.server
        assert server is not None
        busy = server.busy_until
        start = busy if busy > now else now
        agent = node.core
        assert isinstance(agent, Agent)
        due = op.at if on_schedule else None
        if not agent.admits(start if due is None else due, start):
            # refused at the door before anything is built: next to no cost, as in the
            # real drivers (a charge here made a model far past capacity lose goodput)
            issue(agent, op, start, due)
            self._emit(node, agent, start, now)
            return
        cores = self.cores
        if cores is not None:
            start = self._claim(cores, server, start)
        service = node.service[REQUEST_TYPES[op.kind]]()
        if busy > now:  # queued behind other work: issued in the same wake-up
            server.saved += node.job
            service -= node.job
        else:
            server.jobs += 1  # the real replay loop wakes to issue it
        payload = self.payload_issue * op.size  # build the payload and its checksum
        end = start + service + payload
        server.busy_until = end
        server.service += service
        server.payload += payload
        if cores is not None:
            server.ran += end - start
            cores.release(end)
        issue(agent, op, end)  # the door's age check was made at the start, as the real loop does
        self._emit(node, agent, end, now)

    # --- event handlers (the hot path) ------------------------------------------------
    #
    # These run once per simulated message, so they are written flat: the
    # server arithmetic is inlined, and ``env._now`` is read directly instead
    # of through the ``env.now`` property.

    def _arrive_agent(self, event: Arrival) -> None:
        now: float = self.env._now
        node = event.node
        end = self._serve_agent(node, event.src, event.msg, now, False, True)
        self._emit(node, node.core, end, now)  # type: ignore[arg-type]

    def _serve_agent(
        self, node: SimNode, src: str, msg: Message, now: float, batched: bool, decode: bool
    ) -> float:
        """Serve one message on an agent (not yet drained); return when it ends.

        ``decode`` False: the message came in a batch right after the same message
        object for another agent of the process (a fanned-out ``Deliver``), which
        the real worker decodes once from one fan-out frame; no codec cost again."""
        self.messages += 1
        server: Server = node.server  # type: ignore[assignment]
        busy = server.busy_until
        start = busy if busy > now else now
        cores = self.cores
        if cores is not None:
            start = self._claim(cores, server, start)
        service = node.service[type(msg)]()
        joins = batched or node.last_start > now  # its previous job is still queued
        service = self._message_cost(node, server, service, joins, busy > now)
        node.last_start = start
        end = start + service
        server.service += service
        if self.wire and decode:
            wire = node.wire_message + node.wire_byte * self._size(msg)
            end += wire
            server.wire += wire
        if type(msg) is Deliver:  # the receiver verifies the payload's checksum
            payload = self.payload_receive * len(msg.payload)
            end += payload
            server.payload += payload
        server.busy_until = end
        if cores is not None:
            server.ran += end - start
            cores.release(end)
        agent: Agent = node.core  # type: ignore[assignment]
        completions = agent.completions
        before = len(completions)
        agent.receive(src, msg, end)
        if len(completions) != before:
            self.on_completions(agent, before)
        elif type(msg) is Welcome:
            self.on_welcome(node, end)
        return end

    def _arrive_coordinator(self, event: Arrival) -> None:
        now: float = self.env._now
        node = event.node
        end, server = self._serve_coordinator(node, event.src, event.msg, now, False)
        self._emit(node, node.core, end, now, fanout=server)  # type: ignore[arg-type]

    def _serve_coordinator(
        self, node: SimNode, src: str, msg: Message, now: float, batched: bool
    ) -> tuple[float, Server]:
        """Serve one message on the coordinator (not yet drained); return when it
        ends and the server (host) that served it."""
        self.messages += 1
        hosts = node.hosts
        if hosts:  # several hosts: the sender's host serves it
            sender = self._find(src)
            server: Server = hosts[sender.index % len(hosts) if sender is not None else 0]
        else:
            server = node.server  # type: ignore[assignment]
        busy = server.busy_until
        start = busy if busy > now else now
        cores = self.cores
        if cores is not None:
            start = self._claim(cores, server, start)
        service = node.service[type(msg)]()
        joins = (batched or node.last_start > now) and not hosts  # its batch (one host)
        service = self._message_cost(node, server, service, joins, busy > now)
        node.last_start = start
        end = start + service
        server.service += service
        if self.wire:
            wire = node.wire_message + node.wire_byte * self._size(msg)
            end += wire
            server.wire += wire
        server.busy_until = end
        if cores is not None:
            server.ran += end - start
            cores.release(end)
        if node.persists:
            replica: Persisting = node.core  # type: ignore[assignment]
            replica.receive(src, msg, end)
            return end, server
        coordinator: Coordinator = node.core  # type: ignore[assignment]
        coordinator.receive(src, msg, end)
        after = self.after_coordinator
        if after is not None:
            after(coordinator)
        return end, server

    def _arrive_batch(self, event: Batch) -> None:
        """Serve a batch's messages in order, then drain every node served and send
        all they drained in one departure, at the end of the batch: as a real
        process handles one socket read and then flushes once."""
        now: float = self.env._now
        served: dict[SimNode, tuple[float, Server | None]] = {}
        batched = False
        previous: Message | None = None
        for node, src, msg in event.items:
            if node.role == "agent":
                decode = msg is not previous  # one fan-out frame: decoded once per process
                served[node] = (self._serve_agent(node, src, msg, now, batched, decode), None)
            else:
                served[node] = self._serve_coordinator(node, src, msg, now, batched)
            batched = True
            previous = msg
        outs: list[tuple[str, list[tuple[str, Message]]]] = []
        depart = now
        for node, (end, fanout) in served.items():
            end = self._emit(node, node.core, end, now, fanout=fanout, collect=outs)  # type: ignore[arg-type]
            if end > depart:
                depart = end
        self._dispatch(outs, depart - now)

    def _arrive_prober(self, event: Arrival) -> None:
        self.messages += 1
        self.on_probe_reply(event.msg, self.env._now)

    def _on_timer(self, event: TimerDue) -> None:
        node = event.node
        if node.armed != event.at:
            return  # superseded by an earlier deadline
        node.armed = None
        self.timers += 1
        now: float = self.env._now
        server: Server = node.server  # type: ignore[assignment]
        busy = server.busy_until
        start = busy if busy > now else now
        cores = self.cores
        if cores is not None:
            start = self._claim(cores, server, start)
        cost = node.timer_cost()
        if busy > now:  # its process is awake (another node's timer, a message): one wake-up
            server.saved += node.job
            cost -= node.job
        else:
            server.jobs += 1
        end = start + cost
        if end < event.at:
            end = event.at  # the clock can sit one rounding step below the deadline
        server.busy_until = end
        server.timers += cost
        if cores is not None:
            server.ran += cost
            cores.release(end)
        core: Coordinator | Agent | Persisting = node.core  # type: ignore[assignment]
        core.on_timer(end)
        if self.after_coordinator is not None and type(core) is Coordinator:
            self.after_coordinator(core)
        self._emit(node, core, end, now, after_timer=True)

    def _on_flush(self, event: Flush) -> None:
        """A persisting node's end of a loop turn: write what its jobs since the last
        flush changed (the loop blocked on the disk, no core held), then send what
        they produced, when the writes end."""
        node = event.node
        node.flush_due = False
        now: float = self.env._now
        server: Server = node.server  # type: ignore[assignment]
        start = server.busy_until if server.busy_until > now else now
        cores = self.cores
        if cores is not None:
            start = self._claim(cores, server, start)
        core: Persisting = node.core  # type: ignore[assignment]
        cpu, blocked = core.persist(start)
        cpu *= self._scale(node.role)
        end = start + cpu
        server.service += cpu
        if cores is not None:
            server.ran += cpu
            cores.release(end)  # the disk wait holds no core
        if blocked:
            server.disk_from = end
            end += blocked
            server.disk_until = end
        server.busy_until = end
        server.blocked += blocked
        self._emit(node, core, end, now, fanout=server, flushing=True)

    def _emit(
        self,
        node: SimNode,
        core: Coordinator | Agent | Persisting,
        end: float,
        now: float,
        after_timer: bool = False,
        fanout: Server | None = None,
        collect: list[tuple[str, list[tuple[str, Message]]]] | None = None,
        flushing: bool = False,
    ) -> float:
        """Send what the node drained (leaving at ``end``) and arm its next timer;
        return ``end``.

        With ``fanout`` (the server of a coordinator's message job), each
        ``Deliver`` emitted adds ``per_recipient_seconds`` to that job first.
        With ``collect``, what was drained is appended there for the caller
        to send (a batch: ``_arrive_batch``).

        A node that ``persists`` sends nothing here unless ``flushing``: a ``Flush``
        is scheduled at ``end`` instead (if none is), which runs after every job
        queued by then, so one flush persists and sends for all of them (a group
        commit, as the real server's flush at the end of a loop turn).
        """
        if node.persists and not flushing:
            out: list[tuple[str, Message]] = []
            if not node.flush_due:
                node.flush_due = True
                self._schedule(Flush(self._flush_cb, node), NORMAL, end - now)
        else:
            out = core.drain()
        if type(core) is Agent and len(core.shed) != node.shed_seen:
            seen, node.shed_seen = node.shed_seen, len(core.shed)
            self.on_shed(core.shed[seen:])
        if fanout is not None and out and self.per_recipient:
            delivers = sum(1 for _, sent in out if type(sent) is Deliver)
            if delivers:
                extra = self.per_recipient * delivers
                end += extra
                fanout.busy_until = end
                fanout.recipients += extra
                if self.cores is not None:
                    fanout.ran += extra
                    self.cores.release(end)
        if out:
            if collect is not None:
                collect.append((node.node_id, out))
            elif self.batching and len(out) > 1:
                self._dispatch([(node.node_id, out)], end - now)
            else:
                find = self._find
                schedule = self._schedule
                hop = self.hop
                src = node.node_id
                base = end - now
                wan = self.tree_hop if node.role == "coordinator" else 0.0
                for dst, msg in out:
                    target = find(dst)
                    if target is None:
                        self.undeliverable += 1
                        continue
                    delay = base + hop()
                    if wan and target.role == "coordinator":
                        delay += wan
                    schedule(Arrival(target.arrive, target, src, msg), NORMAL, delay)
        deadline = core.next_deadline()
        if deadline is None:
            return end
        if self.slack:
            deadline = max(math.ceil(deadline / self.slack) * self.slack, deadline)
        if after_timer and deadline <= end:
            deadline = end + STUCK_POLL
        armed = node.armed
        if armed is None or deadline < armed:
            node.armed = deadline
            delay = deadline - now
            delay += self.wake(delay)
            self._schedule(TimerDue(self._timer_cb, node, deadline), NORMAL, max(delay, 0.0))
        return end

    def _dispatch(self, outs: list[tuple[str, list[tuple[str, Message]]]], base: float) -> None:
        """Send drained messages ``base`` seconds from now, one hop later. With
        ``batching``, the messages bound for one process go as one ``Batch`` (one
        write, one hop); a message alone, or for a node without a server (the
        prober), goes as an ``Arrival``."""
        find = self._find
        schedule = self._schedule
        hop = self.hop
        groups: dict[int, list[tuple[SimNode, str, Message]]] = {}
        for src, out in outs:
            wan = self.tree_hop if self.tree_hop and self._is_coordinator(src) else 0.0
            for dst, msg in out:
                target = find(dst)
                if target is None:
                    self.undeliverable += 1
                    continue
                server = target.server
                if wan and target.role == "coordinator":  # on its own: it takes longer
                    delay = base + hop() + wan
                    schedule(Arrival(target.arrive, target, src, msg), NORMAL, delay)
                    continue
                if server is None or not self.batching:  # the prober: nothing to serve
                    schedule(Arrival(target.arrive, target, src, msg), NORMAL, base + hop())
                    continue
                key = id(server)
                group = groups.get(key)
                if group is None:
                    groups[key] = [(target, src, msg)]
                else:
                    group.append((target, src, msg))
        for group in groups.values():
            if len(group) == 1:
                target, src, msg = group[0]
                schedule(Arrival(target.arrive, target, src, msg), NORMAL, base + hop())
            else:
                schedule(Batch(self._batch_cb, group), NORMAL, base + hop())

    def _is_coordinator(self, node_id: str) -> bool:
        node = self.nodes.get(node_id)
        return node is not None and node.role == "coordinator"

    def wake(self, wait: float) -> float:
        """How late a wake-up requested ``wait`` seconds ahead runs (0 when not waiting)."""
        if wait > 0.0:
            for below, draw in self._wake_bands:
                if wait < below:
                    return draw()
        return 0.0

    def _size(self, msg: Message) -> int:
        """Encoded body size; the last message is cached (a fan-out resends one object)."""
        cached, size = self._size_cache
        if cached is not msg:
            size = body_size(msg)
            self._size_cache = (msg, size)
        return size

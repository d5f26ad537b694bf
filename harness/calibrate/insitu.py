"""(h) Service times measured inside the real ``inproc`` driver.

The warm-cluster figures of ``harness.calibrate.measure`` time the core alone. The
real driver does more for each message: it pops the mailbox, reads the run
clock, routes every output through ``loop.call_soon`` and re-arms the
node's timer. So the ``inproc`` calibration also replays a mixed workload
on the real driver itself, with ``TimedHub`` and ``TimedMailbox`` in place
of ``Hub`` and ``Mailbox``:

- a **job** is one ``Mailbox.process`` call: every queued ``receive``,
  then one ``flush`` (drain, route, re-arm the timer);
- a job holding a single message is one in-situ service-time sample for
  its role and message type; for the coordinator the cost per recipient
  times the ``Deliver`` messages it routed is taken out, because the model
  charges that part by the job's actual fan-out;
- the cost per recipient is the slope of a least-squares line of the
  coordinator's single-message job time over the ``Deliver`` messages it
  routed (fan-outs differ: rooms, wildcards, broadcasts);
- the batching saving per role is the median ``flush`` of a job of several
  messages, which the second and later messages of a batch do not pay.

The workload is ``scenarios/smoke.yaml``'s mix (every operation kind) with
its rates multiplied by ``rate_scale``; the copy shipped with swarmtwin
(``harness.scenario.shipped``), so ``calibrate`` works from any directory.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

from harness.scenario.shipped import scenarios_dir
from protocol.coordinator import Coordinator
from protocol.messages import Deliver, Message
from protocol.plan import Plan
from real.inproc import hub as inproc
from real.inproc.run import run_plan as run_inproc
from sim.distribution import Distribution

SCENARIO = scenarios_dir() / "smoke.yaml"
ROLES = ("coordinator", "agent")


@dataclass
class InSitu:
    """Raw samples (seconds) from instrumented runs."""

    # (role, message type) -> (Delivers routed, job seconds) of single-message jobs
    single: dict[tuple[str, str], list[tuple[int, float]]] = field(
        default_factory=lambda: defaultdict(list)
    )
    flushes: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def per_recipient(self) -> float:
        """Slope of the coordinator's single-message job time over its Delivers."""
        jobs = [
            job for (role, _), jobs in self.single.items() if role == "coordinator" for job in jobs
        ]
        if len({delivers for delivers, _ in jobs}) < 2:
            return 0.0
        xs = [float(delivers) for delivers, _ in jobs]
        slope, _ = statistics.linear_regression(xs, [seconds for _, seconds in jobs])
        return max(slope, 0.0)

    def service(self, per_recipient: float, min_samples: int) -> dict[str, dict[str, Distribution]]:
        """In-situ service figures per role and type (those with ``min_samples`` jobs)."""
        table: dict[str, dict[str, Distribution]] = {role: {} for role in ROLES}
        for (role, name), jobs in sorted(self.single.items()):
            if len(jobs) < min_samples:
                continue
            values = [max(s - per_recipient * d, 0.0) for d, s in jobs]
            table[role][name] = Distribution.from_samples(
                values, method(self, role, name, per_recipient)
            )
        return table

    def batch_saving(self) -> dict[str, float]:
        return {role: statistics.median(v) for role, v in self.flushes.items() if v}


class TimedMailbox(inproc.Mailbox):
    """A mailbox that times each job into its hub's ``record``."""

    __slots__ = ()

    def process(self) -> None:
        """``Mailbox.process``, timed whole; its flush is timed by ``flush``."""
        node, inbox = self.node, self.inbox
        if node is None or not inbox:
            super().process()
            return
        hub: TimedHub = self.hub  # type: ignore[assignment]
        first = type(inbox[0][1]).__name__
        count = len(inbox)
        hub.delivers = 0
        start = time.perf_counter_ns()
        super().process()
        job = (time.perf_counter_ns() - start) / 1e9
        hub.note(node, first, count, job, hub.last_flush)

    def flush(self) -> None:
        """``Mailbox.flush``, its time left on the hub for ``process`` to read."""
        start = time.perf_counter_ns()
        super().flush()
        self.hub.last_flush = (time.perf_counter_ns() - start) / 1e9  # type: ignore[attr-defined]


class TimedHub(inproc.Hub):
    """A hub that counts the Delivers each flush routes and keeps the samples."""

    mailbox_class = TimedMailbox
    record = InSitu()

    def __init__(self, *args: object) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.delivers = 0
        self.last_flush = 0.0

    def route(self, src: str, outgoing: list[tuple[str, Message]]) -> None:
        self.delivers += sum(1 for _, msg in outgoing if type(msg) is Deliver)
        super().route(src, outgoing)

    def note(self, node: object, first: str, count: int, job: float, flush: float) -> None:
        record = TimedHub.record
        role = "coordinator" if isinstance(node, Coordinator) else "agent"
        if count == 1:
            record.single[(role, first)].append((self.delivers, job))
        else:
            record.flushes[role].append(flush)


def measure_in_situ(rate_scale: float = 40.0, duration: float = 4.0, seed: int = 1) -> InSitu:
    """Replay the smoke mix on the instrumented real driver; return the samples."""
    plan = _plan(rate_scale, duration, seed)
    TimedHub.record = InSitu()
    run_inproc(plan, hub_class=TimedHub)
    return TimedHub.record


def _plan(rate_scale: float, duration: float, seed: int) -> Plan:
    from harness.scenario.compile import compile_plan
    from harness.scenario.schema import load_scenario, parse_scenario

    data = load_scenario(SCENARIO).model_dump(by_alias=True)
    for stream in data["workload"]:
        arrival = stream["arrival"]
        if "rate" in arrival:
            arrival["rate"] = arrival["rate"] * rate_scale
    data.update(duration=duration, warmup=0.0, seed=seed, name="calibration-in-situ")
    return compile_plan(parse_scenario(data, "(in-situ calibration workload)"))


def method(samples: InSitu, role: str, name: str, per_recipient: float) -> str:
    """The ``method`` line of one in-situ service figure."""
    less = (
        f", less {per_recipient * 1e9:.0f} ns per Deliver routed"
        if role == "coordinator" and per_recipient
        else ""
    )
    return (
        f"in situ: perf_counter_ns() around real.inproc.hub's Mailbox.process (receive, then "
        f"flush: drain, route via call_soon, re-arm) for jobs of one <{name}> at the "
        f"{role}{less}; {len(samples.single[(role, name)])} jobs of the smoke.yaml mix "
        "replayed on the real inproc driver (uvloop, the run's GC policy)"
    )


def recipient_method(samples: InSitu, per_recipient: float) -> str:
    jobs = sum(len(j) for (role, _), j in samples.single.items() if role == "coordinator")
    return (
        "in situ: least-squares slope of the real inproc coordinator's single-message job "
        f"time over the Deliver messages it routed, {jobs} jobs of the smoke.yaml mix: "
        f"{per_recipient * 1e9:.0f} ns per recipient"
    )


def batching_method(samples: InSitu) -> str:
    counts = ", ".join(f"{role} {len(v)}" for role, v in sorted(samples.flushes.items()))
    saving = ", ".join(f"{r} {v * 1e6:.2f} us" for r, v in sorted(samples.batch_saving().items()))
    return (
        "in situ: median flush (drain, route, re-arm) of real inproc jobs that held several "
        f"messages ({counts} jobs of the smoke.yaml mix): {saving} saved by each message "
        "after the first of a batch"
    )

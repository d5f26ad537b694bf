"""Which of a calibration's figures moved against another, usually the shipped default.

``swarmtwin calibrate`` measures this machine; the model's figures so far
were the shipped default's (``sim/calibrations/``), measured elsewhere or
earlier. ``moved(new, old)`` sets every scalar figure the model uses beside
its old value: the codec line, the cost per recipient and per payload byte,
the batching saving, the restarts, the Raft commit and a replica's flush
(each its median and cost per byte), the cores, the CPU fit, the hop's and
the wake-ups' medians and p95, and the median of every timer and service
time (per role and message type). A figure *moved* when it changed by more
than ``THRESHOLD`` (25 %, about what repeated calibrations on one quiet
machine differ by for the per-message figures), or appeared or vanished.
The CLI prints the moved figures as a table; all of them go into the
calibration's ``notes``, so a file says what it changed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sim.calibration import Calibration, read_calibration, save_calibration, shipped_path

THRESHOLD = 0.25


@dataclass(frozen=True)
class Figure:
    """One scalar figure in two calibrations (None where one of them lacks it)."""

    name: str
    unit: str
    old: float | None
    new: float | None

    @property
    def change(self) -> float | None:
        """(new - old) / old; None when either is missing or old is 0."""
        if self.old is None or self.new is None or self.old == 0:
            return None
        return (self.new - self.old) / self.old

    @property
    def moved(self) -> bool:
        if self.old is None or self.new is None:
            return self.old != self.new
        if self.old == 0:
            return self.new != 0
        change = self.change
        return change is not None and abs(change) > THRESHOLD

    def describe(self) -> str:
        return f"{self.name}: {show(self.old, self.unit)} -> {show(self.new, self.unit)}" + (
            "" if self.change is None else f" ({self.change * 100:+.0f} %)"
        )


def figures(old: Calibration, new: Calibration) -> list[Figure]:
    """Every scalar figure the model uses, old beside new."""
    rows: list[Figure] = []

    def add(name: str, unit: str, a: float | None, b: float | None) -> None:
        rows.append(Figure(name, unit, a, b))

    for name, unit in (
        ("per_message_seconds", "s"),
        ("per_byte_seconds", "s/B"),
        ("per_recipient_seconds", "s"),
        ("payload_issue_per_byte", "s/B"),
        ("payload_receive_per_byte", "s/B"),
        ("agent_restart", "s"),
        ("coordinator_restart", "s"),
        ("timer_slack", "s"),
        ("commit_per_byte", "s/B"),
        ("replica_flush_per_byte", "s/B"),
    ):
        add(name, unit, getattr(old, name), getattr(new, name))
    for name in ("commit", "replica_flush"):
        before, after = getattr(old, name), getattr(new, name)
        add(
            f"{name} median",
            "s",
            None if before is None else before.quantile(0.5),
            None if after is None else after.quantile(0.5),
        )
    add("cores", "", float(old.cores), float(new.cores))
    for p, label in ((0.5, "median"), (0.95, "p95")):
        add(f"hop {label}", "s", old.hop.quantile(p), new.hop.quantile(p))
    old_bands = {band.wait_below: band for band in old.wakeup}
    for band in new.wakeup:
        before = old_bands.get(band.wait_below)
        label = (
            "longer waits" if band.wait_below == float("inf") else f"waits < {band.wait_below:g} s"
        )
        add(
            f"wake-up lateness median, {label}",
            "s",
            None if before is None else before.lateness.quantile(0.5),
            band.lateness.quantile(0.5),
        )
    for key in sorted(set(old.batch_saving) | set(new.batch_saving)):
        add(f"batch_saving[{key}]", "s", old.batch_saving.get(key), new.batch_saving.get(key))
    for key in sorted(set(old.cpu_scale) | set(new.cpu_scale)):
        add(f"cpu_scale[{key}]", "", old.cpu_scale.get(key), new.cpu_scale.get(key))
    for key in sorted(set(old.job_seconds) | set(new.job_seconds)):
        add(f"job_seconds[{key}]", "s", old.job_seconds.get(key), new.job_seconds.get(key))
    for role in sorted(set(old.timer) | set(new.timer)):
        a, b = old.timer.get(role), new.timer.get(role)
        add(
            f"timer[{role}] median",
            "s",
            None if a is None else a.quantile(0.5),
            None if b is None else b.quantile(0.5),
        )
    for role in sorted(set(old.service) | set(new.service)):
        before, after = old.service.get(role, {}), new.service.get(role, {})
        for kind in sorted(set(before) | set(after)):
            a, b = before.get(kind), after.get(kind)
            add(
                f"service[{role}][{kind}] median",
                "s",
                None if a is None else a.quantile(0.5),
                None if b is None else b.quantile(0.5),
            )
    return rows


def moved(old: Calibration, new: Calibration) -> list[Figure]:
    """The figures that moved by more than ``THRESHOLD``, appeared or vanished."""
    return [figure for figure in figures(old, new) if figure.moved]


def show(value: float | None, unit: str) -> str:
    if value is None:
        return "none"
    if unit.startswith("s"):
        rest = unit[1:]
        for scale, prefix in ((1.0, "s"), (1e-3, "ms"), (1e-6, "us"), (1e-9, "ns")):
            if abs(value) >= scale or scale == 1e-9:
                return f"{value / scale:.3g} {prefix}{rest}"
    return f"{value:.3g}" + (f" {unit}" if unit else "")


def against_shipped(path: Path) -> tuple[Calibration, list[Figure]]:
    """The shipped default for the transport of the calibration at ``path``, and the
    figures that moved from it; the calibration's ``notes`` get one line per moved
    figure (or one saying none did), and the file is written again."""
    new = read_calibration(path)
    shipped = read_calibration(shipped_path(new.transport))
    found = moved(shipped, new)
    head = (
        f"against the shipped default {shipped_path(new.transport).name} "
        f"(host {shipped.host}, {shipped.date}), by more than {THRESHOLD:.0%}: "
    )
    lines = [head + figure.describe() for figure in found] or [head + "no figure moved"]
    save_calibration(new.with_changes(notes=(*new.notes, *lines)), path)
    return shipped, found

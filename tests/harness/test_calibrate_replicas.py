"""Figure (k), a replica's own CPU: the fit over followers, and which replicas are followers."""

from __future__ import annotations

import pytest

from harness.calibrate.replicas import FollowerPoint, fit, followers
from protocol.records import DriverResult, NodeEvent, ProcessUsage


def point(flushes: float, size: float, frames: float, cpu: float) -> FollowerPoint:
    return FollowerPoint(0.0, cpu, flushes, size, frames, frames * 100)


def test_the_fit_recovers_a_known_line_after_the_frames_charge() -> None:
    start, flush, per_byte = 0.4, 300e-6, 5e-9
    frame = 10e-6  # what the model charges per frame: taken out before the fit
    shapes = [(8000, 8e6, 9000), (2000, 2.4e7, 2500), (5000, 1.2e7, 6000), (500, 1e6, 600)]
    points = [point(f, b, n, start + flush * f + per_byte * b + frame * n) for f, b, n in shapes]
    got = fit(points, lambda frames, size: frames * frame)
    assert got[0] == pytest.approx(start) and got[1] == pytest.approx(flush)
    assert got[2] == pytest.approx(per_byte) and got[3] == []


def test_a_negative_slope_is_clamped_and_said() -> None:
    # more bytes, less CPU: no cost per byte, refitted on the flushes alone
    points = [point(8000, 1e6, 0, 2.55), point(2000, 9e6, 0, 0.35), point(5000, 5e6, 0, 1.45)]
    start, flush, per_byte, notes = fit(points, lambda frames, size: 0.0)
    assert per_byte == 0.0 and flush > 0 and "negative" in notes[0]
    with pytest.raises(ValueError, match="3 follower points"):
        fit(points[:2], lambda frames, size: 0.0)


def test_followers_are_the_replicas_that_never_led() -> None:
    result = DriverResult("real", "tcp")
    counts = dict(commits=1, flushes=10, flush_bytes=1000, frames=12, frame_bytes=900)
    result.replicas = {node: dict(counts) for node in ("r1", "r2", "r3")}
    result.events = [NodeEvent(0.0, "leader", "r2")]
    result.processes = [ProcessUsage(f"replica r{i}", 1 << 20, 0.5 * i) for i in (1, 2, 3)]
    found = followers(result, 4000)
    assert [(p.cpu, p.flushes) for p in found] == [(0.5, 10), (1.5, 10)]

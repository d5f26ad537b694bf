"""Security checks: a full run against a real coordinator, the fuzz generator, and failures.

One module-scoped run of ``run_security_checks`` (a coordinator child
process, about ten seconds) backs the assertions that every check passed
and reports its figures. The fuzz generator, the reply counter and the
growth criterion are tested on their own. ``check_service`` is shown to fail
when the coordinator is killed, and the growth criterion to fail on memory
that keeps growing, so the checks can report a failure. The last section is
the core regression the flood check found: the de-duplication tables grew by
one entry per accepted request, for ever.
"""

from __future__ import annotations

import asyncio
import re
import tempfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from harness.certify.security.base import SecurityCheck, guarded
from harness.certify.security.flood import LATE_FLOOR, MIB, ReplyCounter, RssSample, judge_growth
from harness.certify.security.frames import KINDS, fuzz_plan, plan_bytes
from harness.certify.security.suite import (
    SecurityReport,
    Target,
    check_service,
    run_security_checks,
)
from protocol.codec import encode_body
from protocol.coordinator import DEDUP_WINDOW, Coordinator
from protocol.envelope import RoutedDecoder, encode_routed, node_id_bytes
from protocol.messages import (
    MESSAGE_TYPES,
    Accepted,
    Ack,
    Busy,
    Deliver,
    Hello,
    MemRequest,
    MemVerb,
    Probe,
    Publish,
)
from protocol.settings import ProtocolSettings
from real.clock import new_event_loop
from real.tcp.children import ChildProcesses, ServerProcess
from real.tcp.client import Bystander

TOKEN = ProtocolSettings().token
EXPECTED_CHECKS = {
    "unauthenticated_traffic_refused",
    "unauthenticated_traffic_has_no_effect",
    "wrong_token_rejected",
    "wrong_token_node_cannot_use_bus",
    "malformed_bad_version_refused",
    "malformed_undecodable_body_refused",
    "malformed_wrong_shape_refused",
    "malformed_truncated_refused",
    "malformed_oversized_refused",
    "malformed_node_id_refused",
    "default_bind_loopback",
    "flood_memory_bounded",
    "flood_unread_replies_bounded",
    "large_reads_bounded",
    "subscription_limit_enforced",
    "unregistered_ids_limited",
    "memory_key_quota_enforced",
    "fuzzed_frames_survived",
    "coordinator_survived",
}
# through the portal's WebSocket gateway: the attacks on what a client sends, again
EXPECTED_CHECKS |= {
    f"gateway_{name}"
    for name in EXPECTED_CHECKS
    if name.startswith(("unauthenticated", "wrong_token", "malformed", "fuzzed"))
} | {"gateway_still_serves"}


def living_children() -> list[psutil.Process]:
    return [p for p in psutil.Process().children(recursive=True) if p.is_running()]


# --- the full run -------------------------------------------------------------------------


@dataclass(frozen=True)
class Run:
    report: SecurityReport
    progress: list[str]
    new_scratch_dirs: set[Path]


def scratch_dirs() -> set[Path]:
    return set(Path(tempfile.gettempdir()).glob("swarmtwin-security-*"))


@pytest.fixture(scope="module")
def run() -> Run:
    before = scratch_dirs()
    lines: list[str] = []
    result = run_security_checks(seed=11, fuzz_frames=200, progress=lines.append)
    return Run(result, lines, scratch_dirs() - before)


@pytest.fixture(scope="module")
def report(run: Run) -> SecurityReport:
    return run.report


@pytest.mark.slow
def test_every_security_check_passes(report: SecurityReport) -> None:
    failed = [f"{c.name}: {c.detail}" for c in report.failed]
    assert not failed, "\n".join(failed)
    assert report.compliance == 100.0
    assert {c.name for c in report.checks} == EXPECTED_CHECKS
    assert len(report.checks) == len(EXPECTED_CHECKS)
    assert (report.seed, report.fuzz_frames) == (11, 200)


@pytest.mark.slow
def test_every_check_reports_figures_and_a_method(report: SecurityReport) -> None:
    for check in report.checks:
        assert re.search(r"\d", check.detail), f"{check.name} has no figures: {check.detail}"
        assert check.method.endswith("."), check.name


@pytest.mark.slow
def test_the_run_reports_what_it_measured(report: SecurityReport) -> None:
    by_name = {c.name: c for c in report.checks}
    for fuzz in ("fuzzed_frames_survived", "gateway_fuzzed_frames_survived"):
        assert "200 frames" in by_name[fuzz].detail
        assert "0 hung" in by_name[fuzz].detail
    through = by_name["gateway_fuzzed_frames_survived"].method
    assert "Through the portal's WebSocket gateway" in through
    gateway = by_name["gateway_still_serves"].detail
    assert "on the gateway, bystander served" in gateway and "on tcp, bystander served" in gateway
    assert "Busy came back" in by_name["flood_memory_bounded"].detail
    assert "listens on ['127.0.0.1']" in by_name["default_bind_loopback"].detail
    assert "(cap 16 MiB)" in by_name["large_reads_bounded"].detail
    assert "holding 1024 patterns" in by_name["subscription_limit_enforced"].detail
    assert "16 were answered" in by_name["unregistered_ids_limited"].detail
    quota = by_name["memory_key_quota_enforced"].detail
    assert "2,000 of 2,500 new keys acknowledged" in quota
    assert "2,000 of 2,000 acknowledged keys were read back" in quota


@pytest.mark.slow
def test_the_run_leaves_no_process_and_no_scratch_directory_behind(run: Run) -> None:
    assert run.report.checks
    assert not living_children()
    assert not run.new_scratch_dirs
    assert len(run.progress) > len(run.report.checks)  # a line per check, and the start


def test_compliance_is_the_share_of_checks_passed() -> None:
    from harness.certify.security.suite import SecurityCheck

    checks = tuple(SecurityCheck(f"c{i}", i != 0, "1 of 1", "m.") for i in range(4))
    assert SecurityReport(checks, 1, 10).compliance == 75.0
    assert SecurityReport((), 1, 10).compliance == 0.0


# --- a check can fail: a killed coordinator is noticed ---------------------------------------


async def service_before_and_after_kill() -> tuple[bool, bool, str]:
    children = ChildProcesses()
    settings = ProtocolSettings()
    try:
        server = await ServerProcess.start(children, settings)
        bystander = await Bystander.register(
            server.port, "bystander", settings.token, settings.heartbeat_interval
        )
        target = Target(server, settings, bystander)
        before = await check_service(target, "alive", "nothing")
        server.kill()
        async with asyncio.timeout(5.0):  # wait for the process to be gone, not a guess
            while server.alive:
                await asyncio.sleep(0.005)
        after = await check_service(target, "alive", "a SIGKILL")
        await bystander.close()
        return before.passed, after.passed, after.detail
    finally:
        children.reap()


@pytest.mark.slow
def test_check_service_fails_once_the_coordinator_is_killed() -> None:
    loop = new_event_loop()
    try:
        before, after, detail = loop.run_until_complete(service_before_and_after_kill())
    finally:
        loop.close()
    assert before is True
    assert after is False
    assert "dead" in detail or "not served" in detail
    assert not living_children()


# --- the growth criterion ---------------------------------------------------------------------


def samples(rss_at: list[tuple[float, float]]) -> list[RssSample]:
    return [RssSample(at, int(mib * MIB), 0) for at, mib in rss_at]


def test_memory_that_keeps_growing_fails_the_criterion() -> None:
    linear = samples([(t / 10, 100 + 4 * t / 10) for t in range(26)])  # 4 MiB/s for 2.5 s
    verdict = judge_growth(100 * MIB, linear, 2.5)
    assert not verdict.passed
    assert verdict.late > LATE_FLOOR


def test_memory_that_levels_off_passes_the_criterion() -> None:
    plateau = samples([(t / 10, 100 + min(12.0, 30 * t / 10)) for t in range(26)])
    verdict = judge_growth(100 * MIB, plateau, 2.5)
    assert verdict.passed, verdict.text
    assert round(verdict.total / MIB) == 12


def test_growth_over_the_cap_fails_even_if_flat_at_the_end() -> None:
    huge = samples([(0.1, 500.0), (2.0, 500.0)])
    assert not judge_growth(100 * MIB, huge, 2.5).passed
    assert not judge_growth(100 * MIB, [], 2.5).passed


def test_reply_counter_counts_by_type_code_across_split_reads() -> None:
    def frame(msg: object) -> bytes:
        return encode_routed(node_id_bytes("flooder"), encode_body(msg))  # type: ignore[arg-type]

    data = b"".join(frame(Accepted(i, 0)) for i in range(5)) + frame(Busy(9, 0.01)) * 3
    data += frame(Probe(1))
    counter = ReplyCounter()
    for i in range(0, len(data), 7):
        counter.feed(data[i : i + 7])
    assert (counter.accepted, counter.busy, counter.other) == (5, 3, 1)
    assert not counter.buffer


# --- the fuzz generator -------------------------------------------------------------------------


def test_same_seed_same_frames_different_seed_different_frames() -> None:
    first = plan_bytes(fuzz_plan(42, 300, TOKEN))
    assert first == plan_bytes(fuzz_plan(42, 300, TOKEN))
    assert first != plan_bytes(fuzz_plan(43, 300, TOKEN))
    assert zlib.crc32(first) == zlib.crc32(plan_bytes(fuzz_plan(42, 300, TOKEN)))


def test_the_plan_has_the_requested_frames_of_every_kind() -> None:
    plan = fuzz_plan(7, 1000, TOKEN)
    frames = [f for conn in plan for f in conn.frames]
    assert len(frames) == 1000
    assert {f.kind for f in frames} == {kind for kind, _ in KINDS}
    for conn in plan:  # only a connection's last frame may leave the stream broken
        assert all(f.verdict == "valid" for f in conn.frames[:-1])
        last = conn.frames[-1].verdict
        assert (last == "valid") == (conn.ending in ("open", "token")), conn.ending


def test_valid_fuzz_frames_cover_every_message_type_and_never_carry_the_token() -> None:
    plan = fuzz_plan(7, 1000, TOKEN)
    seen: set[type] = set()
    for conn in plan:
        decoder = RoutedDecoder()
        for frame in conn.frames:
            if frame.verdict != "valid":
                break
            for _, msg in decoder.feed(frame.data):
                seen.add(type(msg))
                assert getattr(msg, "token", None) != TOKEN
    assert seen == set(MESSAGE_TYPES)


def test_every_other_connection_registers_first() -> None:
    plan = fuzz_plan(5, 400, TOKEN)
    assert [c.registered for c in plan[:4]] == [False, True, False, True]
    assert len({c.node for c in plan}) == len(plan)


# --- core regression: the de-duplication tables were unbounded ---------------------------------


def registered(*nodes: tuple[str, tuple[str, ...]]) -> Coordinator:
    coordinator = Coordinator("coord", ProtocolSettings())
    for node, patterns in nodes:
        coordinator.receive(node, Hello(node, TOKEN, (), patterns), 0.0)
    coordinator.drain()
    return coordinator


def test_a_flood_of_accepted_requests_leaves_bounded_dedup_tables() -> None:
    """Every accepted publish (even to nobody) and every memory request used to
    add an entry to the coordinator's de-duplication tables that was never
    removed, so one client could grow the coordinator's memory without bound
    (found by flood_memory_bounded: about 170 bytes per publish)."""
    coordinator = registered(("pub", ()))
    count = DEDUP_WINDOW + 500
    for op_id in range(1, count + 1):
        coordinator.receive("pub", Publish(op_id, "nobody", b"", 0), 1.0)
        coordinator.receive("pub", MemRequest(count + op_id, MemVerb.GET, "ns", "k"), 1.0)
        if op_id % 1000 == 0:
            coordinator.drain()
    coordinator.drain()
    remembered = len(coordinator._routed) + len(coordinator._mem_replies)
    assert remembered <= DEDUP_WINDOW
    assert len(coordinator._recent_ops["pub"]) == DEDUP_WINDOW


def test_retries_within_the_window_are_still_answered_without_routing_again() -> None:
    coordinator = registered(("pub", ()), ("sub", ("t",)))
    count = DEDUP_WINDOW + 10
    for op_id in range(1, count + 1):
        coordinator.receive("pub", Publish(op_id, "t", b"x", 0), 1.0)
        delivered = [m.msg_id for _, m in coordinator.drain() if isinstance(m, Deliver)]
        coordinator.receive("sub", Ack(tuple(delivered)), 1.0)
    coordinator.drain()
    recent = count - DEDUP_WINDOW + 1  # the oldest op still remembered
    coordinator.receive("pub", Publish(recent, "t", b"x", 0), 2.0)
    assert coordinator.drain() == [("pub", Accepted(recent, 1))]  # answered, not routed
    coordinator.receive("pub", Publish(1, "t", b"x", 0), 2.0)  # forgotten: routed again
    out = coordinator.drain()
    assert ("pub", Accepted(1, 1)) in out
    assert any(dst == "sub" and isinstance(m, Deliver) and m.op_id == 1 for dst, m in out)


def test_a_group_that_leaves_a_check_out_fails_it() -> None:
    async def partial_group() -> list[SecurityCheck]:
        return [SecurityCheck("first", True, "1 of 1", "Counted.")]

    names = (("first", "How."), ("second", "How."))
    checks = asyncio.run(guarded(names, partial_group))
    assert [(c.name, c.passed) for c in checks] == [("first", True), ("second", False)]
    assert "did not return" in checks[1].detail


def test_an_entry_still_held_for_durability_is_evicted_later_not_leaked() -> None:
    """With a durable bus, an op's answer is held until the journal commits. An
    entry that reached the end of the window while held used to be dropped from
    the window but kept in the tables for good."""
    settings = ProtocolSettings(durable_bus=True)
    coordinator = Coordinator("coord", settings, durable_memory=True)
    for node, patterns in (("pub", ()), ("sub", ("t",))):
        coordinator.receive(node, Hello(node, TOKEN, (), patterns), 0.0)
    coordinator.drain()

    def publish(op_id: int, commit: bool) -> None:
        coordinator.receive("pub", Publish(op_id, "t", b"", 0), 1.0)
        delivered = [m.msg_id for _, m in coordinator.drain() if isinstance(m, Deliver)]
        coordinator.receive("sub", Ack(tuple(delivered)), 1.0)
        if commit:
            coordinator.take_bus_journal()
            coordinator.writes_persisted()

    for op_id in range(1, DEDUP_WINDOW + 101):  # nothing committed: every answer is held
        publish(op_id, commit=False)
    assert ("pub", 1) in coordinator._routed  # held, so not forgotten yet
    for op_id in range(DEDUP_WINDOW + 101, 2 * DEDUP_WINDOW + 301):
        publish(op_id, commit=True)
    assert ("pub", 1) not in coordinator._routed  # forgotten once its answer was out
    assert len(coordinator._routed) <= DEDUP_WINDOW + 1

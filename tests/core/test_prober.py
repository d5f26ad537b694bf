"""The availability prober's rules (``protocol.prober``), shared by every driver."""

from __future__ import annotations

from protocol.messages import ComponentStatus, Probe, ProbeReply, Reject, StatusReply
from protocol.plan import STATUS_REQUEST_ID, Plan
from protocol.prober import Prober
from protocol.records import ProbeResult
from protocol.settings import ProtocolSettings


def plan(duration: float = 1.0, interval: float = 0.25, warmup: float = 0.0) -> Plan:
    return Plan(1, duration, warmup, (), (), ProtocolSettings(token="t"), probe_interval=interval)


def test_probes_are_due_every_interval_from_zero_until_the_duration() -> None:
    prober = Prober(plan())
    sent = []
    while (at := prober.next_probe_at()) is not None:
        sent.append((at, prober.probe(at + 0.001)))
    assert sent == [(0.0, Probe(1)), (0.25, Probe(2)), (0.5, Probe(3)), (0.75, Probe(4))]
    assert prober.results[1] == ProbeResult(2, 0.251, None)
    assert Prober(plan(interval=0.0)).next_probe_at() is None  # probing off


def test_each_probe_is_answered_once_and_unknown_ids_settle_nothing() -> None:
    prober = Prober(plan())
    prober.probe(0.0)
    prober.probe(0.25)
    assert not prober.settled
    assert prober.receive(ProbeReply(2), 0.3)
    assert not prober.receive(ProbeReply(2), 0.4)  # a duplicate keeps the first answer
    assert not prober.receive(ProbeReply(9), 0.4) and not prober.receive(ProbeReply(0), 0.4)
    assert prober.results[1].answered == 0.3 and not prober.settled
    assert prober.receive(ProbeReply(1), 0.5) and prober.settled


def test_the_status_is_joined_from_its_parts_or_refused() -> None:
    prober = Prober(plan(duration=2.0, warmup=0.5))
    assert prober.status_at == 1.75
    request = prober.status_request()
    assert request.request_id == STATUS_REQUEST_ID and request.token == "t"
    bus = (ComponentStatus("bus", "ok", ()),)
    memory = (ComponentStatus("memory", "ok", ()),)
    assert not prober.receive(StatusReply(STATUS_REQUEST_ID + 1, bus), 1.8)  # another request
    assert not prober.receive(StatusReply(STATUS_REQUEST_ID, bus, 1, 2), 1.8)
    assert not prober.settled
    assert prober.receive(StatusReply(STATUS_REQUEST_ID, memory, 2, 2), 1.81)
    assert prober.status == {
        "bus": {"health": "ok", "metrics": {}},
        "memory": {"health": "ok", "metrics": {}},
    }
    assert prober.settled and not prober.receive(Reject("late"), 1.9)
    refused = Prober(plan(duration=2.0, warmup=0.5))
    refused.status_request()
    assert refused.receive(Reject("bad token"), 1.8)
    assert refused.status_refused == "bad token" and refused.settled


def test_a_refused_or_lost_probe_is_sent_again_while_in_time_at_most_five_times() -> None:
    prober = Prober(plan(duration=2.0, interval=0.1))  # deadline 0.05
    prober.probe(0.0)
    prober.probe(0.1)
    assert prober.retry(0.12) == [Probe(2)]  # probe 1 is past its deadline
    assert [prober.retry(0.13), prober.retry(0.13), prober.retry(0.13)] == [[Probe(2)]] * 3
    assert prober.retry(0.14) == []  # five sends in all
    prober.probe(0.2)
    assert prober.receive(ProbeReply(3), 0.21)
    assert prober.retry(0.22) == []  # answered
    prober.probe(0.3)
    assert prober.retry(0.36) == []  # its deadline passed
    assert prober.receive(ProbeReply(2), 0.14) and prober.results[1].on_time(0.05)


def test_a_retry_waits_only_when_no_leader_was_named() -> None:
    from protocol.prober import RETRY_PAUSE, retry_pause

    assert retry_pause(True) == 0.0 and retry_pause(False) == RETRY_PAUSE > 0

"""One retransmission timer per link: the coordinator's per agent link, the
request window's per agent (``protocol.bus``, ``protocol.requests``).

Until 2026-12-07 every delivery and every request armed a heap entry of its
own, pushed and popped even when the ack came in time."""

import pytest

from protocol.coordinator import Coordinator
from protocol.messages import Ack, Deliver, Hello, Publish
from protocol.requests import RequestWindow
from protocol.settings import ProtocolSettings

SETTINGS = ProtocolSettings(ack_timeout=0.05, request_timeout=0.1, failure_after=1000.0)


def _coordinator(*subscribers: str) -> Coordinator:
    coordinator = Coordinator("coordinator", SETTINGS)
    for node in ("pub", *subscribers):
        topics = ("t",) if node != "pub" else ()
        coordinator.receive(node, Hello(node, SETTINGS.token, (), topics), 0.0)
    coordinator.drain()
    return coordinator


def _deliveries(coordinator: Coordinator) -> list[tuple[str, Deliver]]:
    return [(dst, msg) for dst, msg in coordinator.drain() if type(msg) is Deliver]


def test_a_link_keeps_one_timer_however_many_deliveries_it_carries() -> None:
    coordinator = _coordinator("a", "b", "c")
    now = 0.0
    for op_id in range(1, 501):
        now += 0.001
        coordinator.receive("pub", Publish(op_id, "t", b"x", 0), now)
        for dst, deliver in _deliveries(coordinator):
            coordinator.receive(dst, Ack((deliver.msg_id,)), now + 0.0005)
        if (due := coordinator.next_deadline()) is not None and due <= now:
            coordinator.on_timer(now)
    assert coordinator.stats.ops_routed == 500
    assert len(coordinator._link_timers) <= 3  # was one entry per publish
    assert coordinator.stats.redelivered == 0


def test_a_lost_delivery_is_resent_by_its_link_alone_oldest_first() -> None:
    coordinator = _coordinator("a", "b")
    coordinator.receive("pub", Publish(1, "t", b"x", 0), 0.0)
    first = _deliveries(coordinator)
    coordinator.receive("pub", Publish(2, "t", b"y", 0), 0.01)
    second = _deliveries(coordinator)
    for dst, deliver in first + second:  # everything acked but a's copy of op 1
        if not (dst == "a" and deliver.op_id == 1):
            coordinator.receive(dst, Ack((deliver.msg_id,)), 0.011)
    assert coordinator.next_deadline() == 0.05  # a's oldest send + the minimum timeout
    coordinator.on_timer(0.05)
    resent = _deliveries(coordinator)
    assert [(dst, d.op_id) for dst, d in resent] == [("a", 1)]
    assert coordinator.stats.redelivered == 1
    # the link backed off (0.05 -> 0.1) and its timer follows the resend
    assert coordinator.sessions["a"].rto.rto == 0.1
    assert coordinator.next_deadline() == pytest.approx(0.15)
    coordinator.receive("a", Ack((resent[0][1].msg_id,)), 0.06)
    coordinator.on_timer(0.15)
    assert _deliveries(coordinator) == []
    assert coordinator.stats.redelivered == 1


def _window() -> RequestWindow:
    window = RequestWindow(SETTINGS)
    window.reopen(0.0)
    return window


def test_a_request_window_resends_only_what_went_unanswered() -> None:
    window = _window()
    for op_id, at in ((1, 0.0), (2, 0.01), (3, 0.02)):
        window.submit(Publish(op_id, "t", b"x", 0), at)
    assert [r.op_id for r in window.take()] == [1, 2, 3]
    assert window.answered(2, 0.03) is not None
    assert window.answered(3, 0.03) is not None
    assert window.next_deadline() == 0.1  # op 1's send + request_timeout
    window.on_timer(0.1)
    assert [r.op_id for r in window.take()] == [1]
    # one timeout doubled the timeout; the timer now watches op 1's resend
    assert window.next_deadline() == pytest.approx(0.3)
    assert window.answered(1, 0.12) is not None
    window.on_timer(0.3)
    assert window.take() == [] and len(window) == 0


def test_a_busy_window_arms_one_timer_for_all_its_requests() -> None:
    window = _window()
    for op_id in range(1, 41):
        window.submit(Publish(op_id, "t", b"x", 0), op_id * 0.001)
    assert len(window.take()) == 40
    assert window.next_deadline() == 0.001 + 0.1  # the oldest's, whatever the rest
    for op_id in range(1, 41):
        window.answered(op_id, 0.05)
    window.on_timer(0.101)  # fires, finds nothing in flight, rests
    assert window.take() == [] and window.next_deadline() is None

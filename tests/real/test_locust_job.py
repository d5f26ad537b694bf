"""The job a remote Locust worker gets (``real.locust.job``): it decodes to the same
plan with the worker's own token, refuses anything but plain protocol data and
another build's job, and the clock offset is Cristian's estimate. And the command
line's checks for runs across hosts exit 2 with the reason."""

from __future__ import annotations

import dataclasses
import os
import pickle
from pathlib import Path

import pytest

from harness.cli.main import main
from harness.scenario.compile import compile_plan
from harness.scenario.schema import load_scenario
from real.locust.job import JobRefused, best_offset, decode_job, encode_job, plan_digest

SMOKE = Path(__file__).parents[2] / "scenarios" / "smoke.yaml"


def _plan():  # type: ignore[no-untyped-def]
    return compile_plan(load_scenario(SMOKE).with_overrides(transport="tcp", duration=1.0))


def _job(plan, epoch: float = 0.0):  # type: ignore[no-untyped-def]
    return {"plan": plan, "host": "10.0.0.1", "port": 7400, "epoch": epoch, "output": "/x"}


def test_the_job_carries_the_plan_but_not_the_token() -> None:
    plan = _plan()
    data = encode_job(_job(plan, 12.5))
    assert plan.settings.token.encode() not in data["plan"]
    job = decode_job(data, "this-host's-token")
    assert job["plan"].operations == plan.operations and job["plan"].agents == plan.agents
    assert job["plan"].settings.token == "this-host's-token"
    assert plan_digest(job["plan"]) == plan_digest(plan)
    assert (job["host"], job["port"], job["epoch"]) == ("10.0.0.1", 7400, 12.5)


class _Hostile:
    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, ("echo pwned",))


def test_a_job_that_would_run_code_is_refused() -> None:
    data = encode_job(_job(_plan()))
    data["plan"] = pickle.dumps(_Hostile())
    with pytest.raises(JobRefused, match="may not contain"):
        decode_job(data, "t")


def test_a_changed_plan_or_another_build_is_refused() -> None:
    plan = _plan()
    data = encode_job(_job(plan))
    with pytest.raises(JobRefused, match="digest"):
        decode_job({**data, "digest": "0" * 16}, "t")
    with pytest.raises(JobRefused, match="same version"):
        decode_job({**data, "version": "0.0.0-other"}, "t")


def test_the_offset_comes_from_the_shortest_round_trip() -> None:
    # (sent, master's time, received) on this host's clock; the master is 5 s ahead
    samples = [(0.0, 5.30, 0.40), (1.0, 6.02, 1.04), (2.0, 7.5, 2.9)]
    offset, error = best_offset(samples)
    assert offset == pytest.approx(5.0) and error == pytest.approx(0.02)


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["locust", "--worker", str(SMOKE)], "takes no scenario"),
        (["locust"], "a scenario is needed"),
        (["locust", str(SMOKE), "--master", "--host", "10.9.9.9"], "secret token"),
        (["locust", str(SMOKE), "--master", "--host", "0.0.0.0", "--token", "s"], "wildcard"),
        (["locust", str(SMOKE), "--host", "10.9.9.9", "--token", "s"], "for --master"),
    ],
)
def test_locust_across_hosts_refuses_bad_arguments(
    args: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["--reports", str(tmp_path), *args]) == 2
    assert said in capsys.readouterr().err


def test_an_http_user_sheds_at_the_door_when_every_connection_is_busy() -> None:
    """``HttpMemory.replay``: ops due while ``CONCURRENCY`` requests are out are shed,
    never sent, and kept out of the memory history; the others go out."""
    from protocol.messages import MemVerb
    from protocol.plan import Operation, OpKind
    from real.locust.httpuser import CONCURRENCY, HttpMemory

    started: list[int] = []
    user = HttpMemory(
        "http-0", "http://127.0.0.1:9", "t", 0.0, lambda f, op, due: started.append(op.op_id)
    )
    ops = [
        Operation(i, -1.0, OpKind.MEMORY, "agent-00001", f"ns/k{i}", 16, 1, MemVerb.PUT)
        for i in range(1, CONCURRENCY + 6)
    ]
    user.replay(ops, 0.0, lambda seconds: None)  # the requests never finish here
    assert started == list(range(1, CONCURRENCY + 1))
    assert user.shed == list(range(CONCURRENCY + 1, CONCURRENCY + 6))
    records = user.records(0.0, 10.0)
    assert records["shed"] == user.shed and records["memory"] == []  # none taken yet


def test_a_websocket_link_sends_one_frame_per_message() -> None:
    """``WebSocketLink.send`` splits what the agent wrote at the frames' length
    prefixes: the gateway takes exactly one frame per binary message."""
    from protocol.envelope import LENGTH
    from real.locust.links import WebSocketLink

    class Socket:
        def __init__(self) -> None:
            self.sent: list[bytes] = []

        def send_binary(self, data: bytes) -> None:
            self.sent.append(data)

    link = WebSocketLink.__new__(WebSocketLink)  # no connection: only the framing
    link.ws = Socket()
    frames = [
        LENGTH.pack(len(body)) + body for body in (b"\x01abc", b"\x01" + b"x" * 300, b"\x01z")
    ]
    link.send(b"".join(frames))
    assert link.ws.sent == frames


@pytest.mark.parametrize(("status", "where"), [(502, "notes"), (401, "errors")])
def test_an_overloaded_portal_is_noted_and_a_refused_request_is_an_error(
    status: int, where: str
) -> None:
    """A 5xx leaves the op unanswered and is noted (overload); a 4xx means the
    requests are wrong (a bad token) and makes the run invalid."""
    from protocol.messages import MemVerb
    from protocol.plan import Operation, OpKind
    from real.locust.httpuser import HttpMemory

    class Answer:
        status_code = status

        def read(self) -> bytes:
            return b'{"detail": "no"}'

    class Client:
        def post(self, path: str, body: bytes, headers: dict[str, str]) -> Answer:
            return Answer()

    user = HttpMemory("http-0", "http://127.0.0.1:9", "t", 0.0, lambda f, *a: f(*a))
    user.client = Client()
    op = Operation(1, -1.0, OpKind.MEMORY, "agent-00001", "ns/k", 16, 1, MemVerb.GET)
    user.replay([op, dataclasses.replace(op, op_id=2)], 0.0, lambda seconds: None)
    records = user.records(0.0, 10.0)
    assert records["completions"] == [] and len(records["memory"]) == 2
    assert all(call[6] == float("inf") for call in records["memory"])  # unanswered
    assert len(records[where]) == 1 and f"HTTP {status}" in records[where][0]
    other = "errors" if where == "notes" else "notes"
    assert records[other] == []

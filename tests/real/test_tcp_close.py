"""How the tcp server closes a connection it refuses: its last frames reach a client
that is still writing. Closing a socket with unread input makes the kernel send a
reset, which can destroy the ``Reject`` written just before it; the server ends its
side first and closes the socket a little later (``FramedLink.half_close``)."""

from __future__ import annotations

import asyncio

import pytest

from protocol.messages import Hello, Publish, Reject
from protocol.settings import ProtocolSettings
from real.tcp.client import RawConnection, routed_frame
from real.tcp.framing import FramedLink
from real.tcp.server import serve


async def _rejects_seen(port: int, rounds: int) -> int:
    """Hellos with a wrong token, each followed by frames written one by one while the
    server rejects and closes; how many clients read the ``Reject``."""
    seen = 0
    for i in range(rounds):
        node = f"late-{i}"
        conn = await RawConnection.open(port)
        conn.send(routed_frame(node, Hello(node, "wrong")))
        for seq in range(40):  # keeps writing after the server closed its end
            if not conn.send(routed_frame(node, Publish(seq, "a.b", b"x" * 64, 0))):
                break
            await asyncio.sleep(0.0005)
        outcome = await conn.read_until_closed(3.0)
        conn.close()
        seen += bool(outcome.frames) and outcome.frames[0] == (node, Reject("bad token"))
    return seen


def _run(rounds: int) -> int:
    async def scenario() -> int:
        port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        stop = asyncio.Event()
        settings = ProtocolSettings(token="right")
        server = asyncio.create_task(
            serve(port=0, settings=settings, ready=port.set_result, stop=stop)
        )
        try:
            return await _rejects_seen(await port, rounds)
        finally:
            stop.set()
            await server

    return asyncio.run(scenario())


def test_a_rejected_client_that_keeps_writing_still_reads_its_reject() -> None:
    assert _run(20) == 20


def test_without_the_linger_a_reset_can_destroy_the_reject(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same clients against a server that closes at once: some lose the Reject
    (this shows the test above can fail)."""
    monkeypatch.setattr(FramedLink, "half_close", lambda link, linger: link.close())
    assert _run(20) < 20

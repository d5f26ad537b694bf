"""``harness.portal.wsclient.FrameWriter``: a tcp byte stream cut into one message per frame."""

from __future__ import annotations

import asyncio
from typing import Any

from harness.portal.wsclient import FrameWriter
from protocol.envelope import LENGTH


class FakeSocket:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.transport: Any = None

    async def send(self, message: bytes) -> None:
        await asyncio.sleep(0)
        self.sent.append(message)


def frame(body: bytes) -> bytes:
    return LENGTH.pack(len(body)) + body


def written(*chunks: bytes, eof: bool = False, max_frame: int = 64) -> list[bytes]:
    async def go() -> list[bytes]:
        socket = FakeSocket()
        writer = FrameWriter(socket, max_frame)  # type: ignore[arg-type]
        for chunk in chunks:
            writer.write(chunk)
        if eof:
            writer.write_eof()
        await writer.drain()
        return socket.sent

    return asyncio.run(go())


def test_frames_split_and_joined_across_writes_go_one_per_message() -> None:
    a, b, c = frame(b"\x01abcd"), frame(b"\x01efgh"), frame(b"\x01" + b"g" * 20)
    stream = a + b + c
    assert written(stream) == [a, b, c]
    assert written(stream[:3], stream[3:9], stream[9:]) == [a, b, c]


def test_what_cannot_be_a_frame_goes_as_it_stands_for_the_gateway_to_refuse() -> None:
    oversized = LENGTH.pack(65) + b"x" * 10
    assert written(frame(b"\x01okay") + oversized) == [frame(b"\x01okay"), oversized]
    assert written(LENGTH.pack(2) + b"xy") == [LENGTH.pack(2) + b"xy"]  # under 4 bytes
    # an incomplete frame waits for its bytes, and goes as it is when the stream ends
    partial = frame(b"\x01" + b"z" * 30)[:12]
    assert written(partial) == []
    assert written(partial, eof=True) == [partial]

"""A Locust user's connection to the coordinator: a TCP socket, or a WebSocket to the
portal's agents' gateway (``swarmtwin serve --coordinator``, docs/protocol.md).

Both carry the tcp envelope's frames (``protocol.envelope``) and offer the same
three calls to ``real.locust.greenagent``: ``send`` (bytes of whole frames, one or
more), ``recv`` (the next bytes from the coordinator, ``b""`` once it closed) and
``close``. On TCP they are the socket's own. Through the gateway every binary
WebSocket message is exactly one frame, so ``send`` splits what it is given at the
frames' length prefixes and sends each as one message, and ``recv`` returns one
message, which the agent's stream decoder takes like any read. Both are blocking
calls; under Locust, gevent makes them yield to the other users.
"""

from __future__ import annotations

import socket
from typing import Protocol

from protocol.envelope import LENGTH

READ_SIZE = 1 << 16
CONNECT_TIMEOUT = 10.0


class Link(Protocol):
    def send(self, data: bytes) -> None: ...

    def recv(self) -> bytes: ...

    def close(self) -> None: ...


class TcpLink:
    """A TCP connection (``TCP_NODELAY``) to the coordinator at ``host:port``."""

    def __init__(self, host: str, port: int) -> None:
        sock = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT)
        sock.settimeout(None)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = sock

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def recv(self) -> bytes:
        return self.sock.recv(READ_SIZE)

    def close(self) -> None:
        self.sock.close()


class WebSocketLink:
    """A WebSocket to the gateway at ``url`` (``ws://HOST:PORT/ws/agent``)."""

    def __init__(self, url: str) -> None:
        import websocket  # websocket-client: blocking, so gevent can patch it

        self.ws = websocket.create_connection(url, timeout=CONNECT_TIMEOUT)
        self.ws.settimeout(None)
        self.ws.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._closed = websocket.WebSocketConnectionClosedException

    def send(self, data: bytes) -> None:
        view = memoryview(data)
        at = 0
        while at < len(view):  # one frame per message, as the gateway requires
            end = at + LENGTH.size + LENGTH.unpack_from(view, at)[0]
            self.ws.send_binary(bytes(view[at:end]))
            at = end

    def recv(self) -> bytes:
        try:
            data = self.ws.recv()
        except self._closed:
            return b""
        if not data:  # a close frame
            return b""
        if isinstance(data, str):  # the gateway sends binary only
            raise OSError("the gateway sent a text message")
        return bytes(data)

    def close(self) -> None:
        self.ws.close()

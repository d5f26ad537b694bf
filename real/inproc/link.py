"""A byte-stream link onto an in-process hub, so that a tcp client can speak to a
coordinator that runs on the hub instead of behind a socket.

``dial(hub)`` returns a ``real.tcp.client.RawConnection`` whose writer is a
``HubLink``: the client writes routed frames (``protocol.envelope``) as it would to a
socket, the link decodes them and routes each message to the coordinator's mailbox
as sent by the frame's node. The first frame binds the link to its node id, as a
``Hello`` binds a tcp link; a frame for another node, a node id already on the hub,
or bytes that do not decode close the link. What the coordinator sends to that
node arrives in the link's mailbox (``LinkBox``), is encoded as routed frames and
fed to the connection's reader. Closing the link (either side) removes the node
from the hub and tells the coordinator, as a closed socket would
(``Coordinator.link_closed``).

The harness's in-process swarm (``harness.swarm.inproc``) gives its console and
its observers links like this; the encoding per message is the price of using
the same client code on both transports, and a console sends few messages.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from protocol.codec import MalformedFrame
from protocol.coordinator import Coordinator
from protocol.envelope import RoutedDecoder
from protocol.messages import Message
from protocol.nodes import COORDINATOR_ID as COORD
from real.inproc.hub import Hub, Mailbox
from real.tcp.client import RawConnection, routed_frame


class LinkBox(Mailbox):
    """The mailbox of a node that speaks through a ``HubLink``."""

    __slots__ = ("link",)

    def __init__(self, hub: Hub, node_id: str, link: HubLink) -> None:
        super().__init__(hub, node_id, None)
        self.link = link

    def process(self) -> None:
        self.scheduled = False
        self.link.receive(self.inbox)


class HubLink:
    """The writing end of a connection to the hub's coordinator (a ``ByteWriter``)."""

    def __init__(self, hub: Hub, reader: asyncio.StreamReader) -> None:
        self.hub = hub
        self.reader = reader
        self.node: str | None = None
        self.decoder = RoutedDecoder()
        self.closing = False

    # --- client to coordinator ----------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closing:
            return
        try:
            frames = self.decoder.feed(data)
        except MalformedFrame:
            self.close()
            return
        for node, msg in frames:
            if self.node is None:
                if node in self.hub.boxes:
                    self.close()  # a node id that is already on the hub
                    return
                self.node = node
                self.hub.boxes[node] = LinkBox(self.hub, node, self)
            elif node != self.node:
                self.close()
                return
            self.hub.route(node, [(COORD, msg)])

    # --- coordinator to client ----------------------------------------------------

    def receive(self, inbox: deque[tuple[str, Message]]) -> None:
        node = self.node
        assert node is not None
        frames = []
        while inbox:
            _, msg = inbox.popleft()
            frames.append(routed_frame(node, msg))
        if not self.closing:
            self.reader.feed_data(b"".join(frames))

    # --- the end ------------------------------------------------------------------

    def close(self) -> None:
        if self.closing:
            return
        self.closing = True
        self.reader.feed_eof()
        node = self.node
        if node is None or not isinstance(self.hub.boxes.get(node), LinkBox):
            return
        del self.hub.boxes[node]
        box = self.hub.boxes.get(COORD)
        if box is not None and isinstance(box.node, Coordinator):
            box.node.link_closed(node, self.hub.clock.now())
            box.flush()

    def is_closing(self) -> bool:
        return self.closing

    async def drain(self) -> None:
        return None

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        return None

    def get_extra_info(self, name: str) -> Any:
        return None

    @property
    def transport(self) -> Any:
        return None


def dial(hub: Hub) -> RawConnection:
    """A new connection to the hub's coordinator."""
    reader = asyncio.StreamReader()
    return RawConnection(reader, HubLink(hub, reader))

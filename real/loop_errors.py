"""An event loop's unhandled exceptions, recorded as well as logged.

A callback's exception that reaches the loop is a bug in the run, not a result:
``recording_handler(note)`` logs it as asyncio's default handler does and hands
one line to ``note``, which the driver puts into ``DriverResult.errors`` (the
run is then invalid). The inproc driver and each tcp worker install it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

Handler = Callable[[asyncio.AbstractEventLoop, Any], None]


def recording_handler(note: Callable[[str], None]) -> Handler:
    """A loop exception handler: log as the default does, and ``note`` the error."""

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        what = context.get("message", "unhandled exception in the event loop")
        note(f"{what}: {exc!r}" if exc is not None else str(what))
        loop.default_exception_handler(context)

    return handle

"""A test-only slowdown: make the real coordinator spend extra CPU on every message.

How it works. ``SWARMTWIN_TEST_DELAY_US`` is read once, when this module is
imported. Unset, empty or ``0``: ``slow_coordinator`` returns the
coordinator untouched, so a normal run pays nothing per message (not even
a flag test). Set to a positive number of microseconds: ``slow_coordinator``
returns a wrapper whose ``receive`` busy-waits that long on
``time.perf_counter_ns`` and then calls the real ``receive``. It busy-waits
rather than sleeps because a sleep would yield the event loop and cost
nothing; the point is a coordinator that is measurably slower per message,
like a build with a slower code path.

Both real transports call ``slow_coordinator`` on the coordinator they
build (``real.inproc.hub.build_hub`` and ``real.tcp.server.CoordinatorServer``);
the tcp coordinator is a child process, which inherits the variable.
``ACTIVE`` and ``note()`` let the harness mark every run made with the hook
on, so a slowed run can never pass for a normal one. The variable exists to
show that ``swarmtwin regress`` catches a slower build; nothing else sets it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import Any, TypeVar

ENV_VAR = "SWARMTWIN_TEST_DELAY_US"

Receive = Callable[[str, Any, float], None]
Node = TypeVar("Node")


class SlowdownSettingError(ValueError):
    """``SWARMTWIN_TEST_DELAY_US`` is not a whole number of microseconds >= 0."""


def parse_delay(text: str | None) -> int:
    """Microseconds from the variable's text; 0 when unset or empty.

    A value that is not a whole number >= 0 raises ``ValueError`` naming the
    variable: a typo must not silently run an unslowed build.
    """
    if text is None or not text.strip():
        return 0
    try:
        value = int(text.strip())
    except ValueError:
        raise SlowdownSettingError(
            f"{ENV_VAR} must be a whole number of microseconds, got {text!r}"
        ) from None
    if value < 0:
        raise SlowdownSettingError(f"{ENV_VAR} must be >= 0, got {value}")
    return value


DELAY_US = parse_delay(os.environ.get(ENV_VAR))
ACTIVE = DELAY_US > 0


def busy_wait(delay_ns: int) -> None:
    """Spin on the CPU for ``delay_ns`` nanoseconds without yielding."""
    end = time.perf_counter_ns() + delay_ns
    while time.perf_counter_ns() < end:
        pass


def slowed(receive: Receive, delay_us: int) -> Receive:
    """``receive`` preceded by ``delay_us`` microseconds of busy-waiting."""
    delay_ns = delay_us * 1000

    def slow_receive(src: str, msg: Any, now: float) -> None:
        busy_wait(delay_ns)
        receive(src, msg, now)

    return slow_receive


class SlowCoordinator:
    """A coordinator whose ``receive`` busy-waits first; everything else is the
    wrapped one's. A wrapper, not a patched attribute, because the compiled
    core's classes (``native``) have no per-instance attributes to patch.
    ``__class__`` answers the wrapped class so that ``isinstance`` checks hold."""

    def __init__(self, inner: Any, delay_us: int) -> None:
        object.__setattr__(self, "_inner", inner)
        object.__setattr__(self, "receive", slowed(inner.receive, delay_us))

    @property  # type: ignore[misc]
    def __class__(self) -> type:
        return type(object.__getattribute__(self, "_inner"))

    def __getattr__(self, name: str) -> Any:
        return getattr(object.__getattribute__(self, "_inner"), name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_inner"), name, value)


# Bound once at import: with the hook off, the coordinator is left exactly as built.
if ACTIVE:

    def slow_coordinator(coordinator: Node) -> Node:
        """The coordinator, its ``receive`` busy-waiting ``DELAY_US`` first (hook on)."""
        return SlowCoordinator(coordinator, DELAY_US)  # type: ignore[return-value]

else:

    def slow_coordinator(coordinator: Node) -> Node:
        """The coordinator, untouched (the hook is off)."""
        return coordinator


def note() -> str | None:
    """One line for a run's notes when the hook is on, else None."""
    if not ACTIVE:
        return None
    return (
        f"TEST SLOWDOWN ACTIVE: {ENV_VAR}={DELAY_US}: the coordinator busy-waits "
        f"{DELAY_US} us on every message it receives; not a normal build's figures"
    )

"""From the harness's own exceptions to MCP tool errors, in one place.

``tool_errors`` wraps a tool function: an exception that says what the caller got
wrong or what the system could not do (a missing swarm or run, a bad scenario, a
busy job slot, a coordinator that did not answer) becomes a ``ToolError`` with
that sentence, which the client gets as an ``isError`` result. Anything else is a
bug: the SDK logs it and the client gets a generic message, never a traceback.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import ParamSpec, TypeVar

from mcp.server.mcpserver.exceptions import ToolError

from harness.jobs.manager import Busy
from harness.run.catalog import NotFound
from harness.scenario.errors import ScenarioError
from harness.swarm.console import NotAttached, Unreachable
from harness.swarm.swarm import SwarmError

P = ParamSpec("P")
T = TypeVar("T")
EXPECTED = (Busy, NotFound, ScenarioError, NotAttached, Unreachable, SwarmError, ValueError)


def tool_errors(fn: Callable[P, Awaitable[T]]) -> Callable[P, Awaitable[T]]:
    @functools.wraps(fn)
    async def wrapped(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await fn(*args, **kwargs)
        except NotAttached as exc:
            raise ToolError(f"{exc}: start a swarm with swarm_init") from exc
        except EXPECTED as exc:
            raise ToolError(str(exc)) from exc

    return wrapped

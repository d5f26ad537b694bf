"""Memory operations through the web portal's HTTP API: the Locust HTTP user's engine.

How it works. ``HttpMemory`` replays a share of a plan's memory operations as
``POST /api/system/memory`` requests to the portal (``swarmtwin serve
--coordinator``), which carries each through its console agent to the
coordinator and answers with the coordinator's ``MemReply`` (docs/portal.md).
It is open loop, as every load here: ``replay(ops, t0)`` sleeps until each op's
time ``t0 + op.at`` and hands the request to a greenlet of its own, never
waiting for earlier answers, so latency counts from the schedule. At most
``CONCURRENCY`` requests are on the wire at once (a pool of keep-alive
connections). An op due while all of them are taken is shed at the door, as
the agents' own admission sheds (``protocol.agent``): it is never sent, counted
as shed, neither lost nor delivered. Without that, a portal slower than the
load would make every later request wait behind the backlog.

The value a put or compare-and-set writes is the op's payload as hex text (the
API's ``value`` is a string), so a read's value checksums like the write that
made it. Each answered request becomes a ``Completion`` of its origin agent (as
the agent's own ``MemReply`` would) and a ``MemCall`` for the linearizability
check, invoked at its scheduled time (it cannot have taken effect before: the
interval only widens) and returned when the answer came. A request the portal
did not answer with 200 stays unanswered (``returned`` infinite). A 5xx (the
portal's coordinator did not answer in time: 502) is what overload looks like
from here, noted once per status in ``notes``; any other status, or no answer
at all, means the requests themselves are wrong (a bad token: 401 or 403) and
goes into ``errors``, which makes the run invalid. Blocking calls; under Locust,
gevent makes them yield.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import urlsplit

from protocol.messages import MemVerb
from protocol.payload import checksum, make_payload
from protocol.plan import Operation
from protocol.workload import split_memory_target

CONCURRENCY = 32  # connections to the portal per HTTP user
TIMEOUT = 10.0  # s for one request
PATH = "/api/system/memory"
VERB_NAMES = {MemVerb.GET: "get", MemVerb.PUT: "put", MemVerb.CAS: "cas", MemVerb.DELETE: "delete"}


class HttpMemory:
    """One HTTP user: its share of the memory ops, through the portal at ``base``."""

    def __init__(self, name: str, base: str, token: str, epoch: float, spawn: Any) -> None:
        from geventhttpclient import HTTPClient  # Locust's own HTTP client library

        address = urlsplit(base)
        self.client = HTTPClient(
            address.hostname or "127.0.0.1",
            address.port,
            concurrency=CONCURRENCY,
            connection_timeout=TIMEOUT,
            network_timeout=TIMEOUT,
        )
        self.name = name
        self.headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self.epoch = epoch
        self._spawn = spawn
        self.greenlets: list[Any] = []
        self.completions: list[tuple[int, str, float, bool, bool]] = []
        self.calls: list[tuple[Any, ...]] = []  # MemCall fields, on the core clock
        self.pending: dict[int, tuple[Any, ...]] = {}  # sent, not answered yet
        self.shed: list[int] = []
        self.errors: list[str] = []
        self.notes: list[str] = []
        self._statuses: set[int] = set()

    def clock(self) -> float:
        return time.time() - self.epoch

    def replay(self, ops: Sequence[Operation], t0: float, sleep: Callable[[float], None]) -> int:
        """Send ``ops`` open loop at ``t0 + op.at``; how many went out over 1 ms late."""
        late = 0
        for op in ops:
            due = t0 + op.at
            wait = due - self.clock()
            if wait > 0:
                sleep(wait)
            elif -wait > 0.001:
                late += 1
            if len(self.pending) >= CONCURRENCY:  # every connection busy: refuse early
                self.shed.append(op.op_id)
                continue
            self.pending[op.op_id] = ()  # taken now; filled in by ``_send``
            self.greenlets.append(self._spawn(self._send, op, due))
        return late

    def _send(self, op: Operation, due: float) -> None:
        namespace, key = split_memory_target(op.target)
        writes = op.verb in (MemVerb.PUT, MemVerb.CAS)
        value = make_payload(op.op_id, op.size).hex() if writes else ""
        body = {"verb": VERB_NAMES[MemVerb(op.verb)], "namespace": namespace, "key": key}
        body.update(value=value, expected_version=0)
        written = checksum(value.encode()) if writes else 0
        asked = (op.op_id, op.origin, op.verb, namespace, key, due, math.inf, written, 0)
        self.pending[op.op_id] = (*asked, False, 0, 0)  # until answered: maybe took effect
        returned, ok, version, read = math.inf, False, 0, 0
        try:
            response = self.client.post(PATH, json.dumps(body).encode(), headers=self.headers)
            status, data = response.status_code, response.read()
        except Exception as exc:  # noqa: BLE001 - a failed request stays unanswered
            self._error(0, repr(exc))
        else:
            if status == 200:
                returned = self.clock()
                answer = json.loads(data)
                ok, version = bool(answer["ok"]), int(answer["version"])
                if op.verb == MemVerb.GET and ok:
                    read = checksum((answer["value"] or "").encode())
                self.completions.append((op.op_id, op.origin, returned, False, True))
            else:
                self._error(status, data[:200].decode(errors="replace"))
        del self.pending[op.op_id]
        self.calls.append((*asked[:6], returned, written, 0, ok, version, read))

    def _error(self, status: int, text: str) -> None:
        if status not in self._statuses:
            self._statuses.add(status)
            shown = f"HTTP {status}" if status else "no answer"
            line = f"{self.name}: {shown} from the portal: {text}"
            (self.notes if status >= 500 else self.errors).append(line)

    def records(self, t0: float, limit: float) -> dict[str, Any]:
        """What the run needs from this user, on plan time (as ``GreenAgent.records``)."""
        return {
            "agent": self.name,
            "completions": [
                (op_id, node, at - t0, dup, intact)
                for op_id, node, at, dup, intact in self.completions
                if at <= limit
            ],
            "accepted": [],
            "shed": list(self.shed),
            "memory": [
                (*call[:5], call[5] - t0, call[6] - t0, *call[7:])
                if call[6] <= limit
                else (*call[:5], call[5] - t0, math.inf, call[7], call[8], False, 0, 0)
                for call in [*self.calls, *(c for c in self.pending.values() if c)]
            ],
            "registered": None,
            "errors": list(self.errors),
            "notes": list(self.notes),
        }

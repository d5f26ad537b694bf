"""Is a history of memory operations linearizable? A checker for the versioned store.

The model. Each ``(namespace, key)`` is a versioned register, as
``protocol.memory.MemoryStore`` keeps it: absent (version 0) or holding
``(version, checksum of the value)``. ``put`` makes the version one more, a
``cas`` does so only when its expected version is the current one, ``delete``
empties the key (its version back to 0), ``get`` reads. An operation's outcome
(``ok``, the version, the checksum read) must be what the register would answer
at the moment the operation takes effect.

The history. Every client operation has an invocation time (when it was sent)
and a response time (when its answer came back); one whose answer never came is
*pending*: it may have taken effect at any time after it was sent, or never, and
its outcome is unknown. A history is linearizable (Herlihy and Wing) if every
operation can be given one instant between its invocation and response, and
pending ones an instant after their invocation or none, such that the register,
taking the operations one at a time in that order, answers each as it was
answered.

The search (Wing and Gong, with Lowe's memoization, as in Porcupine). Keys are
independent (a register is a local object: a history is linearizable iff each
key's sub-history is), so ``check`` checks each key's operations alone. For one
key, a depth-first search picks the next operation to take effect among those
invoked before the earliest response still to come, applies it to the register
(a pending write may take effect or not: two branches), and backtracks on an
answer that does not match. A cache of (operations taken, register) pairs that
were already explored cuts the search to the distinct configurations. A key
whose search exceeds ``budget`` configurations is reported *unknown*, never
passed; so are the keys left when a run's ``total`` is spent. The search is
exponential in the worst case: many operations on one key overlapping in time
(seconds of latency on a hot key) can leave it unknown.

When a key fails, ``check`` shrinks its history to a small failing sub-history
that explains itself (``shrink``): a handful of operations that show the
violation.

Times are compared inclusively: two operations where one's response and the
other's invocation share an instant are taken as concurrent.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import Enum

from harness.metrics.recovery import check_acked_writes
from harness.metrics.summary import WriteIntegrity
from protocol.messages import MemVerb
from protocol.records import DriverResult, MemCall

INF = float("inf")
DEFAULT_BUDGET = 1_000_000  # configurations explored per key before "unknown"
RUN_BUDGET = 100_000  # the same, when a run's summary checks its history
RUN_TOTAL = 1_000_000  # and for all its keys (a few seconds of search at most)
SHRINK_LIMIT = 400  # a failing key with more operations is shown unshrunk


class Verb(Enum):
    GET = "get"
    PUT = "put"
    CAS = "cas"
    DELETE = "delete"


@dataclass(frozen=True, slots=True)
class MemOp:
    """One client operation on one key, as the client saw it.

    ``checksum`` is the value's (written by put and cas, read by get); ``expected``
    is a cas's expected version. The outcome, when the response came (``returned``
    finite): ``ok``, ``version`` (a get's or failed write's: the version seen; a
    write's: the version it made; a delete's: the one it removed) and, for a get,
    the ``checksum`` read in ``read``."""

    client: str
    namespace: str
    key: str
    verb: Verb
    invoked: float
    returned: float = INF  # INF: pending (no response)
    checksum: int = 0
    expected: int = 0
    ok: bool = False
    version: int = 0
    read: int = 0

    @property
    def pending(self) -> bool:
        return self.returned == INF


Register = tuple[int, int]  # (version, checksum); (0, 0) is absent
ABSENT: Register = (0, 0)


def steps(state: Register | None, op: MemOp) -> list[Register | None]:
    """The registers that can follow ``state`` when ``op`` takes effect there with the
    outcome it reported (none: it cannot take effect there; a pending op's outcome
    is unknown, so every possible one). ``state`` None is a register not known yet
    (``shrink`` starts from it)."""
    if state is None:
        return _from_unknown(op)
    version, crc = state
    verb = op.verb
    if verb is Verb.GET:
        if op.pending:
            return [state]
        if op.ok:
            return [state] if version > 0 and op.version == version and op.read == crc else []
        return [state] if version == 0 else []
    if verb is Verb.PUT:
        if op.pending:
            return [(version + 1, op.checksum), state]  # took effect, or failed / never
        if op.ok:
            return [(version + 1, op.checksum)] if op.version == version + 1 else []
        return [state] if op.version == version else []  # refused (a quota): no change
    if verb is Verb.CAS:
        if op.pending:
            options = [state]
            if op.expected == version:
                options.insert(0, (version + 1, op.checksum))
            return options
        if op.ok:
            fits = op.expected == version and op.version == version + 1
            return [(version + 1, op.checksum)] if fits else []
        return [state] if op.version == version else []  # a mismatch (or a quota)
    # DELETE
    if op.pending:
        return [ABSENT, state] if version > 0 else [state]
    if op.ok:
        return [ABSENT] if version > 0 and op.version == version else []
    return [state] if version == 0 else []


def _from_unknown(op: MemOp) -> list[Register | None]:
    """``steps`` from a register not known yet: what ``op``'s outcome says it holds
    after it (still unknown when the outcome says too little)."""
    if op.pending:
        return [None]
    verb = op.verb
    if verb is Verb.GET:
        return [(op.version, op.read)] if op.ok and op.version > 0 else [] if op.ok else [ABSENT]
    if verb is Verb.PUT or verb is Verb.CAS:
        if not op.ok:
            return [None]
        if op.version < 1 or (verb is Verb.CAS and op.expected != op.version - 1):
            return []
        return [(op.version, op.checksum)]
    if op.ok:  # a delete removed a version that existed
        return [ABSENT] if op.version > 0 else []
    return [ABSENT]


@dataclass(slots=True)
class KeyVerdict:
    """The verdict on one key's operations: ``linearizable`` True, False, or None when
    the search ran out of budget; ``witness``, a small failing sub-history."""

    namespace: str
    key: str
    operations: int
    linearizable: bool | None
    explored: int
    witness: list[MemOp] = field(default_factory=list)


@dataclass(slots=True)
class Verdict:
    """The verdict on a whole history: every key's, and the answer."""

    keys: list[KeyVerdict]

    @property
    def linearizable(self) -> bool | None:
        """True when every key is; False when one is not; None when none failed but
        one ran out of budget (unknown)."""
        if any(k.linearizable is False for k in self.keys):
            return False
        if any(k.linearizable is None for k in self.keys):
            return None
        return True

    @property
    def operations(self) -> int:
        return sum(k.operations for k in self.keys)

    @property
    def failing(self) -> list[KeyVerdict]:
        return [k for k in self.keys if k.linearizable is False]

    def describe(self) -> str:
        """One line: yes, no (with the first failing key's witness), or unknown."""
        answer = self.linearizable
        if answer:
            return f"linearizable: yes ({self.operations} operations on {len(self.keys)} keys)"
        if answer is None:
            unknown = [k for k in self.keys if k.linearizable is None]
            return (
                f"linearizable: unknown ({len(unknown)} of {len(self.keys)} keys exceeded "
                "the search budget; the others are linearizable)"
            )
        first = self.failing[0]
        shown = "; ".join(describe_op(op) for op in first.witness)
        return (
            f"linearizable: no ({len(self.failing)} of {len(self.keys)} keys fail; "
            f"{first.namespace}/{first.key}, a failing sub-history: {shown})"
        )


def describe_op(op: MemOp) -> str:
    """An operation as ``client get -> v3 [t1, t2]``, for the witness."""
    when = f"[{op.invoked:.6f}, {'pending' if op.pending else f'{op.returned:.6f}'}]"
    if op.pending:
        outcome = "?"
    elif op.verb is Verb.GET:
        outcome = f"v{op.version} crc {op.read:#x}" if op.ok else "absent"
    else:
        outcome = f"{'ok' if op.ok else 'refused'} v{op.version}"
    what = op.verb.value
    if op.verb is Verb.CAS:
        what += f"(expect v{op.expected})"
    if op.verb in (Verb.PUT, Verb.CAS):
        what += f" crc {op.checksum:#x}"
    return f"{op.client} {what} -> {outcome} {when}"


def check(
    history: Iterable[MemOp], budget: int = DEFAULT_BUDGET, total: int | None = None
) -> Verdict:
    """Check ``history`` key by key (keys in the order first seen), each within
    ``budget`` configurations and all of them within ``total`` (None: no limit;
    keys left when it is spent are unknown, not searched)."""
    by_key: dict[tuple[str, str], list[MemOp]] = {}
    for op in history:
        by_key.setdefault((op.namespace, op.key), []).append(op)
    verdicts = []
    left = total
    for (namespace, key), ops in by_key.items():
        if left is not None and left <= 0:
            verdicts.append(KeyVerdict(namespace, key, len(ops), None, 0))
            continue
        answer, explored = linearizable(ops, budget if left is None else min(budget, left))
        if left is not None:
            left -= explored
        verdict = KeyVerdict(namespace, key, len(ops), answer, explored)
        if answer is False:
            verdict.witness = shrink(ops, budget)
        verdicts.append(verdict)
    return Verdict(verdicts)


def linearizable(
    ops: Sequence[MemOp], budget: int = DEFAULT_BUDGET, start: Register | None = ABSENT
) -> tuple[bool | None, int]:
    """Whether one key's ``ops`` are linearizable from ``start`` (None: from any
    register), and the configurations explored (None: more than ``budget``)."""
    order = sorted(range(len(ops)), key=lambda i: (ops[i].invoked, ops[i].returned))
    ops = [ops[i] for i in order]
    n = len(ops)
    # (operations taken as a bitset, the register, the first operation not taken)
    seen: set[tuple[int, Register | None]] = set()
    stack: list[tuple[int, Register | None, int]] = [(0, start, 0)]
    explored = 0
    while stack:
        done, state, lo = stack.pop()
        if lo == n:
            return True, explored
        if (done, state) in seen:
            continue
        seen.add((done, state))
        explored += 1
        if explored > budget:
            return None, explored
        # the earliest response still to come; sorted by invocation, no operation
        # invoked after it can hold an earlier one, so the scan stops there
        deadline = INF
        end = lo
        while end < n and ops[end].invoked <= deadline:
            if not done >> end & 1 and ops[end].returned < deadline:
                deadline = ops[end].returned
            end += 1
        # tried in the order of their responses (pushed last first): the one that
        # answered first most often took effect first, so a linearization, when
        # there is one, is found with little backtracking
        ready = [i for i in range(lo, end) if not done >> i & 1 and ops[i].invoked <= deadline]
        ready.sort(key=lambda i: ops[i].returned, reverse=True)
        for i in ready:
            taken = done | 1 << i
            nxt = lo
            while nxt < n and taken >> nxt & 1:
                nxt += 1
            for after in reversed(steps(state, ops[i])):
                stack.append((taken, after, nxt))
    return False, explored


def shrink(ops: Sequence[MemOp], budget: int = DEFAULT_BUDGET) -> list[MemOp]:
    """A small failing sub-history of a non-linearizable ``ops`` that explains itself.

    1. The shortest failing prefix (by invocation): what came after the violation
       is dropped.
    2. Leading operations are dropped while the rest still fails from a register
       not known yet (``start`` None), so the witness needs no history before it:
       a put acked as version 2 and a later read of version 1 fail from any
       register. A prefix that fails only from the empty register (a read of a
       version nobody wrote) keeps its start.
    3. Reads, refused writes and pending operations are dropped one at a time
       while it still fails. Writes that succeeded stay: without one, the versions
       after it would jump, which would fail for the wrong reason.

    Above ``SHRINK_LIMIT`` operations, ``ops`` as given (sorted)."""
    kept = sorted(ops, key=lambda op: (op.invoked, op.returned))
    if len(kept) > SHRINK_LIMIT:
        return kept
    for n in range(1, len(kept) + 1):
        if linearizable(kept[:n], budget)[0] is False:
            kept = kept[:n]
            break
    start: Register | None = ABSENT
    if linearizable(kept, budget, None)[0] is False:
        start = None
        while len(kept) > 1 and linearizable(kept[1:], budget, None)[0] is False:
            kept = kept[1:]
    index = 0
    while index < len(kept):
        op = kept[index]
        wrote = op.ok and not op.pending and op.verb is not Verb.GET
        trial = kept[:index] + kept[index + 1 :]
        if not wrote and trial and linearizable(trial, budget, start)[0] is False:
            kept = trial
        else:
            index += 1
    return kept


VERB_OF = {MemVerb.GET: Verb.GET, MemVerb.PUT: Verb.PUT, MemVerb.CAS: Verb.CAS}
VERB_OF[MemVerb.DELETE] = Verb.DELETE
_VERB_BY_CODE = {int(code): verb for code, verb in VERB_OF.items()}  # no enum call per op


def from_calls(calls: Iterable[MemCall]) -> list[MemOp]:
    """A run's memory requests (``DriverResult.mem_history``) as a history."""
    return [
        MemOp(
            call.client,
            call.namespace,
            call.key,
            _VERB_BY_CODE[call.verb],
            call.invoked,
            call.returned,
            call.checksum,
            call.expected,
            call.ok,
            call.version,
            call.read,
        )
        for call in calls
    ]


def check_integrity(result: DriverResult) -> WriteIntegrity:
    """Acknowledged writes against restarted stores, and the memory history's
    linearizability (a run without memory requests has nothing to check)."""
    integrity = check_acked_writes(result)
    calls = result.mem_history
    if calls is None:
        integrity.linearizability = "not checked: the driver lost part of the memory history"
        return integrity
    if not calls:
        integrity.linearizability = "no memory requests"
        return integrity
    verdict = check(from_calls(calls), RUN_BUDGET, RUN_TOTAL)
    integrity.linearizable = verdict.linearizable
    integrity.history_ops = verdict.operations
    integrity.history_keys = sum(1 for k in verdict.keys if k.linearizable is not None)
    integrity.keys_failing = len(verdict.failing)
    integrity.linearizability = verdict.describe()
    return integrity

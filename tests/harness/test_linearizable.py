"""The linearizability checker against histories whose answer is known: histories made
by running operations one at a time on the real ``MemoryStore`` (at instants inside
random, overlapping intervals) always pass, whatever the overlap and with answers
lost; a stale read, a lost write or a version given twice fails, with a small
witness."""

from __future__ import annotations

import dataclasses
import random
import zlib

from hypothesis import given, settings
from hypothesis import strategies as st

from harness.metrics.linearizable import INF, MemOp, Verb, check, linearizable, shrink
from protocol.memory import MemoryStore
from protocol.messages import MemVerb

VERBS = {Verb.GET: MemVerb.GET, Verb.PUT: MemVerb.PUT, Verb.CAS: MemVerb.CAS}
VERBS[Verb.DELETE] = MemVerb.DELETE


def crc(value: bytes) -> int:
    return zlib.crc32(value)


def run_history(seed: int, count: int, keys: int, spread: float, lost: float) -> list[MemOp]:
    """``count`` random ops on ``keys`` keys, each taking effect on a ``MemoryStore`` at
    instant ``k``, with an invocation up to ``spread`` before and a response up to
    ``spread`` after it; a ``lost`` share of the answers never came (pending)."""
    rng = random.Random(seed)
    store = MemoryStore()
    history = []
    for k in range(count):
        verb = rng.choice(list(Verb))
        key = f"k{rng.randrange(keys)}"
        value = f"v{k}".encode()
        expected = rng.randrange(3)
        reply = store.apply(k, VERBS[verb], "ns", key, value, expected)
        invoked = k - rng.uniform(0, spread)
        returned = INF if rng.random() < lost else k + rng.uniform(0, spread)
        history.append(
            MemOp(
                f"c{k % 7}",
                "ns",
                key,
                verb,
                invoked,
                returned,
                checksum=crc(value),
                expected=expected,
                ok=reply.ok,
                version=reply.version,
                read=crc(reply.value) if verb is Verb.GET and reply.ok else 0,
            )
        )
    rng.shuffle(history)  # the checker must not rely on the order it is given
    return history


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    count=st.integers(1, 60),
    keys=st.integers(1, 4),
    spread=st.floats(0.0, 4.0),
    lost=st.sampled_from([0.0, 0.1, 0.3]),
)
def test_histories_of_the_real_store_are_linearizable(
    seed: int, count: int, keys: int, spread: float, lost: float
) -> None:
    verdict = check(run_history(seed, count, keys, spread, lost))
    assert verdict.linearizable is True, verdict.describe()
    assert verdict.operations == count


def op(verb: Verb, invoked: float, returned: float, **outcome: object) -> MemOp:
    return MemOp("c", "ns", "k", verb, invoked, returned, **outcome)  # type: ignore[arg-type]


def test_a_stale_read_fails_with_the_two_operations_that_show_it() -> None:
    history = [
        op(Verb.PUT, 0, 1, checksum=crc(b"a"), ok=True, version=1),
        op(Verb.PUT, 2, 3, checksum=crc(b"b"), ok=True, version=2),
        op(Verb.GET, 4, 5, ok=True, version=1, read=crc(b"a")),  # after v2 was acked
        op(Verb.GET, 6, 7, ok=True, version=2, read=crc(b"b")),
    ]
    verdict = check(history)
    assert verdict.linearizable is False
    (failing,) = verdict.failing
    # the read of v1 after v2 was acknowledged: it fails whatever came before
    assert [o.invoked for o in failing.witness] == [2, 4]
    assert "a failing sub-history" in verdict.describe()
    # overlapping the read with the second write makes it legal
    history[2] = op(Verb.GET, 2.5, 5, ok=True, version=1, read=crc(b"a"))
    assert check(history).linearizable is True


def test_a_lost_write_and_a_version_given_twice_fail() -> None:
    lost = [
        op(Verb.PUT, 0, 1, checksum=crc(b"a"), ok=True, version=1),
        op(Verb.GET, 2, 3, ok=False),  # absent after an acknowledged put
    ]
    assert check(lost).linearizable is False
    twice = [
        op(Verb.PUT, 0, 1, checksum=crc(b"a"), ok=True, version=1),
        op(Verb.PUT, 0.5, 1.5, checksum=crc(b"b"), ok=True, version=1),
    ]
    assert check(twice).linearizable is False
    cas = [
        op(Verb.PUT, 0, 1, checksum=crc(b"a"), ok=True, version=1),
        op(Verb.CAS, 2, 3, checksum=crc(b"b"), expected=0, ok=True, version=1),
    ]
    assert check(cas).linearizable is False  # a cas that expected the wrong version won


def test_a_pending_write_may_take_effect_or_not() -> None:
    pending = op(Verb.PUT, 0, INF, checksum=crc(b"a"))
    seen = op(Verb.GET, 5, 6, ok=True, version=1, read=crc(b"a"))
    unseen = op(Verb.GET, 7, 8, ok=False)
    assert check([pending, seen]).linearizable is True
    assert check([pending, unseen]).linearizable is True
    assert check([pending, seen, unseen]).linearizable is False  # not undone once seen


def test_keys_are_checked_apart_and_a_small_budget_says_unknown() -> None:
    history = run_history(7, 40, 1, 30.0, 0.0)  # heavy overlap on one key
    answer, explored = linearizable(history, budget=5)
    assert answer is None and explored > 5
    verdict = check(history, budget=5)
    assert verdict.linearizable is None and "unknown" in verdict.describe()
    assert check(history).linearizable is True


def test_shrink_keeps_a_failing_history_failing() -> None:
    base = run_history(3, 30, 1, 0.2, 0.0)
    gets = [o for o in base if o.verb is Verb.GET and o.ok]
    assert gets
    bad = gets[0]
    broken = [o for o in base if o is not bad]
    broken.append(dataclasses.replace(bad, version=bad.version + 7))
    assert linearizable(broken)[0] is False
    witness = shrink(broken)
    assert linearizable(witness)[0] is False and len(witness) <= 3


def test_a_run_records_its_memory_history_and_the_summary_checks_it() -> None:
    """The in-process driver keeps every memory request (answered or not); the summary
    says yes for it, and no, with the failing operations, once one read is made stale."""
    from harness.metrics.figures import summarize
    from real.inproc.run import run_plan
    from tests.sim.test_sim_tree import tree_plan

    plan = tree_plan(
        duration=1.0,
        workload=[{"kind": "memory", "arrival": {"process": "poisson", "rate": 300}}],
    )
    result = run_plan(plan, use_uvloop=False)
    history = result.mem_history
    assert history is not None and len(history) == len(plan.operations)
    integrity = summarize(plan, result).integrity
    assert integrity.linearizable is True and integrity.history_ops == len(history)
    assert integrity.history_keys > 0 and integrity.keys_failing == 0
    # a read answered with a version its key never had
    reads = [c for c in history if c.verb == MemVerb.GET and c.ok]
    assert reads
    bad = reads[-1]._replace(version=reads[-1].version + 5)
    result.mem_history = [bad if c is reads[-1] else c for c in history]
    integrity = summarize(plan, result).integrity
    assert integrity.linearizable is False and integrity.keys_failing == 1
    assert f"{bad.client} get -> v{bad.version}" in integrity.linearizability

"""Topic patterns: validation, matching (``*`` one level, ``#`` the rest) and the index."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from protocol.topics import PatternError, SubscriptionIndex, matches, validate_pattern

FAST = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


# --- validation ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    ["a", "a.b.c", "*", "#", "a.*", "*.b", "a.*.c", "a.#", "*.#", "*.*", "a.b.#", "x" * 256],
)
def test_valid_patterns(pattern: str) -> None:
    validate_pattern(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        "",
        "x" * 257,
        ".",
        "a..b",
        ".a",
        "a.",
        "#.a",
        "a.#.b",
        "#.#",
        "a*",
        "*a",
        "a.b#",
        "#a",
        "a.**",
        "a.*#",
    ],
)
def test_invalid_patterns(pattern: str) -> None:
    with pytest.raises(PatternError):
        validate_pattern(pattern)


def test_pattern_error_is_a_value_error() -> None:
    assert issubclass(PatternError, ValueError)


# --- matching ------------------------------------------------------------------------

CASES = [
    ("a.b", "a.b", True),
    ("a.b", "a.bc", False),
    ("a.b", "a", False),
    ("a.b", "a.b.c", False),
    ("*", "a", True),
    ("*", "a.b", False),
    ("a.*", "a.b", True),
    ("a.*", "a", False),
    ("a.*", "a.b.c", False),
    ("a.*", "b.a", False),
    ("*.b", "a.b", True),
    ("*.b", "a.c", False),
    ("a.*.c", "a.b.c", True),
    ("a.*.c", "a.b.d", False),
    ("a.*.c", "a.c", False),
    ("*.*", "a.b", True),
    ("*.*", "a", False),
    ("#", "a", True),
    ("#", "a.b.c", True),
    ("a.#", "a", True),  # '#' matches zero levels
    ("a.#", "a.b", True),
    ("a.#", "a.b.c.d", True),
    ("a.#", "b", False),
    ("a.#", "ab", False),
    ("a.b.#", "a", False),
    ("*.#", "a", True),
    ("*.#", "a.b.c", True),
    ("a.*.#", "a", False),
    ("a.*.#", "a.b", True),
    ("swarm.*.events", "swarm.t3.events", True),
    ("swarm.#", "swarm.t3.events", True),
]


@pytest.mark.parametrize(("pattern", "topic", "expected"), CASES)
def test_matches(pattern: str, topic: str, expected: bool) -> None:
    assert matches(pattern, topic) is expected


def reference_match(pattern: list[str], topic: list[str]) -> bool:
    """Obviously correct recursive definition."""
    if not pattern:
        return not topic
    head, rest = pattern[0], pattern[1:]
    if head == "#":
        return True  # the rest, including nothing
    if not topic:
        return False
    return (head == "*" or head == topic[0]) and reference_match(rest, topic[1:])


LEVEL = st.sampled_from(("a", "b", "ab"))
topics = st.lists(LEVEL, min_size=1, max_size=4).map(".".join)


@st.composite
def patterns(draw: st.DrawFn) -> str:
    levels = draw(st.lists(LEVEL | st.just("*"), max_size=4))
    if draw(st.booleans()) or not levels:
        levels.append("#")
    return ".".join(levels)


@FAST
@given(patterns(), topics)
def test_matches_agrees_with_reference(pattern: str, topic: str) -> None:
    validate_pattern(pattern)
    assert matches(pattern, topic) == reference_match(pattern.split("."), topic.split("."))


# --- the subscription index ----------------------------------------------------------


def test_subscribers_union_exact_and_wildcards_sorted_once() -> None:
    index = SubscriptionIndex()
    index.add("n3", "a.b")
    index.add("n1", "a.*")
    index.add("n2", "#")
    index.add("n1", "a.b")  # n1 matches twice, listed once
    index.add("n4", "b.*")
    assert index.subscribers("a.b") == ("n1", "n2", "n3")
    assert index.subscribers("b.x") == ("n2", "n4")
    assert index.subscribers("c") == ("n2",)
    assert index.patterns_of("n1") == ("a.*", "a.b")
    assert index.patterns_of("nobody") == ()


def test_cache_is_invalidated_on_add() -> None:
    index = SubscriptionIndex()
    index.add("n1", "a.b")
    assert index.subscribers("a.b") == ("n1",)
    assert index.subscribers("a.b") == ("n1",)  # now cached
    index.add("n2", "a.*")
    assert index.subscribers("a.b") == ("n1", "n2")
    index.add("n3", "a.b")
    assert index.subscribers("a.b") == ("n1", "n2", "n3")


def test_cache_is_invalidated_on_remove() -> None:
    index = SubscriptionIndex()
    index.add("n1", "a.b")
    index.add("n2", "a.*")
    assert index.subscribers("a.b") == ("n1", "n2")
    index.remove("n2", "a.*")
    assert index.subscribers("a.b") == ("n1",)
    index.remove("n1", "a.b")
    assert index.subscribers("a.b") == ()
    assert index.patterns_of("n1") == ()


def test_remove_keeps_other_nodes_on_the_same_pattern() -> None:
    index = SubscriptionIndex()
    index.add("n1", "a.#")
    index.add("n2", "a.#")
    assert index.subscribers("a.x") == ("n1", "n2")
    index.remove("n1", "a.#")
    assert index.subscribers("a.x") == ("n2",)


def test_remove_node_drops_all_its_patterns() -> None:
    index = SubscriptionIndex()
    for pattern in ("a.b", "a.*", "#"):
        index.add("gone", pattern)
    index.add("stays", "a.b")
    assert index.subscribers("a.b") == ("gone", "stays")
    index.remove_node("gone")
    assert index.subscribers("a.b") == ("stays",)
    assert index.subscribers("zzz") == ()
    assert index.patterns_of("gone") == ()


def test_removing_what_is_not_there_is_harmless() -> None:
    index = SubscriptionIndex()
    index.remove("n1", "a.b")
    index.remove_node("n1")
    index.add("n1", "a.b")
    index.remove("n1", "a.*")
    index.remove("n2", "a.b")
    assert index.subscribers("a.b") == ("n1",)


def test_invalid_pattern_is_refused_and_changes_nothing() -> None:
    index = SubscriptionIndex()
    index.add("n1", "a.b")
    assert index.subscribers("a.b") == ("n1",)
    with pytest.raises(PatternError):
        index.add("n2", "a..b")
    assert index.subscribers("a.b") == ("n1",)
    assert index.patterns_of("n2") == ()


OPS = st.lists(
    st.tuples(
        st.sampled_from(("add", "remove", "remove_node", "query")),
        st.sampled_from(("n1", "n2", "n3")),
        patterns(),
        topics,
    ),
    max_size=30,
)


@FAST
@given(OPS)
def test_index_agrees_with_brute_force(ops: list[tuple[str, str, str, str]]) -> None:
    index = SubscriptionIndex()
    model: dict[str, set[str]] = {}
    for action, node, pattern, topic in ops:
        if action == "add":
            index.add(node, pattern)
            model.setdefault(node, set()).add(pattern)
        elif action == "remove":
            index.remove(node, pattern)
            model.get(node, set()).discard(pattern)
        elif action == "remove_node":
            index.remove_node(node)
            model.pop(node, None)
        expected = tuple(sorted(n for n, ps in model.items() if any(matches(p, topic) for p in ps)))
        assert index.subscribers(topic) == expected
        assert index.patterns_of(node) == tuple(sorted(model.get(node, ())))

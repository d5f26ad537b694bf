"""Topic names and wildcard subscription patterns.

Topics are dot-separated levels (``swarm.t3.events``). In a pattern, ``*``
matches exactly one level and ``#`` (only as the last level) matches the rest,
including nothing. ``SubscriptionIndex`` keeps exact patterns in a dict and
only wildcard patterns in a list, and caches each topic's resolved
subscriber set until the subscriptions change, so routing a publish to a
known topic costs one dict lookup. The cache keeps at most
``TOPIC_CACHE_LIMIT`` topics (the oldest cached is dropped first), so
publishing to ever new topic names cannot grow it without bound.
"""

from __future__ import annotations

TOPIC_CACHE_LIMIT = 1 << 17  # above the 100,000 topics a scenario may declare


class PatternError(ValueError):
    """A subscription pattern is not well formed."""


def validate_pattern(pattern: str) -> None:
    """Raise ``PatternError`` unless ``pattern`` is a well-formed topic pattern."""
    if not pattern or len(pattern) > 256:
        raise PatternError("pattern must be 1 to 256 characters")
    levels = pattern.split(".")
    for index, level in enumerate(levels):
        if level == "":
            raise PatternError(f"empty level in pattern {pattern!r}")
        if level == "#" and index != len(levels) - 1:
            raise PatternError(f"'#' must be the last level in {pattern!r}")
        if level not in ("*", "#") and ("*" in level or "#" in level):
            raise PatternError(f"wildcards must be whole levels in {pattern!r}")


def matches(pattern: str, topic: str) -> bool:
    """True when ``topic`` matches ``pattern``."""
    if "*" not in pattern and "#" not in pattern:
        return pattern == topic
    p_levels = pattern.split(".")
    t_levels = topic.split(".")
    for index, level in enumerate(p_levels):
        if level == "#":
            return True
        if index >= len(t_levels):
            return False
        if level != "*" and level != t_levels[index]:
            return False
    return len(p_levels) == len(t_levels)


class SubscriptionIndex:
    """Which nodes follow which patterns, with a per-topic cache of subscribers."""

    def __init__(self) -> None:
        self._exact: dict[str, set[str]] = {}
        self._wild: dict[str, set[str]] = {}
        self._by_node: dict[str, set[str]] = {}
        self._cache: dict[str, tuple[str, ...]] = {}

    def add(self, node: str, pattern: str) -> None:
        validate_pattern(pattern)
        table = self._wild if ("*" in pattern or "#" in pattern) else self._exact
        table.setdefault(pattern, set()).add(node)
        self._by_node.setdefault(node, set()).add(pattern)
        self._cache.clear()

    def remove(self, node: str, pattern: str) -> None:
        for table in (self._exact, self._wild):
            nodes = table.get(pattern)
            if nodes is not None:
                nodes.discard(node)
                if not nodes:
                    del table[pattern]
        self._by_node.get(node, set()).discard(pattern)
        self._cache.clear()

    def remove_node(self, node: str) -> None:
        for pattern in list(self._by_node.get(node, ())):
            self.remove(node, pattern)
        self._by_node.pop(node, None)

    def count(self, node: str) -> int:
        """How many patterns ``node`` follows."""
        patterns = self._by_node.get(node)
        return len(patterns) if patterns is not None else 0

    def has(self, node: str, pattern: str) -> bool:
        patterns = self._by_node.get(node)
        return patterns is not None and pattern in patterns

    def patterns_of(self, node: str) -> tuple[str, ...]:
        return tuple(sorted(self._by_node.get(node, ())))

    def patterns_except(self, node: str) -> tuple[str, ...]:
        """Every pattern some node other than ``node`` follows, sorted."""
        found = [
            pattern
            for table in (self._exact, self._wild)
            for pattern, nodes in table.items()
            if len(nodes) > 1 or node not in nodes
        ]
        return tuple(sorted(found))

    def listing(self, limit: int) -> tuple[list[tuple[str, int]], int]:
        """At most ``limit`` patterns with their subscriber counts (exact ones first,
        in no other order), and how many patterns there are in all."""
        found: list[tuple[str, int]] = []
        for table in (self._exact, self._wild):
            for pattern, nodes in table.items():
                if len(found) >= limit:
                    break
                found.append((pattern, len(nodes)))
        return found, len(self._exact) + len(self._wild)

    def subscribers(self, topic: str) -> tuple[str, ...]:
        """Nodes with at least one pattern matching ``topic``, in sorted order."""
        cached = self._cache.get(topic)
        if cached is not None:
            return cached
        found = set(self._exact.get(topic, ()))
        for pattern, nodes in self._wild.items():
            if matches(pattern, topic):
                found |= nodes
        result = tuple(sorted(found))
        cache = self._cache
        if len(cache) >= TOPIC_CACHE_LIMIT:  # one per topic ever published: bound it
            del cache[next(iter(cache))]
        cache[topic] = result
        return result

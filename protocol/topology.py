"""The shape of a tree of coordinators: their ids, their parents, and where agents attach.

A tree of ``levels`` levels with ``branching`` children per inner coordinator has
a root (``COORDINATOR_ID``, level 1) and, below each inner coordinator, children
numbered from 1: child ``i`` of ``n`` is ``f"{n}.{i}"`` (``coord.2.1``). Agents
attach to the leaves (the coordinators of the last level), at most ``branching``
each, spread round robin: agent ``k`` to leaf ``k mod leaves``. One level is a
flat coordinator. The harness compiles a scenario's ``topology`` into the plan
with these functions, so both drivers build the same tree. ``processes`` deals
the coordinators to the OS processes that host them on tcp (the real
coordinator processes, and the CPUs the model gives them).
"""

from __future__ import annotations

from dataclasses import dataclass

from protocol.nodes import COORDINATOR_ID


@dataclass(frozen=True, slots=True)
class TreeNode:
    """A coordinator below the root, and its parent."""

    node_id: str
    parent: str


def tree(branching: int, levels: int) -> tuple[TreeNode, ...]:
    """Every coordinator below the root, breadth first (parents before children)."""
    nodes: list[TreeNode] = []
    level = [COORDINATOR_ID]
    for _ in range(levels - 1):
        below = [f"{parent}.{i}" for parent in level for i in range(1, branching + 1)]
        nodes.extend(TreeNode(node, node.rsplit(".", 1)[0]) for node in below)
        level = below
    return tuple(nodes)


def leaves(nodes: tuple[TreeNode, ...]) -> list[str]:
    """The coordinators agents attach to: those with no child (the root if alone)."""
    parents = {node.parent for node in nodes}
    found = [node.node_id for node in nodes if node.node_id not in parents]
    return found or [COORDINATOR_ID]


def capacity(branching: int, levels: int) -> int:
    """How many agents the tree takes: ``branching`` per leaf."""
    return branching**levels if levels > 1 else 1 << 30


def ancestries(nodes: tuple[TreeNode, ...]) -> dict[str, tuple[str, ...]]:
    """Each coordinator's parent, grandparent and so on up to the root (the root's is
    empty): where a coordinator re-attaches when its parent dies
    (``protocol.failover``), and, after an agent's own leaf, where the agent fails
    over to. ``nodes`` lists parents before children, as ``tree`` gives them."""
    chains: dict[str, tuple[str, ...]] = {}
    for node in nodes:
        chains[node.node_id] = (node.parent, *chains.get(node.parent, ()))
    return chains


def attach(count: int, nodes: tuple[TreeNode, ...]) -> list[str]:
    """The coordinator of each of ``count`` agents, round robin over the leaves."""
    ends = leaves(nodes)
    return [ends[k % len(ends)] for k in range(count)]


def processes(
    nodes: tuple[TreeNode, ...], count: int, alone: frozenset[str] = frozenset()
) -> list[list[str]]:
    """The coordinators each of ``count`` processes hosts: the root in the first, then
    each child of the root with its whole subtree, round robin (so a parent and its
    child share a process but for the root's links); then one process for each
    coordinator in ``alone`` (those a fault kills: a crash takes down its process).
    ``count <= 0``: one process per coordinator."""
    everyone = [COORDINATOR_ID, *(node.node_id for node in nodes)]
    if count <= 0:
        return [[node] for node in everyone]
    hosted: list[list[str]] = [[] for _ in range(count)]
    home: dict[str, int] = {COORDINATOR_ID: 0}
    tops = 0
    for node in nodes:  # parents before children
        if node.parent == COORDINATOR_ID:
            home[node.node_id] = tops % count
            tops += 1
        else:
            home[node.node_id] = home[node.parent]
    for name in everyone:
        if name not in alone:
            hosted[home[name]].append(name)
    return [ids for ids in hosted if ids] + [[name] for name in everyone if name in alone]

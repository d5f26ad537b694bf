"""How a multiplexing process deals its agents over its links, and each link's voucher.

A tcp worker process hosts many agents over a few connections. ``spread``
deals them round-robin over at most ``links`` links (``links <= 0``: one
link per agent) and names, for every link that carries two or more agents,
a voucher node (``<host>.link<n>``) whose liveness stands for theirs
(``Hello.vouched_by``, docs/protocol.md "Liveness per link"). In a tree a
link carries the agents of one coordinator (a leaf), so ``spread_by_leaf``
spreads each leaf's agents over links of their own, the voucher registered
at that leaf (``<host>-<leaf>.link<n>``). The real worker opens exactly these
links and the model's tcp layout registers the same vouchers, so both worlds
keep liveness per link the same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from protocol.nodes import COORDINATOR_ID


class Link(NamedTuple):
    """One connection of a host: its number, its voucher ("" for none), its agents, and
    the coordinator they attach to (the one coordinator, or a leaf of a tree)."""

    number: int
    voucher: str
    agent_ids: list[str]
    coordinator: str = COORDINATOR_ID


def voucher_id(host: str, index: int) -> str:
    """The voucher node of link ``index`` of ``host``."""
    return f"{host}.link{index}"


def spread(agent_ids: list[str], links: int, host: str) -> list[Link]:
    """Deal ``agent_ids`` round-robin over ``links`` links (all of them if <= 0)."""
    count = len(agent_ids) if links <= 0 else min(links, len(agent_ids))
    groups: list[list[str]] = [[] for _ in range(max(count, 1))]
    for i, node in enumerate(agent_ids):
        groups[i % len(groups)].append(node)
    return [
        Link(i, voucher_id(host, i) if len(group) > 1 else "", group)
        for i, group in enumerate(groups)
        if group
    ]


def spread_by_leaf(agents: Sequence[tuple[str, str]], links: int, host: str) -> list[Link]:
    """A tree's ``spread``: ``agents`` are ``(agent id, its leaf)``; each leaf's agents
    are spread over ``links`` links of their own (numbered across the host), whose
    vouchers are named after the host and the leaf."""
    groups: dict[str, list[str]] = {}
    for agent_id, leaf in agents:
        groups.setdefault(leaf, []).append(agent_id)
    out: list[Link] = []
    for leaf, ids in groups.items():
        for link in spread(ids, links, f"{host}-{leaf}"):
            out.append(Link(len(out), link.voucher, link.agent_ids, leaf))
    return out

"""The faulty network the PBFT and Fast Paxos test clusters share (``pbftnet``, ``fpnet``).

``LossyWire`` holds the messages in flight; ``deliver`` takes them in a random
order, losing or duplicating each with the network's probabilities, and drops
what crosses a partition (``groups``) or goes to a crashed replica (``dead``).
A cluster provides ``ids``, ``nodes`` (each with ``step`` and ``tick``), and
``flush(node)``, its driver loop. ``run_until_done`` runs rounds until the
cluster's clients are done, within a bound.
"""

from __future__ import annotations

import random
from typing import Any


class LossyWire:
    ids: tuple[str, ...]
    nodes: dict[str, Any]
    rng: random.Random
    loss: float
    duplicate: float

    def __init__(self) -> None:
        self.wire: list[Any] = []
        self.dead: set[str] = set()
        self.groups: list[set[str]] = []

    def flush(self, node_id: str) -> None:
        raise NotImplementedError

    def deliver(self) -> int:
        """Deliver everything on the wire, in a random order; how many arrived."""
        wire, self.wire = self.wire, []
        self.rng.shuffle(wire)
        arrived = 0
        touched: set[str] = set()
        for m in wire:
            if m.dst in self.dead or self.cut(m.src, m.dst) or self.rng.random() < self.loss:
                continue
            copies = 2 if self.rng.random() < self.duplicate else 1
            for _ in range(copies):
                self.nodes[m.dst].step(m)
            arrived += 1
            touched.add(m.dst)
        for node in sorted(touched):
            self.flush(node)
        return arrived

    def cut(self, a: str, b: str) -> bool:
        return any((a in g) != (b in g) for g in self.groups)

    def tick(self) -> None:
        for node_id in self.ids:
            if node_id not in self.dead:
                self.nodes[node_id].tick()
                self.flush(node_id)

    def round(self) -> None:
        self.tick()
        for _ in range(3):
            self.deliver()

    def partition(self, *groups: tuple[str, ...]) -> None:
        self.groups = [set(g) for g in groups]

    def heal(self) -> None:
        self.groups = []


def run_until_done(net: Any, rounds: int) -> int:
    """Rounds (clients resubmitting) until ``net.done()``; how many it took."""
    for spent in range(rounds):
        if net.done():
            return spent
        net.resubmit()
        net.round()
    raise AssertionError(f"not done after {rounds} rounds: {len(net.pending)} pending")

"""PBFT's proofs: checking certificates, and the new view every replica computes alike.

A replica proves a request *prepared* at it with a certificate: the primary's
signed pre-prepare and 2f signed prepares from other replicas that match it
(view, number, digest). A stable checkpoint is proved by 2f+1 signed
checkpoint messages that agree. A view change carries both, so a new primary
cannot be lied to: a faulty replica can leave out what it knows, but it cannot
make up a certificate, since it would need 2f signatures of others.

``plan_new_view`` is the rule of Castro and Liskov (OSDI 1999, section 4.4):
from 2f+1 view changes for view v, take the latest stable checkpoint among
them (``low``); for every number above it up to the highest number any
certificate names, re-propose in v the request of the certificate of the
highest view, or a null request (empty data) where none prepared. A request
that committed anywhere prepared at 2f+1 replicas, so at least one correct
replica among any 2f+1 view changes carries its certificate, and no other
request can carry a certificate of a higher view for that number: it stays.
The new primary sends the result as pre-prepares in its ``NEW_VIEW``, and
every backup computes it again from the same view changes before it accepts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from protocol.consensus.pbftmessages import (
    NO_DIGEST,
    PbftMessage,
    PKind,
    authentic,
    request_digest,
)
from protocol.consensus.signing import Keys

Primary = Callable[[int], str]


@dataclass(frozen=True, slots=True)
class Proposal:
    """A request the new view re-proposes at ``seq`` (``data`` empty: a null request)."""

    seq: int
    digest: bytes
    data: bytes


@dataclass(frozen=True, slots=True)
class NewViewPlan:
    low: int  # the latest stable checkpoint among the view changes
    low_digest: bytes
    low_proof: tuple[PbftMessage, ...]
    proposals: tuple[Proposal, ...]


def checkpoint_proven(
    keys: Keys, proof: Iterable[PbftMessage], seq: int, digest: bytes, quorum: int
) -> bool:
    """True when ``proof`` holds ``quorum`` signed checkpoints of (``seq``, ``digest``)
    from distinct replicas (the start, number 0, needs none)."""
    if seq == 0:
        return digest == NO_DIGEST
    senders = {
        m.src
        for m in proof
        if m.kind is PKind.CHECKPOINT and m.seq == seq and m.digest == digest and authentic(keys, m)
    }
    return len(senders) >= quorum


def certified(
    keys: Keys, certificate: tuple[PbftMessage, ...], primary: Primary, f: int
) -> PbftMessage | None:
    """The pre-prepare ``certificate`` proves prepared, or None if it proves nothing."""
    if not certificate:
        return None
    pre = certificate[0]
    if (
        pre.kind is not PKind.PRE_PREPARE
        or pre.src != primary(pre.view)
        or request_digest(pre.data) != pre.digest
        or not authentic(keys, pre)
    ):
        return None
    senders: set[str] = set()
    for m in certificate[1:]:
        if (
            m.kind is PKind.PREPARE
            and (m.view, m.seq, m.digest) == (pre.view, pre.seq, pre.digest)
            and m.src != pre.src
            and m.src not in senders
            and authentic(keys, m)
        ):
            senders.add(m.src)
    return pre if len(senders) >= 2 * f else None


def valid_view_change(keys: Keys, m: PbftMessage, primary: Primary, f: int, window: int) -> bool:
    """A signed view change whose checkpoint is proven and whose certificates hold,
    each for a number within the window above that checkpoint."""
    if m.kind is not PKind.VIEW_CHANGE or not authentic(keys, m):
        return False
    if not checkpoint_proven(keys, m.proof, m.seq, m.digest, 2 * f + 1):
        return False
    for certificate in m.prepared:
        pre = certified(keys, certificate, primary, f)
        if pre is None or not m.seq < pre.seq <= m.seq + window or pre.view >= m.view:
            return False
    return True


def plan_new_view(view_changes: Iterable[PbftMessage], primary: Primary, f: int) -> NewViewPlan:
    """The new view's checkpoint and pre-prepares (module docstring); the view changes
    are assumed valid (``valid_view_change``)."""
    changes = sorted(view_changes, key=lambda m: m.src)
    base = max(changes, key=lambda m: m.seq)
    best: dict[int, PbftMessage] = {}
    for m in changes:
        for certificate in m.prepared:
            pre = certificate[0]
            if pre.seq > base.seq and (pre.seq not in best or pre.view > best[pre.seq].view):
                best[pre.seq] = pre
    top = max(best, default=base.seq)
    null = request_digest(b"")
    proposals = []
    for seq in range(base.seq + 1, top + 1):
        chosen = best.get(seq)
        if chosen is None:
            proposals.append(Proposal(seq, null, b""))
        else:
            proposals.append(Proposal(seq, chosen.digest, chosen.data))
    return NewViewPlan(base.seq, base.digest, base.proof, tuple(proposals))

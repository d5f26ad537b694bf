"""What PBFT replicas say to each other, and what a signature covers.

A ``PbftMessage`` is one of nine kinds (``PKind``); the fields a kind does not
use stay at their defaults. Every message is signed by its sender
(``protocol.consensus.signing``) over ``signed_digest``: everything but the
destination and the signature itself, a request's bytes through their digest,
and nested messages (a view change's certificates, a new view's proofs)
through their own signatures, which bind their content in turn. So one signed
message can be forwarded inside another and still prove who said it.

- ``PRE_PREPARE`` (primary): request ``data``, digest ``digest``, gets number
  ``seq`` in ``view``.
- ``PREPARE``, ``COMMIT`` (each replica): I accepted / I saw prepared ``(view,
  seq, digest)``.
- ``CHECKPOINT``: my state after executing ``seq`` is ``digest`` (a hash chain
  of the executed requests' digests).
- ``VIEW_CHANGE``: move to ``view``. ``seq`` and ``digest`` are my last stable
  checkpoint, ``proof`` its 2f+1 checkpoint messages; ``prepared`` holds, for
  each number above it that prepared at me, the pre-prepare and 2f prepares.
- ``NEW_VIEW`` (the new primary): ``proof`` is 2f+1 view changes for ``view``,
  ``prepared`` the pre-prepares for the new view that every replica can
  recompute from them (``protocol.consensus.pbftview``).
- ``BEAT``: the primary is alive in ``view``; ``seq`` is the last number it gave.
- ``FETCH``: send me what was executed after ``seq``.
- ``STATE``: executed entries (``entries``) after ``seq``, and in ``proof`` the
  sender's last stable checkpoint: a replica takes an entry once f+1 replicas
  sent the same, and the checkpoint on its 2f+1 signatures.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from enum import IntEnum

from protocol.consensus.log import Entry
from protocol.consensus.signing import Keys

NO_DIGEST = b""


class PKind(IntEnum):
    PRE_PREPARE = 1
    PREPARE = 2
    COMMIT = 3
    CHECKPOINT = 4
    VIEW_CHANGE = 5
    NEW_VIEW = 6
    BEAT = 7
    FETCH = 8
    STATE = 9


@dataclass(frozen=True, slots=True)
class PbftMessage:
    kind: PKind
    src: str
    view: int
    seq: int = 0
    digest: bytes = NO_DIGEST
    data: bytes = b""
    proof: tuple[PbftMessage, ...] = ()
    prepared: tuple[tuple[PbftMessage, ...], ...] = ()
    entries: tuple[Entry, ...] = ()
    dst: str = ""
    sig: bytes = b""


def request_digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def chain(previous: bytes, digest: bytes) -> bytes:
    """The state digest after executing a request of ``digest`` on state ``previous``."""
    return hashlib.sha256(previous + digest).digest()


def signed_digest(m: PbftMessage) -> bytes:
    """What ``m``'s signature covers (the module docstring)."""
    h = hashlib.sha256()
    h.update(f"{int(m.kind)}|{m.src}|{m.view}|{m.seq}|".encode())
    h.update(m.digest)
    h.update(b"|")
    h.update(hashlib.sha256(m.data).digest())
    for nested in m.proof:
        h.update(nested.sig)
    for certificate in m.prepared:
        h.update(b"#")
        for nested in certificate:
            h.update(nested.sig)
    for entry in m.entries:
        h.update(f"{entry.index}/{entry.term}/".encode())
        h.update(hashlib.sha256(entry.data).digest())
    return h.digest()


def sign(keys: Keys, m: PbftMessage) -> PbftMessage:
    """``m`` as said by the owner of ``keys``, signed."""
    m = replace(m, src=keys.id)
    return replace(m, sig=keys.sign(signed_digest(m)))


def authentic(keys: Keys, m: PbftMessage) -> bool:
    """True when ``m`` carries its sender's signature."""
    return keys.verify(m.src, signed_digest(m), m.sig)


def to(m: PbftMessage, dst: str) -> PbftMessage:
    """A copy of signed message ``m`` addressed to ``dst`` (the signature still holds)."""
    return replace(m, dst=dst)

"""Signatures for the Byzantine protocols: Ed25519, one key pair per replica.

PBFT's safety rests on a replica being unable to speak for another: a
certificate of 2f+1 prepares proves something only if each prepare came from
the replica it names. Castro and Liskov's first PBFT signs every message with
public-key signatures; this module does the same, with Ed25519 from the
``cryptography`` package (OpenSSL). ``Keys`` holds one replica's private key
and every replica's public key; ``sign`` and ``verify`` work on a message's
digest (``protocol.consensus.pbftmessages.signed_digest``).

``cluster_keys(ids, seed)`` derives every replica's key pair from a seed, so
that a run (and the model of it) is reproducible: in a deployment each replica
would generate its own and publish only the public half. The keys are a
simulation's, and the trust model is the paper's: a faulty replica may say
anything under its own name, and nothing under another's.
"""

from __future__ import annotations

import hashlib

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SIGNATURE_BYTES = 64


class Keys:
    """One replica's signing key and every replica's verifying key."""

    def __init__(self, node_id: str, private: bytes, public: dict[str, bytes]) -> None:
        self.id = node_id
        self._private = Ed25519PrivateKey.from_private_bytes(private)
        self._public = {n: Ed25519PublicKey.from_public_bytes(k) for n, k in public.items()}
        self.signed = 0  # signatures made and checked, for the run's figures
        self.checked = 0

    def sign(self, digest: bytes) -> bytes:
        self.signed += 1
        return self._private.sign(digest)

    def verify(self, node: str, digest: bytes, signature: bytes) -> bool:
        """True when ``signature`` is ``node``'s over ``digest`` (False for a stranger)."""
        key = self._public.get(node)
        if key is None or len(signature) != SIGNATURE_BYTES:
            return False
        self.checked += 1
        try:
            key.verify(signature, digest)
        except InvalidSignature:
            return False
        return True


def cluster_keys(ids: tuple[str, ...], seed: bytes) -> dict[str, Keys]:
    """Every replica's ``Keys``, each key pair derived from ``seed`` and its id."""
    private = {n: hashlib.sha256(seed + b"/" + n.encode()).digest() for n in ids}
    public = {
        n: Ed25519PrivateKey.from_private_bytes(k)
        .public_key()
        .public_bytes(Encoding.Raw, PublicFormat.Raw)
        for n, k in private.items()
    }
    return {n: Keys(n, private[n], public) for n in ids}

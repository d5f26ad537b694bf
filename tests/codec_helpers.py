"""Shared pieces of the codec tests: Hypothesis settings, strategies derived from
each message dataclass's annotations, and frame builders for hostile input.
"""

from __future__ import annotations

import struct

import msgpack
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from protocol import messages as m
from protocol.codec import VERSION, field_kinds
from protocol.messages import MESSAGE_TYPES

FAST = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

# The wire codes, as docs/protocol.md documents them. Changing one is a protocol change.
CODES = {
    "Hello": 1,
    "Welcome": 2,
    "Reject": 3,
    "Heartbeat": 4,
    "Probe": 5,
    "ProbeReply": 6,
    "Subscribe": 10,
    "Unsubscribe": 11,
    "Publish": 12,
    "Direct": 13,
    "Broadcast": 14,
    "Accepted": 15,
    "Busy": 16,
    "Deliver": 17,
    "Ack": 18,
    "TaskSubmit": 20,
    "TaskResult": 21,
    "TaskDone": 22,
    "TaskDoneAck": 23,
    "MemRequest": 30,
    "MemReply": 31,
    "Error": 40,
    "PeerHello": 60,
    "Interest": 61,
    "InterestAck": 62,
    "MemForward": 63,
    "MemBack": 64,
    "Load": 65,
    "StealRequest": 66,
    "StealReply": 67,
    "TaskBack": 68,
    "TaskBackAck": 69,
    "Consensus": 90,
    "StatusRequest": 50,
    "StatusReply": 51,
    "ListRequest": 52,
    "ListReply": 53,
    "QuorumRead": 70,
    "QuorumWrite": 71,
    "QuorumCell": 72,
    "QuorumWritten": 73,
}

# --- strategies, derived from each dataclass's field annotations ----------------------

INT = st.integers(-(2**63), 2**64 - 1)  # everything msgpack can carry
METRICS = st.lists(
    st.tuples(
        st.text(min_size=1, max_size=8), INT | st.floats(allow_nan=False, allow_infinity=False)
    ),
    max_size=4,
    unique_by=lambda pair: pair[0],
).map(tuple)
COMPONENTS = st.lists(
    st.builds(
        m.ComponentStatus,
        st.text(min_size=1, max_size=12),
        st.sampled_from(m.HEALTH_STATES),
        METRICS,
    ),
    max_size=4,
    unique_by=lambda component: component.name,
).map(tuple)
FIELD_STRATEGIES: dict[str, st.SearchStrategy] = {
    "str": st.text(max_size=40),
    "int": INT,
    "float": st.floats(allow_nan=False),
    "bool": st.booleans(),
    "bytes": st.binary(max_size=64),
    "tuple[str, ...]": st.lists(st.text(max_size=10), max_size=5).map(tuple),
    "tuple[int, ...]": st.lists(INT, max_size=8).map(tuple),
    "tuple[ComponentStatus, ...]": COMPONENTS,
}


def strategy_for(cls: type) -> st.SearchStrategy:
    return st.builds(cls, *(FIELD_STRATEGIES[kind] for _, kind in field_kinds(cls)))


any_message = st.one_of(*(strategy_for(cls) for cls in MESSAGE_TYPES))


def frame(body: bytes, version: int = VERSION) -> bytes:
    """A frame around an arbitrary body (no checks)."""
    return struct.pack(">I", len(body) + 1) + bytes((version,)) + body


def packed(*values: object) -> bytes:
    return msgpack.packb(list(values), use_bin_type=True)


SAMPLE = m.Publish(7, "swarm.t3.events", b"hello", 0x3610A686)

STREAM = [
    m.Hello("a1", "tok", ("gpu",), ("x.*", "#")),
    SAMPLE,
    m.Ack((1, 2, 3)),
    m.MemRequest(9, m.MemVerb.CAS, "ns", "k", b"\x00" * 300, 4),
    m.Error(""),
]

"""Raft's tricky cases as interaction scripts, in the style of etcd's data-driven tests.

Each file in ``scripts/`` is a sequence of blocks: a command, a ``----`` line,
and what the command must print, then a blank line. Lines starting with ``#``
are comments. Messages are delivered in the order they were sent (no loss
unless a command says so), so every script is deterministic. Run with
``SWARMTWIN_REWRITE=1`` to write what the commands print now into the files
(then read the diff before keeping it).

Commands (replicas are ``r1`` ... ``rN``):

- ``cluster N [pre-vote=false] [check-quorum=false] [max-uncommitted=K]
  [max-entries=K] [compact=K]``
- ``campaign R``: R starts an election now; prints the messages it sends
- ``tick R [N]``, ``tick-all [N]``: ticks, printing the messages sent
- ``stabilize``: deliver until nothing is in flight, printing every message
  sent, and what each replica installs, applies and may read
- ``deliver``: deliver what is in flight now, once
- ``rounds N``: N times, tick every replica and deliver what is in flight
- ``drop``: lose everything in flight
- ``propose R K V``: R proposes ``put K V``; prints the entry or the refusal
- ``read R CONTEXT``: R asks for a read-index
- ``compact R``: R replaces its applied entries by a snapshot
- ``isolate R``, ``partition R1,R2 R3,...``, ``heal``
- ``leader-lost R``: R's driver saw the leader's link close (``Raft.leader_lost``)
- ``hold R``: R's driver stops writing (messages reach R, nothing it produces is
  persisted or sent) until ``release R``
- ``crash R``, ``torn R [K]`` (a crash in the middle of a write that keeps K of
  its writes: snapshot, entries, hard state), ``restart R``
- ``status``: every replica's role, term, vote, leader and log indexes
- ``log R``: R's entries, as term/index (a crashed replica's: its storage's)
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from protocol.consensus.log import Snapshot
from protocol.consensus.raft import RaftConfig, Refusal
from tests.core.consensus.raftnet import RaftNet, describe_node

SCRIPTS = Path(__file__).parent / "scripts"
NO_COMPACTION = 10**9


class Script:
    def __init__(self) -> None:
        self.net: RaftNet | None = None

    @property
    def cluster(self) -> RaftNet:
        assert self.net is not None, "the script must start with 'cluster N'"
        return self.net

    def run(self, command: str) -> list[str]:
        words = command.split()
        verb, args = words[0], words[1:]
        if verb == "cluster":
            return self.make(args)
        net = self.cluster
        net.log = []
        if verb == "campaign":
            net.nodes[args[0]].campaign()
            net.flush(args[0])
        elif verb == "tick":
            for _ in range(int(args[1]) if len(args) > 1 else 1):
                net.tick((args[0],))
        elif verb == "tick-all":
            for _ in range(int(args[0]) if args else 1):
                net.tick()
        elif verb == "rounds":
            for _ in range(int(args[0])):
                net.round()
        elif verb == "stabilize":
            net.settle(rounds=200)
        elif verb == "deliver":
            net.deliver()
        elif verb == "drop":
            count = len(net.wire)
            net.wire = []
            return [f"dropped {count}"]
        elif verb == "propose":
            node, key, value = args
            entry = net.nodes[node].propose(f"put {key} {value}".encode())
            result = entry.value if isinstance(entry, Refusal) else f"{entry.term}/{entry.index}"
            net.flush(node)
            return [f"{node} proposes put {key} {value}: {result}", *net.log]
        elif verb == "read":
            accepted = net.nodes[args[0]].read_index(args[1].encode())
            net.flush(args[0])
            return [f"{args[0]} read {args[1]}: {'asked' if accepted else 'not the leader'}"]
        elif verb == "compact":
            node = net.nodes[args[0]]
            snapshot = node.compact(node.log.applied, net.state[args[0]].dump())
            net.flush(args[0])
            return [f"{args[0]} snapshot {snapshot.term}/{snapshot.index}"]
        elif verb == "isolate":
            net.partition((args[0],), tuple(n for n in net.ids if n != args[0]))
        elif verb == "partition":
            net.partition(*(tuple(group.split(",")) for group in args))
        elif verb == "heal":
            net.heal()
        elif verb == "leader-lost":
            net.nodes[args[0]].leader_lost()
        elif verb == "hold":
            net.held.add(args[0])
        elif verb == "release":
            net.held.discard(args[0])
            net.flush(args[0])
        elif verb in ("crash", "torn"):
            keep = int(args[1]) if len(args) > 1 else None
            net.crash(args[0], torn=verb == "torn", keep=keep)
        elif verb == "restart":
            net.restart(args[0])
        elif verb == "status":
            return [describe_node(net.nodes[n], n in net.down) for n in net.ids]
        elif verb == "log":  # a crashed replica's: what its storage holds
            if args[0] in net.down:
                stored = net.stored[args[0]]
                snap, listed = stored.snapshot or Snapshot(0, 0), stored.entries
            else:
                snap, listed = (
                    net.nodes[args[0]].log.snapshot,
                    tuple(net.nodes[args[0]].log.entries),
                )
            entries = " ".join(f"{e.term}/{e.index}" for e in listed)
            return [f"{args[0]}: snap={snap.term}/{snap.index} {entries}".rstrip()]
        else:
            raise ValueError(f"unknown command {verb!r}")
        return net.log or ["ok"]

    def make(self, args: list[str]) -> list[str]:
        options = dict(arg.split("=") for arg in args[1:])
        config = RaftConfig(
            pre_vote=options.pop("pre-vote", "true") == "true",
            check_quorum=options.pop("check-quorum", "true") == "true",
            max_uncommitted=int(options.pop("max-uncommitted", 4096)),
            max_entries=int(options.pop("max-entries", 64)),
        )
        compact = int(options.pop("compact", NO_COMPACTION))
        if options:
            raise ValueError(f"unknown cluster options {sorted(options)}")
        self.net = RaftNet(int(args[0]), seed=0, config=config, compact_every=compact)
        self.net.trace = True
        self.net.reorder = False
        self.net.links_close = False  # scripts say so with leader-lost
        return ["ok"]


def parse(text: str) -> list[tuple[str, list[str]]]:
    blocks = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.startswith("#"):
            continue
        assert lines[i] == "----", f"line {i + 1}: expected ---- after {line!r}"
        i += 1
        expected = []
        while i < len(lines) and lines[i].strip():
            expected.append(lines[i])
            i += 1
        blocks.append((line, expected))
    return blocks


def render(text: str, outputs: dict[str, list[str]]) -> str:
    """``text`` with each command's expected output replaced by what it printed."""
    out: list[str] = []
    lines = text.splitlines()
    i = 0
    count = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        if not line.strip() or line.startswith("#"):
            out.append(line)
            continue
        out.extend([line, "----", *outputs[f"{count}"]])
        count += 1
        i += 1
        while i < len(lines) and lines[i].strip():
            i += 1
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("path", sorted(SCRIPTS.glob("*.txt")), ids=lambda p: p.stem)
def test_script(path: Path) -> None:
    text = path.read_text()
    script = Script()
    outputs: dict[str, list[str]] = {}
    failures = []
    for number, (command, expected) in enumerate(parse(text)):
        got = script.run(command)
        outputs[f"{number}"] = got
        if got != expected:
            failures.append(
                f"{command}\n  expected:\n    "
                + "\n    ".join(expected)
                + "\n  got:\n    "
                + "\n    ".join(got)
            )
    if os.environ.get("SWARMTWIN_REWRITE"):
        path.write_text(render(text, outputs))
        return
    assert not failures, f"{path.name}:\n" + "\n".join(failures)


def test_every_script_ends_with_one_leader_or_says_why() -> None:
    """The scripts are read as well as run: each ends with a status."""
    for path in SCRIPTS.glob("*.txt"):
        commands = [command for command, _ in parse(path.read_text())]
        assert commands[-1] == "status", f"{path.name} does not end with 'status'"

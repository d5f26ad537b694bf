"""Replicated coordinators: consensus protocols as sans-IO state machines.

Each protocol here is pure and synchronous like the rest of ``protocol/``: a
driver hands a replica the messages it received (``step``) and the passing of
time in ticks (``tick``), takes back what to persist, what to send and what was
committed (``ready``), and says when that is done (``advance``). The replicas
never read a clock, never sleep and use no randomness: a replica's election
jitter is a hash of its id and term.

- ``raft``: Raft as etcd's raft shapes it (pre-vote, check-quorum, log
  replication with probing and pipelining, snapshots, read-index), with
  ``log`` (the replicated log and what of it is persisted) and ``progress``
  (the leader's view of each follower).
- ``replica``: a replicated coordinator: Raft underneath, the coordinator on
  top while the replica leads, every answer held until a quorum holds what it
  reports; ``state`` is the replicated state and its encoding.
"""

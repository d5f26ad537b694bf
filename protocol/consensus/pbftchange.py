"""PBFT's view changes (one part of ``protocol.consensus.pbft``).

A backup that suspects the primary stops taking part in its view and sends
``VIEW_CHANGE`` for the next, with its stable checkpoint and a certificate for
every request prepared at it above (``protocol.consensus.pbftview`` checks
them and plans the new view). A replica that sees f+1 replicas ask for later
views joins the earliest of them; one that asked alone waits (its timer runs
only once 2f+1 asked). The primary of the new view, with 2f+1 valid view
changes, sends ``NEW_VIEW`` with the pre-prepares of the plan; a backup checks
every proof and computes the plan again before it enters. A replica in an old
view is sent the ``NEW_VIEW`` of the current one, which proves itself.
"""

from __future__ import annotations

from protocol.consensus.pbftmessages import NO_DIGEST, PbftMessage, PKind, authentic, sign, to
from protocol.consensus.pbftstate import PbftState
from protocol.consensus.pbftview import checkpoint_proven, plan_new_view, valid_view_change


class ViewChange(PbftState):
    def _start_view_change(self, view: int) -> None:
        if self.changing is not None and view <= self.changing:
            return
        self.changing = view
        self.elapsed = 0
        certificates = tuple(
            s.certificate
            for seq, s in sorted(self.slots.items())
            if seq > self.low and s.certificate
        )
        m = PbftMessage(
            PKind.VIEW_CHANGE,
            self.id,
            view,
            self.low,
            self.digests.get(self.low, NO_DIGEST),
            proof=self.low_proof,
            prepared=certificates,
        )
        m = sign(self.keys, m)
        self.view_changes.setdefault(view, {})[self.id] = m
        self._broadcast(m)
        self._maybe_new_view(view)

    def _on_view_change(self, m: PbftMessage) -> None:
        current = self.view if self.changing is None else self.changing
        if m.view <= self.view:
            self._tell_view(m.src)  # it missed the view we are in
            return
        if not valid_view_change(self.keys, m, self.primary, self.f, self.config.window):
            self.refused.append(f"an invalid view change from {m.src}")
            return
        self.view_changes.setdefault(m.view, {})[m.src] = m
        asking = {
            src: v for v, changes in self.view_changes.items() if v > current for src in changes
        }
        if len(asking) >= self.f + 1:  # f+1 want a later view: one of them is correct
            self._start_view_change(min(asking.values()))
        self._maybe_new_view(m.view)

    def _tell_view(self, node: str) -> None:
        """Send ``node`` the ``NEW_VIEW`` that made the view we are in (it proves itself:
        2f+1 signed view changes), at most once per retransmission interval."""
        installed = self._new_view
        last = self._told.get(node)
        if installed is None or installed.src == node:
            return
        if last is not None and self.ticks - last < self.config.retransmit_ticks:
            return
        self._told[node] = self.ticks
        self._messages.append(to(installed, node))

    def _maybe_new_view(self, view: int) -> None:
        changes = self.view_changes.get(view, {})
        if self.changing != view or self.primary(view) != self.id or len(changes) < self.quorum:
            return
        chosen = tuple(sorted(changes.values(), key=lambda m: m.src)[: self.quorum])
        plan = plan_new_view(chosen, self.primary, self.f)
        pres = tuple(
            (
                sign(
                    self.keys,
                    PbftMessage(PKind.PRE_PREPARE, self.id, view, p.seq, p.digest, p.data),
                ),
            )
            for p in plan.proposals
        )
        new_view = sign(
            self.keys, PbftMessage(PKind.NEW_VIEW, self.id, view, proof=chosen, prepared=pres)
        )
        self._new_view = new_view
        self._broadcast(new_view)
        self._enter(view, plan.low, plan.low_digest, plan.low_proof, [p[0] for p in pres])
        self.campaign()

    def _on_new_view(self, m: PbftMessage) -> None:
        current = self.view if self.changing is None else self.changing
        if m.view < current or m.view <= self.view or m.src != self.primary(m.view):
            return
        changes = {c.src: c for c in m.proof if c.view == m.view}
        valid = len(changes) >= self.quorum and all(
            valid_view_change(self.keys, c, self.primary, self.f, self.config.window)
            for c in changes.values()
        )
        plan = plan_new_view(changes.values(), self.primary, self.f) if valid else None
        pres = [certificate[0] for certificate in m.prepared if certificate]
        expected = [(p.seq, p.digest, p.data) for p in plan.proposals] if plan else None
        offered = [(p.seq, p.digest, p.data) for p in pres]
        if (
            plan is None
            or expected != offered
            or not all(
                p.src == m.src and p.view == m.view and authentic(self.keys, p) for p in pres
            )
        ):
            self.refused.append(f"an invalid new view {m.view} from {m.src}")
            return
        self._new_view = m
        self._enter(m.view, plan.low, plan.low_digest, plan.low_proof, pres)

    def _enter(
        self,
        view: int,
        low: int,
        low_digest: bytes,
        low_proof: tuple[PbftMessage, ...],
        pres: list[PbftMessage],
    ) -> None:
        self.view, self.changing = view, None
        self.elapsed = self.attempts = 0
        self.expected = dict.fromkeys(self.expected, 0)  # the new primary's turn
        self._reads = []
        for old in [v for v in self.view_changes if v <= view]:
            del self.view_changes[old]
        if low > self.low and checkpoint_proven(self.keys, low_proof, low, low_digest, self.quorum):
            self._stabilize(low, low_digest, low_proof)
        for slot in self.slots.values():
            if not slot.committed:
                slot.pre, slot.accepted, slot.prepares, slot.commits = None, False, {}, {}
        for pre in pres:
            if pre.seq > self.low:
                self._accept(pre)
        self.next_seq = max([self.low, self.log.committed, *(p.seq for p in pres)]) + 1

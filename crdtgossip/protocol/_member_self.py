"""The member table's own row: refuting what others say of this node, leaving, and
this node's replica id.

A rumor about this node that it can outrank (a higher incarnation, from an earlier
life; its own incarnation at another address) is refuted by announcing itself alive at
a higher incarnation; so is a push-pull row that gives it, at its own incarnation,
another replica id than its own (an earlier life that had another id, seen at the same
incarnation): a row at a higher incarnation carries only the id of that incarnation,
and a rumor raising a member's incarnation makes its id unknown again, so the new
incarnation brings the table everywhere to the current id.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.member_table import MemberState
from crdtgossip.protocol.messages import Alive, Dead, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import Status

__all__ = ["MemberSelf"]


class MemberSelf:
    """The local row's half of :class:`~crdtgossip.protocol.membership.Membership`."""

    local_id: str
    leaving: bool
    _members: dict[str, MemberState]
    _awareness: Awareness
    _broadcast: Callable[[Alive | Suspect | Dead | Left, tuple[str, ...]], None]

    def _set_status(self, member: MemberState, status: Status, now: float) -> None:
        raise NotImplementedError

    @property
    def local(self) -> MemberState:
        """The local node's own row."""
        return self._members[self.local_id]

    def local_alive(self) -> Alive:
        """The rumor announcing this node alive at its current incarnation."""
        local = self.local
        return Alive(local.node_id, local.address, local.incarnation)

    def _about_self(self, rumor: Alive | Suspect | Dead | Left) -> bool:
        local = self.local
        if self.leaving:
            return False
        if isinstance(rumor, Alive):
            # Someone knows us at a higher incarnation (an earlier life of this node),
            # or at ours but elsewhere: outrank it.
            stale = rumor.incarnation > local.incarnation or (
                rumor.incarnation == local.incarnation and rumor.address != local.address
            )
            if not stale:
                return False
        elif rumor.incarnation < local.incarnation:
            return False
        self.refute(rumor.incarnation)
        return True

    def _replica_about_self(self, record: MemberRecord) -> None:
        """Refute a push-pull row about this node, at its incarnation, that gives it
        another replica id than its own (see the module's docstring)."""
        local = self.local
        if (
            record.replica
            and local.replica
            and record.incarnation == local.incarnation
            and record.replica != local.replica
            and not self.leaving
        ):
            self.refute(record.incarnation)

    def refute(self, incarnation: int) -> None:
        """Announce this node alive above ``incarnation`` (it was suspected, declared
        dead, or known from an earlier life). Refuting lowers local health (Lifeguard):
        being suspected hints that this node is slow to answer.

        Args:
            incarnation: the incarnation the rumor about this node carried.
        """
        local = self.local
        local.incarnation = max(local.incarnation, incarnation) + 1
        self._awareness.apply(1)
        self._broadcast(self.local_alive(), ())

    def renew_replica(self, replica_id: str) -> None:
        """This node writes under ``replica_id`` from now on (the rollback check gave it
        a fresh one): its row says so, at a new incarnation announced alive, so that
        every member's table moves to the new id (see the module's docstring).

        Args:
            replica_id: the new id, already checked.
        """
        local = self.local
        if replica_id == local.replica:
            return
        local.replica = sys.intern(replica_id)
        if not self.leaving:
            local.incarnation += 1
            self._broadcast(self.local_alive(), ())

    def leave(self) -> Left:
        """Start leaving: stop refuting and return the goodbye to spread.

        Returns:
            The rumor that this node left.
        """
        self.leaving = True
        local = self.local
        self._set_status(local, Status.LEFT, local.since)
        return Left(local.node_id, local.incarnation)

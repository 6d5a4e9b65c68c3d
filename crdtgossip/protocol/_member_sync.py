"""The push-pull side of the member table: the records it ships, merging a table
received, and the members' replica ids, which only these rows carry.

A push-pull ships every row (N of them), so both directions keep to the rows: the
records of an unchanged adopted :class:`FormedTable` are built once and shared, and a
received table's rows that say nothing new are skipped before any rumor is built.

Each row holds its member's replica id at its incarnation, or none if unknown (see
:attr:`MemberState.replica`). A received row's id, if it has one, is taken when the
row is taken: once the row is merged, the member's row is at the received row's
incarnation. A row with no id never makes a known one unknown, and an older row never
replaces one; the alive and suspicion rumors carry no id (they are the bulk of the
traffic), so one that raises a member's incarnation makes its id unknown until a row
of the new incarnation brings it.
"""

from __future__ import annotations

from collections.abc import Iterable

from crdtgossip.protocol._member_self import MemberSelf
from crdtgossip.protocol.member_messages import alive_rumor, lookup_record, member_record
from crdtgossip.protocol.member_table import FormedTable, MemberState
from crdtgossip.protocol.messages import Alive, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import STATUS_CODES, Status

_ALIVE = Status.ALIVE  # a module constant: reading it off the enum is 8x slower

__all__ = ["MemberSync"]


class MemberSync(MemberSelf):
    """The push-pull half of :class:`~crdtgossip.protocol.membership.Membership`."""

    local_id: str
    _members: dict[str, MemberState]
    _shared: dict[str, MemberState]
    _forgotten: set[str]
    _alive_at: dict[str, int]
    _sorted_ids: list[str]
    _table: FormedTable | None

    def apply(self, rumor: Alive | Suspect | Left, now: float, origin: str | None = None) -> bool:
        raise NotImplementedError

    def _add_stranger(
        self, rumor: Alive, now: float, origin: str | None, replica: str = ""
    ) -> None:
        raise NotImplementedError

    def get(self, node_id: str) -> MemberState | None:
        raise NotImplementedError

    def _own(self, member: MemberState) -> MemberState:
        raise NotImplementedError

    def replica_of(self, node_id: str) -> str:
        """The replica id of member ``node_id`` at the incarnation known, this node
        included; empty if unknown (or not a member).

        A member's id is known once a push-pull row of its current incarnation has
        brought it (from the member itself or from a table that had it); a member that
        refutes a suspicion or restarts is at a new incarnation, whose id is unknown
        until such a row comes.
        """
        member = self.get(node_id)
        return "" if member is None else member.replica

    def replicas(self) -> dict[str, str]:
        """Node id -> replica id of every member whose id is known, in any status
        (see :meth:`replica_of`), this node included if it has one."""
        own, shared = self._members, self._shared
        known: dict[str, str] = {}
        for node_id in self._sorted_ids:
            replica = (own.get(node_id) or shared[node_id]).replica
            if replica:
                known[node_id] = replica
        return known

    def _take_replica(self, member: MemberState, replica: str) -> None:
        """Give the row of another member the replica id of a row just taken (interned,
        as :func:`~crdtgossip.protocol.member_messages.member_record` gives it)."""
        self._own(member).replica = replica

    def records(self) -> tuple[MemberRecord, ...]:
        """The whole table as push-pull records, sorted by node id."""
        if self._table is not None and self._unchanged(self._table):
            return self._table.records()
        # One shared record per distinct row (member_record): N tables that hold the
        # same rows ship the same N records, built once.
        own, shared, codes = self._members, self._shared, STATUS_CODES
        records: list[MemberRecord] = []
        append = records.append
        for node_id in self._sorted_ids:
            m = own.get(node_id) or shared[node_id]
            replica = m.replica
            row = (
                (m.node_id, m.address, m.incarnation, codes[m.status], replica)
                if replica
                else (m.node_id, m.address, m.incarnation, codes[m.status])
            )
            record = lookup_record(row)
            if record is None:
                record = member_record(m.node_id, m.address, m.incarnation, m.status, replica)
            append(record)
        return tuple(records)

    def _unchanged(self, table: FormedTable) -> bool:
        """Whether this table still says what the adopted ``table`` says."""
        if len(self._members) != 1 or self._forgotten or self._sorted_ids is not table._sorted_ids:
            return False
        local, shared = self._members[self.local_id], table._rows[self.local_id]
        return (local.address, local.incarnation, local.status, local.replica) == (
            shared.address,
            shared.incarnation,
            shared.status,
            shared.replica,
        )

    def merge_records(self, records: Iterable[MemberRecord], sender: str, now: float) -> None:
        """Merge a member table received by push-pull.

        A remote *dead* verdict is taken as a suspicion here, not a death: the member
        gets its own suspicion timeout to refute (memberlist does the same), so one
        peer's stale view cannot kill a live member at once. A row's replica id is
        taken with the row (see the module's docstring).

        Args:
            records: the sender's table.
            sender: the sender's node id (the accuser of its suspicions).
            now: the driver's time.
        """
        own, shared, forgotten, local_id, alive_at = (
            self._members,
            self._shared,
            self._forgotten,
            self.local_id,
            self._alive_at,
        )
        for record in records:
            node_id = record.node_id
            if record.status is _ALIVE and node_id != local_id:
                # The common case, by far: news no newer than ours, which apply()
                # would ignore (alive wins only with a higher incarnation); skipped
                # here without building the rumor, as a 10,000-member table is merged
                # several times a second somewhere in a large cluster. An own row
                # alive at that incarnation or a newer one says so without being read,
                # unless the row gives an id: then it is read, at that incarnation.
                incarnation = record.incarnation
                at = alive_at.get(node_id, -1)
                if incarnation <= at:
                    if incarnation == at and record.replica:
                        row = own[node_id]  # an own row: written in place
                        if row.replica != record.replica:
                            row.replica = record.replica
                    continue
                known = own.get(node_id)
                if known is None and node_id not in forgotten:
                    known = shared.get(node_id)
                if known is None:  # a newcomer (half the rows merged while N join)
                    newcomer = alive_rumor(node_id, record.address, incarnation)
                    self._add_stranger(newcomer, now, sender, record.replica)
                    continue
                if incarnation <= known.incarnation:
                    replica = record.replica
                    if incarnation == known.incarnation and replica and known.replica != replica:
                        self._take_replica(known, replica)
                    continue
            rumor: Alive | Suspect | Left
            match record.status:
                case Status.ALIVE:
                    rumor = alive_rumor(record.node_id, record.address, record.incarnation)
                case Status.SUSPECT | Status.DEAD:
                    rumor = Suspect(record.node_id, record.incarnation, sender)
                case Status.LEFT:
                    rumor = Left(record.node_id, record.incarnation)
            self.apply(rumor, now, sender)
            if record.replica:
                if node_id == local_id:
                    self._replica_about_self(record)
                    continue
                member = self.get(node_id)
                if (
                    member is not None
                    and member.incarnation == record.incarnation
                    and member.replica != record.replica
                ):
                    self._take_replica(member, record.replica)

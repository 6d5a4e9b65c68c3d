"""The push-pull side of the member table: the records it ships, and merging a table
received.

A push-pull ships every row (N of them), so both directions keep to the rows: the
records of an unchanged adopted :class:`FormedTable` are built once and shared, and a
received table's rows that say nothing new are skipped before any rumor is built.
"""

from __future__ import annotations

from collections.abc import Iterable

from crdtgossip.protocol.member_messages import alive_rumor, lookup_record, member_record
from crdtgossip.protocol.member_table import FormedTable, MemberState
from crdtgossip.protocol.messages import Alive, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import STATUS_CODES, Status

_ALIVE = Status.ALIVE  # a module constant: reading it off the enum is 8x slower

__all__ = ["MemberSync"]


class MemberSync:
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

    def _add_stranger(self, rumor: Alive, now: float, origin: str | None) -> None:
        raise NotImplementedError

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
            record = lookup_record((m.node_id, m.address, m.incarnation, codes[m.status]))
            if record is None:
                record = member_record(m.node_id, m.address, m.incarnation, m.status)
            append(record)
        return tuple(records)

    def _unchanged(self, table: FormedTable) -> bool:
        """Whether this table still says what the adopted ``table`` says."""
        if len(self._members) != 1 or self._forgotten or self._sorted_ids is not table._sorted_ids:
            return False
        local, shared = self._members[self.local_id], table._rows[self.local_id]
        return (local.address, local.incarnation, local.status) == (
            shared.address,
            shared.incarnation,
            shared.status,
        )

    def merge_records(self, records: Iterable[MemberRecord], sender: str, now: float) -> None:
        """Merge a member table received by push-pull.

        A remote *dead* verdict is taken as a suspicion here, not a death: the member
        gets its own suspicion timeout to refute (memberlist does the same), so one
        peer's stale view cannot kill a live member at once.

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
                # alive at that incarnation or a newer one says so without being read.
                if record.incarnation <= alive_at.get(node_id, -1):
                    continue
                known = own.get(node_id)
                if known is None and node_id not in forgotten:
                    known = shared.get(node_id)
                if known is None:  # a newcomer (half the rows merged while N join)
                    newcomer = alive_rumor(node_id, record.address, record.incarnation)
                    self._add_stranger(newcomer, now, sender)
                    continue
                if record.incarnation <= known.incarnation:
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

"""The rows of the SWIM member table, and the shared table of a formed cluster.

For simulators, a :class:`FormedTable` holds the table of a whole formed cluster once;
any number of :class:`~crdtgossip.protocol.membership.Membership` objects adopt it by
reference and copy a row only when they change it, so N simulated members of an
N-member cluster cost O(N) work and memory in all instead of O(N²).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from crdtgossip.errors import ConfigError
from crdtgossip.protocol.events import (
    Member,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
)
from crdtgossip.protocol.messages import Alive, Dead, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import Rumor, Status

__all__ = ["EVENTS", "RUMOR_KINDS", "FormedTable", "MemberState"]

#: The kind of each membership rumor message, for the transition table.
RUMOR_KINDS: dict[type[Alive | Suspect | Dead | Left], Rumor] = {
    Alive: Rumor.ALIVE,
    Suspect: Rumor.SUSPECT,
    Dead: Rumor.DEAD,
    Left: Rumor.LEFT,
}


@dataclass(slots=True)
class MemberState:
    """The mutable row of one member.

    Attributes:
        node_id: the member's name.
        address: where it listens.
        incarnation: the highest incarnation known.
        status: what this node believes.
        since: when ``status`` last changed, in the driver's seconds.
    """

    node_id: str
    address: str
    incarnation: int
    status: Status
    since: float

    def snapshot(self) -> Member:
        """An immutable copy for callers."""
        return Member(self.node_id, self.address, self.status, self.incarnation)


class FormedTable:
    """The member table of a formed cluster, shared read-only by many member tables.

    A simulator and testing facility: a simulation of N nodes that all know each other
    builds this once (O(N)) and has every engine adopt it
    (:meth:`crdtgossip.protocol.Engine.adopt_formed`). Each :class:`Membership` that
    adopts it reads the shared rows and copies a row into its own table only when it
    changes that member (copy-on-write), so nodes that agree share their rows.

    Args:
        records: every member of the cluster, each alive.
        now: the driver's time the cluster is formed at (when each row's status
            began).

    Raises:
        ConfigError: a member is not alive, or appears twice.
    """

    __slots__ = ("_counts", "_records", "_rows", "_sorted_ids")

    def __init__(self, records: Iterable[MemberRecord], now: float = 0.0) -> None:
        rows: dict[str, MemberState] = {}
        for record in records:
            if record.status is not Status.ALIVE:
                raise ConfigError(f"a formed cluster has only alive members, not {record}")
            if record.node_id in rows:
                raise ConfigError(f"member {record.node_id!r} appears twice")
            rows[record.node_id] = MemberState(
                record.node_id, record.address, record.incarnation, Status.ALIVE, now
            )
        # Never modified once built: every adopter reads these very objects.
        self._rows = rows
        self._sorted_ids = sorted(rows)
        self._counts = dict.fromkeys(Status, 0)
        self._counts[Status.ALIVE] = len(rows)
        self._records: tuple[MemberRecord, ...] | None = None

    def __len__(self) -> int:
        return len(self._rows)

    def records(self) -> tuple[MemberRecord, ...]:
        """The table as push-pull records, sorted by node id (built once, shared)."""
        if self._records is None:
            rows = self._rows
            self._records = tuple(
                MemberRecord(m.node_id, m.address, m.incarnation, m.status)
                for m in (rows[node_id] for node_id in self._sorted_ids)
            )
        return self._records


#: (old status, new status) -> event class; a pair absent here raises no event.
EVENTS: dict[
    tuple[Status, Status],
    type[MemberAlive | MemberSuspect | MemberDead | MemberLeft | MemberJoined],
] = {
    (Status.SUSPECT, Status.ALIVE): MemberAlive,
    (Status.DEAD, Status.ALIVE): MemberJoined,
    (Status.LEFT, Status.ALIVE): MemberJoined,
    (Status.ALIVE, Status.SUSPECT): MemberSuspect,
    (Status.ALIVE, Status.DEAD): MemberDead,
    (Status.SUSPECT, Status.DEAD): MemberDead,
    (Status.ALIVE, Status.LEFT): MemberLeft,
    (Status.SUSPECT, Status.LEFT): MemberLeft,
    (Status.DEAD, Status.LEFT): MemberLeft,
}

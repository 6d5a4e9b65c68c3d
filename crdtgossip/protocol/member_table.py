"""The rows of the SWIM member table, and the shared table of a formed cluster.

For simulators, a :class:`FormedTable` holds the table of a whole formed cluster once;
any number of :class:`~crdtgossip.protocol.membership.Membership` objects adopt it by
reference and copy a row only when they change it, so N simulated members of an
N-member cluster cost O(N) work and memory in all instead of O(N²).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final, Protocol

from crdtgossip.errors import ConfigError
from crdtgossip.protocol.events import (
    Member,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
)
from crdtgossip.protocol.member_messages import AliveIndex
from crdtgossip.protocol.messages import Alive, Dead, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import Rumor, Status


class Adopter(Protocol):
    """What :meth:`FormedTable.rebase` reads of a member table that adopted it (a
    :class:`~crdtgossip.protocol.membership.Membership`, which imports this module)."""

    local_id: str
    _members: dict[str, MemberState]
    _forgotten: set[str]
    # The incarnation of each own alive row, -1 for the other own rows (see
    # Membership.known_alive): kept with _members, through its note and forget.
    _alive_index: AliveIndex


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
        replica: the member's replica id at ``incarnation``, empty while unknown
            (learnt from push-pull rows only: the rumors do not carry it, so one
            that raises the incarnation makes it unknown again).
    """

    node_id: str
    address: str
    incarnation: int
    status: Status
    since: float
    replica: str = ""

    def snapshot(self) -> Member:
        """An immutable copy for callers (one shared by equal rows, while kept)."""
        fields = (self.node_id, self.address, self.status, self.incarnation)
        member = _snapshots.get(fields)
        if member is None:
            member = Member(*fields)
            if len(_snapshots) >= SNAPSHOT_CACHE_SIZE:
                _snapshots.clear()
            _snapshots[fields] = member
        return member

    def joined(self) -> MemberJoined:
        """The event of this row's member joining (one shared by equal rows, while
        kept: every table that learns a member raises one, N² while N nodes join)."""
        fields = (self.node_id, self.address, self.status, self.incarnation)
        event = _joined.get(fields)
        if event is None:
            event = MemberJoined(self.snapshot())
            if len(_joined) >= SNAPSHOT_CACHE_SIZE:
                _joined.clear()
            _joined[fields] = event
        return event


SNAPSHOT_CACHE_SIZE: Final = 1 << 16
"""Most member snapshots kept for reuse (see :meth:`MemberState.snapshot`), and as many
join events (:meth:`MemberState.joined`)."""

# Snapshots by their fields: every table that learns a member raises an event with a
# snapshot of its row, N² of them while N simulated nodes join, of about N distinct
# values; a snapshot is immutable, so one serves all that are equal (and the same for
# the join events that carry them).
_snapshots: dict[tuple[str, str, Status, int], Member] = {}
_joined: dict[tuple[str, str, Status, int], MemberJoined] = {}


class FormedTable:
    """The member table of a formed cluster, shared read-only by many member tables.

    A simulator and testing facility: a simulation of N nodes that all know each other
    builds this once (O(N)) and has every engine adopt it
    (:meth:`crdtgossip.protocol.Engine.adopt_formed`). Each :class:`Membership` that
    adopts it reads the shared rows and copies a row into its own table only when it
    changes that member (copy-on-write), so nodes that agree share their rows.

    Args:
        records: every member of the cluster, each alive (with its replica id, if
            given).
        now: the driver's time the cluster is formed at (when each row's status
            began).

    Raises:
        ConfigError: a member is not alive, or appears twice.
    """

    __slots__ = ("_adopters", "_counts", "_records", "_rows", "_sorted_ids")

    def __init__(self, records: Iterable[MemberRecord], now: float = 0.0) -> None:
        rows: dict[str, MemberState] = {}
        for record in records:
            if record.status is not Status.ALIVE:
                raise ConfigError(f"a formed cluster has only alive members, not {record}")
            if record.node_id in rows:
                raise ConfigError(f"member {record.node_id!r} appears twice")
            rows[record.node_id] = MemberState(
                record.node_id,
                record.address,
                record.incarnation,
                Status.ALIVE,
                now,
                record.replica,
            )
        # Never modified once built: every adopter reads these very objects.
        self._rows = rows
        self._sorted_ids = sorted(rows)
        self._counts = dict.fromkeys(Status, 0)
        self._counts[Status.ALIVE] = len(rows)
        self._records: tuple[MemberRecord, ...] | None = None
        # Every member table that adopted this one (see Membership.adopt).
        self._adopters: list[Adopter] = []

    def __len__(self) -> int:
        return len(self._rows)

    def records(self) -> tuple[MemberRecord, ...]:
        """The table as push-pull records, sorted by node id (built once, shared)."""
        if self._records is None:
            rows = self._rows
            self._records = tuple(
                MemberRecord(m.node_id, m.address, m.incarnation, m.status, m.replica)
                for m in (rows[node_id] for node_id in self._sorted_ids)
            )
        return self._records

    def rebase(self) -> int:
        """Share again the rows that most adopters changed the same way.

        A change that reaches the whole cluster (a member refuting a suspicion at a
        new incarnation) leaves each adopter with its own copy of the same row: N
        copies per change, so a long run with false suspicions creeps towards N²
        rows. For a member of which at least half the adopters hold an own alive row
        saying the same (address, incarnation and replica id), this makes that row the shared
        one: the adopters that agree drop their copies, and the others (which still
        see the old shared row, or something else) keep or get an own row saying
        what they saw. No adopter's view changes.

        Its cost is the adopters' own rows plus N per member rebased (which frees at
        least N/2 rows), so calling it now and then keeps memory O(N + changes in
        flight) at amortised O(1) work per row. The simulator calls it; a real node
        adopts no formed table.

        Returns:
            How many own rows were freed.
        """
        adopters = self._adopters
        versions: Counter[tuple[str, str, int, str]] = Counter()
        for table in adopters:
            forgotten = table._forgotten
            for node_id, row in table._members.items():
                if (
                    row.status is Status.ALIVE
                    and node_id != table.local_id
                    and node_id in self._rows
                    and node_id not in forgotten
                ):
                    versions[(node_id, row.address, row.incarnation, row.replica)] += 1
        freed = 0
        done: set[str] = set()
        for (node_id, address, incarnation, replica), count in versions.most_common():
            if 2 * count < len(adopters):
                break
            if node_id in done:
                continue
            done.add(node_id)
            freed += self._rebase_row(node_id, address, incarnation, replica)
        if done:
            self._records = None
        return freed

    def _rebase_row(self, node_id: str, address: str, incarnation: int, replica: str) -> int:
        """Make ``(address, incarnation, replica)``, alive, the shared row of ``node_id``."""
        old = self._rows[node_id]
        new = MemberState(node_id, address, incarnation, Status.ALIVE, old.since, replica)
        # Shared rows are all alive: the old one already says this when equal.
        same = (old.address, old.incarnation, old.replica) == (address, incarnation, replica)
        freed = 0
        for table in self._adopters:
            if table.local_id == node_id or node_id in table._forgotten:
                continue  # its own row is its local one, or it forgot the shared one
            own = table._members
            row = own.get(node_id)
            if row is None:
                if same:
                    continue
                # It sees the old shared row: it keeps seeing it, as its own.
                own[node_id] = MemberState(
                    node_id, old.address, old.incarnation, old.status, old.since, old.replica
                )
                table._alive_index.note(node_id, old.incarnation)  # shared rows are alive
            elif (row.status, row.address, row.incarnation, row.replica) == (
                Status.ALIVE,
                address,
                incarnation,
                replica,
            ):
                del own[node_id]
                table._alive_index.forget(node_id)
                freed += 1
        self._rows[node_id] = new
        return freed


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

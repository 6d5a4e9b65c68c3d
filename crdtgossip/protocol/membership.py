"""The SWIM member table: who is in the cluster, in which state, at which incarnation.

It applies membership rumors (alive, suspect, dead, left) by the table in
:mod:`crdtgossip.protocol.states`, runs one suspicion timer per suspect member
(:mod:`crdtgossip.protocol.suspicion`), refutes rumors about the local node by raising
its incarnation, and chooses whom to probe (shuffled round-robin, as SWIM prescribes,
so every member is probed within a bounded time) and whom to ask for indirect probes.

It does no I/O: news worth spreading goes to the ``broadcast`` callback and what
happened to members goes to the ``events`` list, both owned by the engine.

Its rows and the shared table of a formed cluster are in
:mod:`crdtgossip.protocol.member_table`; whom it picks (random members, the probe
order) in ``_member_choice``; the records a push-pull ships, the merge of a received
table and the members' replica ids (which only push-pull rows carry) in
``_member_sync``.
"""

from __future__ import annotations

import random
import sys
from bisect import insort
from collections.abc import Callable

from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError
from crdtgossip.protocol._member_choice import MemberChoice
from crdtgossip.protocol._member_sync import MemberSync
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.events import Event, Member
from crdtgossip.protocol.member_messages import AliveIndex
from crdtgossip.protocol.member_table import EVENTS, RUMOR_KINDS, FormedTable, MemberState
from crdtgossip.protocol.messages import Alive, Dead, Left, Suspect
from crdtgossip.protocol.states import Status, next_status, order_of
from crdtgossip.protocol.suspicion import (
    Suspicion,
    confirmations_wanted,
    suspicion_min_timeout,
)

__all__ = ["MAX_INCARNATION", "FormedTable", "MemberState", "Membership", "MembershipRumor"]

MAX_INCARNATION = 2**63 - 1
"""The largest incarnation a member may reach: what a storage keeps (a signed 64-bit
SQLite integer). A rumor at or above it could not be refuted (the refutation would
pass it), so it is refused as hostile input: an honest member, raising its incarnation
by one per refutation, never comes near."""

MembershipRumor = Alive | Suspect | Dead | Left

_LIVE = (Status.ALIVE, Status.SUSPECT)
_ALIVE = Status.ALIVE  # a module constant: reading it off the enum is 8x slower


class Membership(MemberChoice, MemberSync):
    """The member table with its rules.

    Rows live in two layers: the rows of a :class:`FormedTable` adopted with
    :meth:`adopt` (shared with other tables, never written) and this table's own rows
    (every row of a table that adopted nothing). A row is copied into the own layer
    before its first change, so the shared layer is never written; a shared row that
    is forgotten (:meth:`reap`) is hidden instead.

    Args:
        local_id: this node's id.
        address: this node's address.
        incarnation: this node's starting incarnation (a restarted node may pass a
            higher one than its previous life used).
        config: the protocol configuration.
        rng: the engine's random generator.
        awareness: the local health score (raised when this node must refute).
        broadcast: called with each rumor to spread and the members that must not
            be sent it.
        events: where member events are appended.
        replica_id: this node's replica id, shipped in its own push-pull row (empty:
            none; see :meth:`replica_of`).
    """

    def __init__(
        self,
        local_id: str,
        address: str,
        incarnation: int,
        *,
        config: GossipConfig,
        rng: random.Random,
        awareness: Awareness,
        broadcast: Callable[[MembershipRumor, tuple[str, ...]], None],
        events: list[Event],
        replica_id: str = "",
    ) -> None:
        self.local_id = local_id
        self._config = config
        self._rng = rng
        self._awareness = awareness
        self._broadcast = broadcast
        self._events = events
        # This table's own rows, the local one always among them: only these are
        # ever written.
        self._members: dict[str, MemberState] = {
            local_id: MemberState(local_id, address, incarnation, Status.ALIVE, 0.0, replica_id)
        }
        # The incarnation of each own row that is alive, -1 for the others (the local
        # one among them): what known_alive reads, one lookup for the commonest
        # question (a rumor reaches each member many times), kept by _track (with the
        # form the decoder reads, see alive_index).
        self._alive_index = AliveIndex()
        self._alive_index.note(local_id, -1)
        self._alive_at = self._alive_index.incarnations
        # The adopted FormedTable, if any, and its rows: read, never written.
        self._table: FormedTable | None = None
        self._shared: dict[str, MemberState] = {}
        # Shared rows forgotten by reap (an own row of the same id may come back).
        self._forgotten: set[str] = set()
        # Kept up to date so that the hot paths (every frame needs N for the
        # retransmit limit; every gossip round picks random members) cost O(1) or
        # O(k) instead of a scan of a table of thousands. The list may be shared (with
        # a FormedTable or a probe round): it is then copied before a change.
        self._sorted_ids: list[str] = [local_id]
        self._ids_shared = False
        self._counts: dict[Status, int] = dict.fromkeys(Status, 0)
        self._counts[Status.ALIVE] = 1
        self._suspicions: dict[str, Suspicion] = {}
        # The probe round: an incremental Fisher-Yates shuffle of the ids known when it
        # began (positions below _probe_left not yet drawn; _probe_moved holds the
        # positions whose id was swapped), plus members that joined during it.
        self._probe_ids: list[str] = []
        self._probe_left = 0
        self._probe_moved: dict[int, int] = {}
        self._probe_joined: list[str] = []
        #: True once :meth:`leave` was called: rumors about us are no longer refuted.
        self.leaving = False
        #: Rumors refused for an incarnation out of range (see MAX_INCARNATION).
        self.refused_rumors = 0
        #: Raised by every change of who is in which state: a reader that caches a
        #: list of live members rebuilds it only when this moved.
        self.epoch = 0

    def adopt(self, table: FormedTable) -> None:
        """Start from a formed cluster's table: know each of its members as alive.

        The table is shared, not copied (see :class:`FormedTable`). No event is
        raised and nothing is broadcast: in a formed cluster every member already
        knows all this. A simulator and testing facility.

        Args:
            table: the cluster's table; it must hold this node at its address and
                incarnation, and with its replica id or none.

        Raises:
            ConfigError: this table already knows other members, adopted a table,
                or is leaving; or ``table`` does not hold this node as it is.
        """
        local = self.local
        if len(self._members) != 1 or self._table is not None or self.leaving:
            raise ConfigError("only a member table that knows nothing else can adopt one")
        row = table._rows.get(self.local_id)
        if (
            row is None
            or (row.address, row.incarnation) != (local.address, local.incarnation)
            or row.replica not in ("", local.replica)
        ):
            raise ConfigError(
                f"the formed table must hold {self.local_id!r} at {local.address!r}, "
                f"incarnation {local.incarnation}, replica id {local.replica!r} or none"
            )
        self._table = table
        table._adopters.append(self)
        self._shared = table._rows
        self._sorted_ids = table._sorted_ids
        self._ids_shared = True
        self._counts = dict(table._counts)

    # --- queries -------------------------------------------------------------------

    def get(self, node_id: str) -> MemberState | None:
        """The row of ``node_id``, if known (read it; never change it)."""
        member = self._members.get(node_id)
        if member is None:
            member = self._shared.get(node_id)
            if member is not None and node_id in self._forgotten:
                return None
        return member

    def _row(self, node_id: str) -> MemberState:
        """The row of a member known to be in the table (an id of ``_sorted_ids``)."""
        return self._members.get(node_id) or self._shared[node_id]

    def _own(self, member: MemberState) -> MemberState:
        """The row of ``member`` that this table may write: a copy if it is shared."""
        if self._members.get(member.node_id) is member:
            return member
        row = MemberState(
            member.node_id,
            member.address,
            member.incarnation,
            member.status,
            member.since,
            member.replica,
        )
        self._members[member.node_id] = row
        self._track(row)
        return row

    def _track(self, member: MemberState) -> None:
        """Note what an own row now says, for :meth:`known_alive` (after every change)."""
        alive = member.status is _ALIVE and member.node_id != self.local_id
        self._alive_index.note(member.node_id, member.incarnation if alive else -1)

    def members(self) -> list[Member]:
        """Every known member, this node included, sorted by node id."""
        return [self._row(node_id).snapshot() for node_id in self._sorted_ids]

    def count(self, status: Status) -> int:
        """How many members (this node included) are in ``status``."""
        return self._counts[status]

    def live_count(self) -> int:
        """Members alive or suspect, this node included: the N of the formulas."""
        return self._counts[Status.ALIVE] + self._counts[Status.SUSPECT]

    def others_alive(self) -> int:
        """Members other than this node that are alive."""
        return self._counts[Status.ALIVE] - (1 if self.local.status is Status.ALIVE else 0)

    def _set_status(self, member: MemberState, status: Status, now: float) -> None:
        """Change the status of an own row (see :meth:`_own`)."""
        self._counts[member.status] -= 1
        self._counts[status] += 1
        member.status = status
        member.since = now
        self.epoch += 1
        self._track(member)

    def next_deadline(self) -> float | None:
        """The earliest suspicion deadline, if any member is suspect."""
        if not self._suspicions:
            return None
        return min(s.deadline for s in self._suspicions.values())

    @property
    def alive_index(self) -> AliveIndex:
        """The own rows alive and their incarnations, kept up to date: an alive rumor
        about a member in it, no newer than this, is one :meth:`apply` ignores. A
        shared row is not in it (ask :meth:`known_alive`). Read it; never change it."""
        return self._alive_index

    # --- rumors --------------------------------------------------------------------

    def known_alive(self, rumor: Alive) -> bool:
        """Whether ``rumor`` says of another member what this table already knows: alive,
        at this incarnation or an older one. :meth:`apply` ignores such a rumor.

        The common case, by far (a rumor reaches each member many times), so it is
        answered without the transition table, and for an own row without reading
        the row.
        """
        node_id = rumor.node_id
        known = self._alive_at.get(node_id)
        if known is not None:
            return rumor.incarnation <= known
        # Not an own row (the local row is one): a shared row, alive, or none.
        if node_id in self._forgotten:
            return False
        shared = self._shared.get(node_id)
        return shared is not None and rumor.incarnation <= shared.incarnation

    def apply(self, rumor: MembershipRumor, now: float, origin: str | None = None) -> bool:
        """Apply one rumor, from the network or from this node's own verdicts.

        Args:
            rumor: the news.
            now: the driver's time in seconds.
            origin: the member it came from, which need not hear it again.

        Returns:
            ``True`` when it changed something (and was passed on), ``False`` when it
            was old news or ignored.
        """
        if type(rumor) is Alive and self.known_alive(rumor):
            return False
        if rumor.incarnation >= MAX_INCARNATION:
            self.refused_rumors += 1
            return False
        if rumor.node_id == self.local_id:
            return self._about_self(rumor)
        member = self.get(rumor.node_id)
        if member is None:
            if isinstance(rumor, Alive):
                self._add(rumor, now, origin)
                return True
            return False  # news of the death of a stranger: nothing to update
        order = order_of(rumor.incarnation, member.incarnation)
        new_status = next_status(member.status, RUMOR_KINDS[type(rumor)], order)
        if new_status is None:
            return False
        if isinstance(rumor, Suspect) and member.status is Status.SUSPECT:
            return self._confirm(member, rumor, origin)
        self._transition(member, rumor, new_status, now, origin)
        return True

    def _spread(self, rumor: MembershipRumor, origin: str | None) -> None:
        """Pass a rumor on, except to whoever told us and, for an alive rumor, to
        its subject, which knows best that it is alive."""
        # A tuple, not a set: a queue holds one per rumor (N² while N nodes join), and
        # a set of two costs four times the memory.
        exclude: tuple[str, ...] = () if origin is None else (origin,)
        if isinstance(rumor, Alive) and rumor.node_id != origin:
            exclude += (rumor.node_id,)
        self._broadcast(rumor, exclude)

    def _add_stranger(
        self, rumor: Alive, now: float, origin: str | None, replica: str = ""
    ) -> None:
        """What :meth:`apply` does with an alive rumor about another member that the
        table does not hold (no own row, no shared row it has not forgotten); a row
        of a push-pull also gives the member's replica id, if known."""
        if rumor.incarnation >= MAX_INCARNATION:
            self.refused_rumors += 1
        else:
            self._add(rumor, now, origin, replica)

    def _add(self, rumor: Alive, now: float, origin: str | None, replica: str = "") -> None:
        # Interned: every table in the process (a simulator's N engines) that knows
        # this member then shares one copy of its id and address, not N copies.
        member = MemberState(
            sys.intern(rumor.node_id),
            sys.intern(rumor.address),
            rumor.incarnation,
            _ALIVE,
            now,
            sys.intern(replica),
        )
        self._members[rumor.node_id] = member
        self._alive_index.note(rumor.node_id, rumor.incarnation)  # alive, not the local row
        self.epoch += 1
        if self._ids_shared:
            self._sorted_ids = list(self._sorted_ids)
            self._ids_shared = False
        insort(self._sorted_ids, rumor.node_id)
        self._counts[_ALIVE] += 1
        # A newcomer joins the current probe round at a random place (memberlist does
        # the same), so it is probed within this round without reordering the rest.
        self._probe_joined.append(member.node_id)
        self._events.append(member.joined())
        self._spread(rumor, origin)

    def _confirm(self, member: MemberState, rumor: Suspect, origin: str | None) -> bool:
        if rumor.incarnation > member.incarnation:
            member = self._own(member)
            member.incarnation = rumor.incarnation
            member.replica = ""  # the id at that incarnation is not known yet
            self._track(member)
        suspicion = self._suspicions.get(member.node_id)
        if suspicion is not None and suspicion.confirm(rumor.accuser):
            self._spread(rumor, origin)
            return True
        return False

    def _transition(
        self,
        member: MemberState,
        rumor: MembershipRumor,
        new_status: Status,
        now: float,
        origin: str | None,
    ) -> None:
        member = self._own(member)
        old_status = member.status
        if rumor.incarnation != member.incarnation:
            member.replica = ""  # the id at the new incarnation is not known yet
        member.incarnation = rumor.incarnation
        if isinstance(rumor, Alive):
            member.address = rumor.address
        if new_status is not old_status:
            self._set_status(member, new_status, now)
        else:
            self._track(member)
        if new_status is Status.SUSPECT:
            assert isinstance(rumor, Suspect)
            self._start_suspicion(member, rumor.accuser, now)
        else:
            self._suspicions.pop(member.node_id, None)
        event = EVENTS.get((old_status, new_status))
        if event is not None:
            self._events.append(event(member.snapshot()))
        self._spread(rumor, origin)

    def _start_suspicion(self, member: MemberState, accuser: str, now: float) -> None:
        members = self.live_count()
        minimum = suspicion_min_timeout(
            self._config.suspicion_mult, members, self._config.probe_interval
        )
        maximum = minimum * self._config.suspicion_max_timeout_mult
        wanted = confirmations_wanted(self._config.suspicion_mult, members)
        # Interned: each member holding this suspicion then shares one accuser string.
        self._suspicions[member.node_id] = Suspicion(
            sys.intern(accuser), wanted, minimum, maximum, now
        )

    def suspect(self, node_id: str, now: float) -> bool:
        """This node's own probe of ``node_id`` failed: suspect it.

        Args:
            node_id: the member that did not answer.
            now: the driver's time.

        Returns:
            Whether the suspicion changed anything.
        """
        member = self.get(node_id)
        if member is None or member.status not in _LIVE:
            return False
        return self.apply(Suspect(node_id, member.incarnation, self.local_id), now)

    def expire(self, now: float) -> None:
        """Declare dead every suspect whose suspicion timeout has run out.

        Args:
            now: the driver's time.
        """
        expired = sorted(node_id for node_id, s in self._suspicions.items() if s.deadline <= now)
        for node_id in expired:
            member = self._row(node_id)
            self.apply(Dead(node_id, member.incarnation, self.local_id), now)

    def reap(self, now: float) -> None:
        """Forget members dead or left for longer than ``dead_retention``.

        Args:
            now: the driver's time.
        """
        if not (self._counts[Status.DEAD] or self._counts[Status.LEFT]):
            return
        retention = self._config.dead_retention
        # Shared rows are all alive (and a changed row is an own row), so the own
        # rows hold every candidate.
        gone = {
            node_id
            for node_id, m in self._members.items()
            if node_id != self.local_id
            and m.status in (Status.DEAD, Status.LEFT)
            and now - m.since > retention
        }
        for node_id in gone:
            self._counts[self._members.pop(node_id).status] -= 1
            self._alive_index.forget(node_id)
            if node_id in self._shared:
                self._forgotten.add(node_id)
        if gone:
            # A new list: the old one may be shared with a probe round.
            self._sorted_ids = [node_id for node_id in self._sorted_ids if node_id not in gone]
            self._ids_shared = False

"""The decisions of the pruning protocol: which replicas are retired, and the next steps.

:class:`Pruner` is pure: handed what the engine knows (the member table, the replica
ids its states name, the marker table of :mod:`~crdtgossip.protocol.pruning_markers`,
the time), it returns *actions*, frozen dataclasses the engine carries out. It does no
I/O and never changes the markers itself. The design, and why it is safe, are on the
concepts page "Pruning removed replicas" ("How the engine is to run it"):

* **Retired.** A replica id ``r`` is retired when its node part
  (``r.rpartition(".")[0]``, see :func:`~crdtgossip.protocol.rollback.fresh_replica_id`)
  is a member alive under another replica id. Nothing else is: not the local current
  replica, not one of a member that left, died or is unknown (it may come back with its
  store), not one of a member restarted with its state (same id).
* **Pause.** Steps are taken only while every member is alive or left; a retired
  replica is acted on once such time has added up to ``dissemination_period`` since
  this node first saw it retired. The clean-up runs paused or not.
* **Who.** The lowest alive member initializes the marker, in the round of the marker
  there (0 if none; a higher pruner's of that round loses to it), then sends a
  :class:`Collect` query to every other alive member it has not *seen*. A member is
  seen once it has answered a query begun after the initialization, *with this
  pruner's own marker* (its pruner and round). When every other alive member is seen
  and its own table still holds its marker, it prunes (:class:`Perform`). A member
  that holds another pruner's marker (the join's winner) or a performed one never
  counts, and a pruner whose marker lost a join never performs: so two pruners whose
  views differ do not both perform.
* **Takeover.** A marker of a *lower* pruner, so one that is not an alive member (left
  or unknown), would win every join for ever. Once this node has seen that same marker
  so for a dissemination period of all-alive time, it initializes the next round,
  which beats it. Should the old pruner come back, it cannot perform its round: every
  answer shows the new round. :attr:`Pruner.stalled` lists replicas waiting so.
* **Clean-up.** A replica with a performed marker is dropped from every held state and
  received payload naming it (:meth:`PruningMarkers.performed
  <crdtgossip.protocol.pruning_markers.PruningMarkers.performed>` is the filter) until
  the marker expires after ``marker_ttl``.

How the engine runs it:

1. Every second or so (steps are idempotent) call :meth:`Pruner.step` and carry out the
   actions, in order, before the next call; each action's :meth:`~Initialize.mark`
   changes the marker table and says whether it changed (then store and spread it).
2. A collect query: take :meth:`Pruner.query_ticket` before its first message, and send
   this node's markers of the replicas asked about with it. The answerer merges them,
   sends the state of every key naming those replicas, then says it is done *with its
   markers of them* (or its whole table) as they are then. Once its states are merged,
   merge its markers into this node's table too, call :meth:`Pruner.collected` with the
   member, the replicas, the ticket and those markers, and mark the :class:`See`
   actions returned.
3. Merge every marker table received; drop the replicas of ``performed()`` from every
   payload before merging it.
4. A Pruner lives for one membership: a node that leaves and joins again, or restarts,
   makes a new one (it counts the period and queries everyone again; a marker of its
   earlier life is taken up, its seen set not trusted). A leaving node spreads its
   marker table before it goes, and a pruned state never leaves a node before its
   performed marker (send the table with it): else a pruner that performed and left
   could be taken over, and its pruned states, back, would count the replica twice.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from typing import Final, TypeAlias

from crdtgossip.errors import ConfigError, OperationError
from crdtgossip.protocol.pruning_markers import (
    ROUND_MAX,
    STAMP_MAX,
    Initialized,
    Marker,
    Performed,
    PruningMarkers,
)
from crdtgossip.protocol.states import Status

__all__ = [
    "DISSEMINATION_PERIOD",
    "MARKER_TTL",
    "QUERY_RETRY",
    "Action",
    "Collect",
    "Drop",
    "Expire",
    "Initialize",
    "MemberRow",
    "Perform",
    "Pruner",
    "PruningConfig",
    "See",
]

DISSEMINATION_PERIOD: Final = 300.0
"""Seconds of an all-alive cluster before a retired replica is acted on: Akka's
``max-pruning-dissemination`` (300 s), time for its last writes to reach every member."""

MARKER_TTL: Final = 6 * 3600.0
"""Seconds a performed marker lives: Akka's ``pruning-marker-time-to-live`` for data in
memory (6 h; it keeps 10 days for durable data). It must outlast the longest partition
and the oldest store restored, which could still name the replica."""

QUERY_RETRY: Final = 60.0
"""Seconds before a member whose answer to a :class:`Collect` has not come (or did not
count) is asked again: the query or answer may be lost, the member busy."""

_NS: Final = 1_000_000_000

MemberRow: TypeAlias = tuple[str, Status, str]
"""(node id, status, current replica id); an empty replica id (unknown) retires nothing."""


@dataclass(frozen=True, slots=True)
class PruningConfig:
    """The Pruner's settings, in seconds (see the constants for the defaults' origin).

    Raises:
        ConfigError: a value that is not a finite number >= 0 (the ttl > 0).
    """

    dissemination_period: float = DISSEMINATION_PERIOD
    marker_ttl: float = MARKER_TTL
    query_retry: float = QUERY_RETRY

    def __post_init__(self) -> None:
        for name in ("dissemination_period", "marker_ttl", "query_retry"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number of seconds, not {value!r:.60}")
            if not math.isfinite(value) or value < 0:
                raise ConfigError(f"{name} must be a finite number >= 0, not {value!r}")
        if self.marker_ttl == 0 or self.marker_ttl * _NS > STAMP_MAX:
            raise ConfigError(f"marker_ttl must be > 0 and fit in 2**64 ns, not {self.marker_ttl}")

    @property
    def marker_ttl_ns(self) -> int:
        """``marker_ttl`` in nanoseconds, the unit of the stamps."""
        return round(self.marker_ttl * _NS)


@dataclass(frozen=True, slots=True)
class Initialize:
    """Start pruning ``replica`` in ``round``, with ``pruner`` (this node) as its pruner."""

    replica: str
    pruner: str
    round: int = 0

    def mark(self, markers: PruningMarkers) -> bool:
        """Record it in ``markers``; whether the table changed."""
        return markers.initialize(self.replica, self.pruner, round=self.round)


@dataclass(frozen=True, slots=True)
class Collect:
    """Send ``node_id`` a collect query about ``replicas``, with this node's markers of
    them; step 2 of the module doc says how it is answered and reported."""

    node_id: str
    replicas: frozenset[str]

    def mark(self, markers: PruningMarkers) -> bool:
        """No change to the markers (False)."""
        return False


@dataclass(frozen=True, slots=True)
class See:
    """``node_id``'s copy has been merged by ``pruner`` since it initialized
    ``replica`` in ``round``: add it to the marker's seen set."""

    replica: str
    node_id: str
    pruner: str
    round: int = 0

    def mark(self, markers: PruningMarkers) -> bool:
        """Record it in ``markers``; whether the table changed."""
        return markers.see(self.replica, self.node_id, pruner=self.pruner, round=self.round)


@dataclass(frozen=True, slots=True)
class Perform:
    """Prune ``replica``: run ``prune(replica, into)`` on every held state that names it
    (``into`` is this node's replica id), then mark it performed at stamp ``at``.

    Should a prune fail (:class:`~crdtgossip.errors.OperationError`: a counter would
    pass 2**64 - 1), do not mark it (every copy would drop what this state still holds
    of ``replica``); the next step asks again.
    """

    replica: str
    into: str
    at: int

    def mark(self, markers: PruningMarkers) -> bool:
        """Record it in ``markers`` (after the prunes); whether the table changed."""
        return markers.perform(self.replica, self.at)


@dataclass(frozen=True, slots=True)
class Drop:
    """Run ``drop_replica(replica)`` on every held state that names it: its prune is
    performed, and the pruned state brings back what it carried."""

    replica: str

    def mark(self, markers: PruningMarkers) -> bool:
        """No change to the markers (False)."""
        return False


@dataclass(frozen=True, slots=True)
class Expire:
    """Some performed marker has outlived the ttl: forget every such one."""

    now_stamp: int
    ttl_ns: int

    def mark(self, markers: PruningMarkers) -> bool:
        """Run :meth:`PruningMarkers.expire`; whether the table changed."""
        return bool(markers.expire(self.now_stamp, self.ttl_ns))


Action: TypeAlias = Initialize | Collect | See | Perform | Drop | Expire


@dataclass(slots=True)
class _Duty:
    """A replica this node is pruning: the round of its marker, from which generation
    on a query counts for it, and the members seen since."""

    round: int
    generation: int
    seen: set[str] = field(default_factory=set)


@dataclass(slots=True)
class _View:  # what one call reads of the member table
    replicas: dict[str, str]  # alive members only: node id -> current replica id
    others: set[str]  # alive members but this node
    all_alive: bool
    lowest: str | None  # the lowest alive node id


def _own(marker: Marker | None, pruner: str, round_: int) -> bool:
    return isinstance(marker, Initialized) and (marker.pruner, marker.round) == (pruner, round_)


def _read_members(members: Iterable[MemberRow], local: str) -> _View:
    replicas: dict[str, str] = {}
    all_alive = True
    for node_id, status, replica in members:
        if status is Status.ALIVE:
            replicas[node_id] = replica
        elif status is not Status.LEFT:
            all_alive = False
    others = set(replicas)
    others.discard(local)
    return _View(replicas, others, all_alive, min(replicas, default=None))


class Pruner:
    """The pruning decisions of one node (the module doc has the rules and the recipe).

    Args:
        node_id: this node's id (the pruner id of the markers it initializes).
        config: the settings; the defaults when None.
    """

    __slots__ = (
        "_alive_time",
        "_asked",
        "_counting",
        "_duties",
        "_generation",
        "_last",
        "_stale",
        "_stalled",
        "config",
        "node_id",
    )

    def __init__(self, node_id: str, config: PruningConfig | None = None) -> None:
        if type(node_id) is not str or not node_id:
            raise OperationError(f"a node id must be a non-empty str, not {node_id!r:.60}")
        self.node_id = node_id
        self.config = config if config is not None else PruningConfig()
        self._alive_time = 0.0  # seconds during which every member was alive
        self._last: tuple[float, bool] | None = None  # the last call's time, all alive?
        self._counting: dict[str, float] = {}  # retired replica -> _alive_time first seen
        self._duties: dict[str, _Duty] = {}
        self._generation = 0  # duties begun; a query's ticket is its value then
        # member -> when it was last asked, and about which replicas since then
        self._asked: dict[str, tuple[float, frozenset[str]]] = {}
        self._stalled: frozenset[str] = frozenset()
        # replica -> (pruner, round) of a marker stalled on a lower pruner, and since when
        self._stale: dict[str, tuple[tuple[str, int], float]] = {}

    @property
    def pruning(self) -> frozenset[str]:
        """The replicas this node is pruning, as of the last step (not performed then)."""
        return frozenset(self._duties)

    @property
    def stalled(self) -> frozenset[str]:
        """Retired replicas, as of the last step, whose marker a lower pruner that is not
        an alive member holds, not yet taken over: this node waits a dissemination
        period on the same marker first (for ever at round ``ROUND_MAX``)."""
        return self._stalled

    def step(
        self,
        *,
        members: Iterable[MemberRow],
        named: AbstractSet[str],
        markers: PruningMarkers,
        local_replica: str,
        now: float,
        stamp: int,
    ) -> tuple[Action, ...]:
        """The next actions, to carry out in order (see the module doc).

        Args:
            members: the member table, this node included: (node id, status, replica).
            named: every replica id the held states name (the union of ``replicas()``).
            markers: the marker table, read only: the actions say what to change.
            local_replica: this node's current replica id (never retired, and the
                ``into`` of its prunes; its row in ``members`` may lag behind it).
            now: the engine's clock, in seconds (monotonic).
            stamp: the stamp of now (Unix ns): a Perform's ``at``, and expiry's clock.

        Raises:
            OperationError: ``local_replica`` is not a non-empty str, or ``stamp`` is
                not an int in 0 .. 2**64 - 1.
        """
        if type(local_replica) is not str or not local_replica:
            raise OperationError(f"local_replica must be a non-empty str: {local_replica!r:.60}")
        if type(stamp) is not int or not 0 <= stamp <= STAMP_MAX:
            raise OperationError(f"a stamp is an int in 0 .. 2**64 - 1, not {stamp!r:.60}")
        view = _read_members(members, self.node_id)
        self._advance(now, view.all_alive)
        # Never this node's own current replica: that would drop its own writes.
        dropped = (markers.performed() & named) - {local_replica}
        actions: list[Action] = [Drop(replica) for replica in sorted(dropped)]
        ttl_ns = self.config.marker_ttl_ns
        if any(
            isinstance(marker, Performed) and stamp - marker.at > ttl_ns
            for _, marker in markers.items()
        ):
            actions.append(Expire(stamp, ttl_ns))
        if not view.all_alive:
            return tuple(actions)  # the pause: nothing is counted, started or dropped
        retired = self._retired(view, named, markers, local_replica)
        self._counting = {r: self._counting.get(r, self._alive_time) for r in retired}
        needed = self._pruner_steps(view, retired, markers, local_replica, stamp, actions)
        self._ask(needed, now, actions)
        return tuple(actions)

    def query_ticket(self) -> int:
        """The ticket of a collect query beginning now: take it before the query's first
        message is sent, hand it to :meth:`collected` once it is answered."""
        return self._generation

    def collected(
        self,
        node_id: str,
        replicas: AbstractSet[str],
        ticket: int,
        *,
        their: Mapping[str, Marker] | PruningMarkers,
    ) -> tuple[See, ...]:
        """``node_id`` has answered a collect query about ``replicas`` begun with
        ``ticket``, every state it sent is merged, and ``their`` are the markers its
        answer carried (at least those of ``replicas``, as they were when it was done).

        Returns the :class:`See` actions to mark: one per replica of the query that this
        node prunes, initialized before the query began, and whose marker in ``their``
        is this node's own (its pruner and round). Another pruner's or round's marker
        means that copy belongs to another prune, a performed one that the replica is
        pruned: neither counts. Merge ``their`` into this node's table too (before the
        next :meth:`step`), so the next step sees a winning or performed marker.

        Raises:
            OperationError: ``ticket`` is not one :meth:`query_ticket` gave.
        """
        if type(ticket) is not int or not 0 <= ticket <= self._generation:
            raise OperationError(f"not a query ticket of this Pruner: {ticket!r:.60}")
        if node_id == self.node_id:
            return ()
        sees: list[See] = []
        for replica in sorted(self._duties.keys() & replicas):
            duty = self._duties[replica]
            if duty.generation > ticket or node_id in duty.seen:
                continue
            if not _own(their.get(replica), self.node_id, duty.round):
                continue  # their copy counts for another pruner or round, or is pruned
            duty.seen.add(node_id)
            sees.append(See(replica, node_id, self.node_id, duty.round))
        return tuple(sees)

    def _advance(self, now: float, all_alive: bool) -> None:
        """Count the time since the last call if both calls saw every member alive. A
        pause stops the count and keeps it (as Akka's "all reachable" clock): a reset
        would let a member suspected every few minutes put pruning off for ever."""
        if self._last is not None:
            last, was_alive = self._last
            if was_alive and all_alive and now > last:
                self._alive_time += now - last
            now = max(now, last)  # a clock that steps back never counts a span twice
        self._last = (now, all_alive)

    def _retired(
        self, view: _View, named: AbstractSet[str], markers: PruningMarkers, local_replica: str
    ) -> set[str]:
        """The retired replicas among those named, pruned here, or marked with this node
        as pruner (by an earlier life, perhaps)."""
        candidates = set(named) | self._duties.keys()
        candidates.update(
            r
            for r, marker in markers.items()
            if isinstance(marker, Initialized) and marker.pruner == self.node_id
        )
        retired: set[str] = set()
        for replica in candidates:
            node = replica.rpartition(".")[0]
            current = local_replica if node == self.node_id else view.replicas.get(node, "")
            if current and replica not in (current, local_replica):
                retired.add(replica)
        return retired

    def _pruner_steps(
        self,
        view: _View,
        retired: set[str],
        markers: PruningMarkers,
        local_replica: str,
        stamp: int,
        actions: list[Action],
    ) -> dict[str, set[str]]:
        """Initialize and perform what this node prunes; the members it must still see,
        with the replicas to see each for."""
        duties, self._duties = self._duties, {}
        stale, self._stale = self._stale, {}
        needed: dict[str, set[str]] = {}
        stalled: set[str] = set()
        lowest = view.lowest == self.node_id
        period = self.config.dissemination_period
        for replica in sorted(retired):
            if self._alive_time - self._counting[replica] < period:
                continue
            marker = markers.get(replica)
            if isinstance(marker, Performed):
                continue
            if not lowest:  # a lower member will take over (or is pruning already)
                continue
            if marker is not None and marker.pruner < self.node_id:  # left or unknown
                held = (marker.pruner, marker.round)
                since = stale.get(replica)
                first = since[1] if since is not None and since[0] == held else self._alive_time
                self._stale[replica] = (held, first)
                if marker.round >= ROUND_MAX or self._alive_time - first < period:
                    stalled.add(replica)
                    continue
                round_ = marker.round + 1
            else:  # none: round 0; a higher pruner's, or this node's own: its round
                round_ = 0 if marker is None else marker.round
            duty = duties.get(replica)
            if duty is None or duty.round != round_:
                self._generation += 1
                duty = _Duty(round_, self._generation)
            self._duties[replica] = duty
            own = _own(marker, self.node_id, round_)
            if not own:
                actions.append(Initialize(replica, self.node_id, round_))
            missing = view.others - duty.seen
            for node in missing:
                needed.setdefault(node, set()).add(replica)
            if own and not missing:  # not on an Initialize above, nor a marker that lost
                actions.append(Perform(replica, local_replica, stamp))
        self._stalled = frozenset(stalled)
        return needed

    def _ask(self, needed: dict[str, set[str]], now: float, actions: list[Action]) -> None:
        """A :class:`Collect` per member still to be seen: about every replica wanted of
        it once the retry is over since it was last asked, else about those it was not
        asked for since."""
        retry = self.config.query_retry
        asked: dict[str, tuple[float, frozenset[str]]] = {}
        for node in sorted(needed):
            wanted = frozenset(needed[node])
            when, replicas = self._asked.get(node, (-math.inf, frozenset()))
            if now - when >= retry:
                actions.append(Collect(node, wanted))
                asked[node] = (now, wanted)
            elif not wanted <= replicas:
                actions.append(Collect(node, wanted - replicas))
                asked[node] = (when, replicas | wanted)
            else:
                asked[node] = (when, replicas)
        self._asked = asked

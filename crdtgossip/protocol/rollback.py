"""The rollback check: a restarted node asks its peers whether its store lost commits.

The store's own mark (``<file>.hwm``, see :mod:`crdtgossip.storage._sqlite_hwm`) finds
commits lost by a damaged write-ahead log or a file replaced by an older copy, but not
a backup restored *with* its mark: the pair is self-consistent, only older. The peers
know better. A replica holds every write it made, so no peer may hold a counter slot or
a dot of it beyond its own (its *marks*, :mod:`crdtgossip.crdts._marks`); if one does,
the store lost writes that left the node, and reusing the replica id would issue dots
and counter values that peers already hold, so new writes would vanish on merge
(issue 18, riak_kv#679).

So a node restarted under a stored replica id, once it has joined, sends
:class:`~crdtgossip.protocol.messages.MarksQuery` to up to :data:`ROLLBACK_PEERS` alive
members (acknowledged delivery has pushed every write to every live member, so any of
them holds what left the node). Each answers with
:class:`~crdtgossip.protocol.messages.MarksReport` parts listing its keys that hold
marks of that replica, going through its store :data:`SCAN_STEP` keys per tick so a
large store never blocks its event loop. The node compares each entry with its own
state of the key. When every member asked has answered (or at
``GossipConfig.rollback_check_timeout``), the check ends; if any peer was ahead, the
node takes a fresh replica id (its member row then gives it, at a new incarnation
announced alive) and keeps everything it holds: the peers' states bring
back the lost writes under the old id, and new writes go under the new one. ``Node``
waits for the end of the check in ``start``, so its first write already uses the id
the check settled on.
"""

from __future__ import annotations

import logging
import math
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Final

from crdtgossip.crdts import CRDT
from crdtgossip.crdts._marks import marks_ahead, replica_marks
from crdtgossip.protocol._engine_base import From
from crdtgossip.protocol.identity import IdentityEngine
from crdtgossip.protocol.messages import MarksQuery, MarksReport
from crdtgossip.protocol.rollback_messages import MAX_REPORT_PARTS
from crdtgossip.protocol.states import Status
from crdtgossip.protocol.transfer import PUMP_INTERVAL

__all__ = [
    "COUNTERS",
    "MAX_SCANS",
    "PART_BYTES",
    "ROLLBACK_PEERS",
    "SCAN_STEP",
    "RollbackEngine",
    "fresh_replica_id",
]

_log = logging.getLogger("crdtgossip.rollback")

ROLLBACK_PEERS: Final = 3
"""Members asked by a restarted node (each holds every write that left it)."""

SCAN_STEP: Final = 20_000
"""Keys an answerer goes through per tick (about 10 ms of work)."""

PART_BYTES: Final = 32 * 1024
"""Roughly the most bytes of entries in one report part."""

MAX_SCANS: Final = 8
"""Most answers being prepared at once; a query past them is dropped (and asked
again by its sender)."""

COUNTERS: Final = (
    "rollback_checks",
    "rollbacks_detected",
    "marks_queries_served",
    "marks_queries_dropped",
    "marks_reports_in",
    "marks_reports_stale",
)
"""The check's counters: checks run and rollbacks found here, queries answered and
dropped (too many at once), report parts taken, and parts dropped as not of a check
running here (another token or replica, or from a member not asked)."""


def fresh_replica_id(node_id: str) -> str:
    """A replica id never used before: the node id plus 64 random bits.

    A node that lost its state must not reuse its old replica id, or its new counter
    slots and dots would collide with ones it already issued (riak_kv#679).
    """
    return f"{node_id}.{secrets.token_hex(8)}"


@dataclass(slots=True)
class _Check:
    """The querier's side: whom it asked and what came back."""

    replica: str
    token: int
    timeout: float
    deadline: float = math.inf
    asked: dict[str, tuple[str, float]] = field(default_factory=dict)  # id -> address, when
    parts: dict[str, set[int]] = field(default_factory=dict)
    last_part: dict[str, int] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    ahead: str | None = None  # a key some peer holds more of, once found

    def complete(self, member: str) -> bool:
        last = self.last_part.get(member)
        return last is not None and len(self.parts.get(member, ())) == last + 1


@dataclass(slots=True)
class _Scan:
    """The answerer's side: one answer being prepared, a slice of keys per tick."""

    address: str
    replica: str
    token: int
    keys: Iterator[str]
    part: int = 0


class RollbackEngine(IdentityEngine):
    """The identity checks of :class:`~crdtgossip.protocol.Engine`: one node id per live
    process (:mod:`~crdtgossip.protocol.identity`), and this rollback check of the
    replica id (see the module doc)."""

    _rollback: _Check | None
    _scans: list[_Scan]
    _seeds: list[str]
    _now: float

    def _joining(self) -> bool:
        raise NotImplementedError

    def check_rollback(self, timeout: float) -> None:
        """Ask peers, once joined, whether the store lost commits (see the module doc).

        Call it before the first tick of an engine restored under a stored replica id.
        A timeout of 0 skips the check.
        """
        if timeout > 0:
            self._rollback = _Check(self.replica_id, self._rng.getrandbits(63), timeout)
            self._counters["rollback_checks"] += 1

    @property
    def rollback_pending(self) -> bool:
        """Whether the rollback check is still waiting for peers (``replica_id`` may
        still change)."""
        return self._rollback is not None

    @property
    def rollback_found(self) -> bool:
        """Whether the check found the store behind a peer (``replica_id`` is then a
        fresh one, to be saved before the first write)."""
        return self._counters["rollbacks_detected"] > 0

    def _watching_rollback(self) -> bool:
        return self._rollback is not None and self._rollback.ahead is None

    def _rollback_watch(self, key: str, value: CRDT) -> None:
        """Before ``value`` (from a peer) is merged into ``key``: while the check runs,
        note whether it holds more of this replica than the key (a join or an
        anti-entropy exchange can bring the lost writes back before any report does,
        and the reports are then compared with a store that already holds them)."""
        check = self._rollback
        if check is None or check.ahead is not None:
            return
        state = self._store.get(key)
        ours = () if state is None else replica_marks(state, check.replica)
        if marks_ahead(replica_marks(value, check.replica), ours):
            check.ahead = key

    def _rollback_tick(self, now: float) -> None:
        if self._scans:
            self._scan_step()
        check = self._rollback
        if check is None:
            return
        if check.deadline == math.inf:
            check.deadline = now + check.timeout
        if now >= check.deadline:
            self._end_check(check)
            return
        if self._seeds and self._joining():
            return  # the members to ask are not known yet
        for member in self._membership.live_members():
            if len(check.asked) >= ROLLBACK_PEERS:
                break
            if member.status is Status.ALIVE and member.node_id not in check.asked:
                check.asked[member.node_id] = (member.address, -math.inf)
        for node_id, (address, sent) in check.asked.items():
            if node_id not in check.answered and now - sent >= self.config.probe_interval:
                check.asked[node_id] = (address, now)
                self._outbox.send(address, MarksQuery(check.replica, check.token), reliable=True)

    def _rollback_deadline(self) -> float | None:
        if self._scans:
            return self._now + PUMP_INTERVAL
        check = self._rollback
        if check is None:
            return None
        if check.deadline == math.inf:
            return self._now
        return min(check.deadline, self._now + self.config.probe_interval)

    def _on_marks_query(self, message: MarksQuery, origin: From) -> None:
        for scan in self._scans:
            if scan.address == origin.address and scan.token == message.token:
                return  # that answer is under way
        if len(self._scans) >= MAX_SCANS:
            self._counters["marks_queries_dropped"] += 1
            return
        self._counters["marks_queries_served"] += 1
        keys = iter(list(self._store))
        self._scans.append(_Scan(origin.address, message.replica, message.token, keys))

    def _scan_step(self) -> None:
        """Go through the next keys of the oldest answer, sending the parts filled."""
        scan = self._scans[0]
        entries: list[tuple[str, tuple[int, ...]]] = []
        size = 0
        for _ in range(SCAN_STEP):
            key = next(scan.keys, None)
            if key is None:
                self._send_part(scan, entries, last=True)
                self._scans.pop(0)
                return
            state = self._store.get(key)
            if state is None:
                continue
            marks = replica_marks(state, scan.replica)
            if any(marks):
                entries.append((key, marks))
                size += len(key) + 9 * len(marks) + 4
                if size >= PART_BYTES and scan.part < MAX_REPORT_PARTS - 1:
                    self._send_part(scan, entries, last=False)
                    entries, size = [], 0
        if entries:
            self._send_part(scan, entries, last=False)

    def _send_part(
        self, scan: _Scan, entries: list[tuple[str, tuple[int, ...]]], *, last: bool
    ) -> None:
        report = MarksReport(scan.replica, scan.token, scan.part, last, tuple(entries))
        self._outbox.send(scan.address, report, reliable=True)
        scan.part += 1

    def _on_marks_report(self, message: MarksReport, origin: From) -> None:
        check = self._rollback
        member = origin.node_id
        if (
            check is None
            or message.token != check.token
            or message.replica != check.replica
            or member not in check.asked
            or member in check.answered
        ):
            self._counters["marks_reports_stale"] += 1
            return
        self._counters["marks_reports_in"] += 1
        for key, theirs in message.entries:
            if check.ahead is None:
                state = self._store.get(key)
                ours = () if state is None else replica_marks(state, check.replica)
                if marks_ahead(theirs, ours):
                    check.ahead = key
        check.parts.setdefault(member, set()).add(message.part)
        if message.last:
            check.last_part[member] = message.part
        if check.complete(member):
            check.answered.add(member)
            if len(check.answered) == len(check.asked):
                self._end_check(check)

    def _end_check(self, check: _Check) -> None:
        self._rollback = None
        if check.ahead is not None:
            self._counters["rollbacks_detected"] += 1
            self.replica_id = fresh_replica_id(self.node_id)
            self._membership.renew_replica(self.replica_id)
            _log.warning(
                "crdtgossip: %s restarted with a store that lost commits: a peer holds "
                "more of replica %s than it does (key %r); it keeps what it has and "
                "takes the fresh replica id %s, and peers bring back the rest",
                self.node_id,
                check.replica,
                check.ahead,
                self.replica_id,
            )
        elif not check.answered:
            _log.warning(
                "crdtgossip: %s: no member answered the rollback check within %.1f s; "
                "it writes under its stored replica id %s",
                self.node_id,
                check.timeout,
                check.replica,
            )

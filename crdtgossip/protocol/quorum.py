"""Quorum coordination: the bookkeeping of writes and reads that wait for other members.

A write with a quorum consistency level is applied locally first, then its delta goes
to the other members in a :class:`~crdtgossip.protocol.messages.WriteRequest`; each
member merges it and answers with a ``WriteAck``. A read asks members for their state
of the key (``ReadRequest`` / ``ReadReply``); the coordinator merges every reply into
its own state and, when enough have answered, sends the joined state to each member
whose reply was behind (read repair).

This module only keeps the books: which requests are pending, whom each asked, who
answered, when to ask more members and when to give up. It is pure and sans-I/O like
the rest of :mod:`crdtgossip.protocol`; the :class:`~crdtgossip.protocol.Engine`
sends the messages and feeds the answers and the time in. Request ids come from a
counter that starts at a random point drawn from the engine's seeded generator, so a
restarted node does not mistake a late answer to its previous life for a new one.

The coordinator counts itself as the first answer: the write is already merged here,
and a read joins the local state.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "FIRST_ROUND_SPARE",
    "HEDGE_FRACTION",
    "MAX_HELD_ACKS",
    "MAX_PENDING",
    "Pending",
    "QuorumResult",
    "QuorumTracker",
]

HEDGE_FRACTION: Final = 1 / 3
"""After this fraction of its timeout, a request still short of answers asks every live
member that has not answered (again, for those already asked: a datagram may have been
lost), and again after each further such fraction. A third leaves two more chances
within the timeout; Cassandra's speculative retry similarly re-asks another replica
once the first is slower than usual."""

FIRST_ROUND_SPARE: Final = 1
"""Members asked at once beyond the answers a request still needs. One spare lets a
request finish at network speed though one member it asked is slow or dead unnoticed,
instead of waiting for the hedge, and wakes fewer members than asking all of them
(Cassandra's rapid read protection asks one more replica for the same reason). On 5
loopback nodes with 4 peer processes on 2 CPUs, Majority write latency was 1.13 ms
asking 2 members, 0.73-0.91 ms asking 3 and 0.84 ms asking all 4 (6.6 datagrams per
write against 8.8 for all)."""

MAX_PENDING: Final = 4096
"""Most quorum requests one node coordinates at once. Each holds a few hundred bytes
and a timer; a caller past this gets an immediate failure instead of unbounded
memory (Cassandra bounds in-flight requests per coordinator the same way)."""

MAX_HELD_ACKS: Final = 16_384
"""Most write acknowledgements held back until the driver has persisted the merged
state. Past it the oldest is dropped: its coordinator times out or counts another
member, which is safe; acknowledging before persisting would not be."""

_ID_SPACE: Final = 1 << 62
"""Request ids start at a random point below this, and stay below the 64-bit wire
limit for any plausible number of requests."""


@dataclass(frozen=True, slots=True)
class QuorumResult:
    """How a quorum request ended.

    Attributes:
        request_id: the id :meth:`Engine.start_write` or :meth:`Engine.start_read`
            returned.
        ok: enough members answered before the deadline.
        answered: how many members answered in time, the coordinator included.
        needed: how many the request needed.
    """

    request_id: int
    ok: bool
    answered: int
    needed: int


@dataclass(slots=True)
class Pending:
    """One request in progress.

    Attributes:
        request_id: its id.
        write: a write (``True``) or a read.
        key: the data key.
        needed: answers needed, the coordinator included.
        deadline: when it fails, in the driver's seconds.
        retry_every: seconds between two rounds of asking the members that have not
            answered.
        next_retry: when the next round is due.
        payload: a write's encoded delta; empty for a read.
        asked: node id -> address of every member asked so far.
        answered: node ids that answered (the coordinator's own id included).
        digests: a read's repliers: node id -> the digest of the state it sent
            (``None`` when it had none), to repair those behind.
    """

    request_id: int
    write: bool
    key: str
    needed: int
    deadline: float
    retry_every: float
    next_retry: float
    payload: bytes = b""
    asked: dict[str, str] = field(default_factory=dict)
    answered: set[str] = field(default_factory=set)
    digests: dict[str, bytes | None] = field(default_factory=dict)

    @property
    def done(self) -> bool:
        """Whether enough members answered."""
        return len(self.answered) >= self.needed


class QuorumTracker:
    """The pending quorum requests of one coordinator, and the acks it holds back.

    Args:
        self_id: the coordinator's node id (its own answer counts).
        rng: draws the first request id (at the first request).
    """

    def __init__(self, self_id: str, rng: random.Random) -> None:
        self._self_id = self_id
        self._rng = rng
        # Drawn at the first request, so an engine that never coordinates one consumes
        # nothing from the shared generator and replays exactly as before.
        self._next_id: int | None = None
        self._pending: dict[int, Pending] = {}
        self._results: list[QuorumResult] = []
        # Acks held until the driver persisted the merges they acknowledge:
        # (token, address, request id), tokens increasing.
        self._held: list[tuple[int, str, int]] = []
        self._next_token = 0
        self.late_answers = 0
        self.failures = 0
        self.held_dropped = 0

    def __len__(self) -> int:
        return len(self._pending)

    def new(
        self, *, write: bool, key: str, needed: int, timeout: float, now: float, payload: bytes
    ) -> Pending:
        """Register a request; the coordinator is its first answer.

        A request over :data:`MAX_PENDING` is registered too, already failed.
        """
        if self._next_id is None:
            self._next_id = self._rng.randrange(_ID_SPACE)
        request_id = self._next_id
        self._next_id += 1
        retry_every = timeout * HEDGE_FRACTION
        pending = Pending(
            request_id,
            write,
            key,
            max(needed, 1),
            now + timeout,
            retry_every,
            now + retry_every,
            payload,
        )
        pending.answered.add(self._self_id)
        self._pending[request_id] = pending
        if len(self._pending) > MAX_PENDING:
            self.finish(pending, ok=False)
        elif pending.done:
            self.finish(pending, ok=True)
        return pending

    def is_pending(self, request_id: int) -> bool:
        """Whether ``request_id`` is still waiting for answers."""
        return request_id in self._pending

    def get(self, request_id: int, node_id: str) -> Pending | None:
        """The pending request an answer from ``node_id`` belongs to, if it asked it.

        An answer to a finished or unknown request, or from a member never asked, is
        counted as late and ignored.
        """
        pending = self._pending.get(request_id)
        if pending is None or node_id not in pending.asked:
            self.late_answers += 1
            return None
        return pending

    def finish(self, pending: Pending, *, ok: bool) -> None:
        """End a request and queue its result."""
        if self._pending.pop(pending.request_id, None) is None:
            return
        if not ok:
            self.failures += 1
        answered = len(pending.answered)
        self._results.append(QuorumResult(pending.request_id, ok, answered, pending.needed))

    def expired(self, now: float) -> list[Pending]:
        """Requests whose deadline has passed (still registered; finish them)."""
        return [p for p in self._pending.values() if now >= p.deadline]

    def retries_due(self, now: float) -> list[Pending]:
        """Requests due for another round of asking; their next round is scheduled."""
        due = [p for p in self._pending.values() if now >= p.next_retry]
        for pending in due:
            pending.next_retry = now + pending.retry_every
        return due

    def next_deadline(self) -> float | None:
        """The earliest retry or deadline of any pending request."""
        if not self._pending:
            return None
        return min(min(p.next_retry, p.deadline) for p in self._pending.values())

    def take_results(self) -> list[QuorumResult]:
        """The results since the last call, in the order the requests ended."""
        results, self._results = self._results, []
        return results

    # --- acknowledgements held until persisted ---------------------------------------

    def hold(self, address: str, request_id: int) -> None:
        """Keep an ack for ``request_id`` until :meth:`release` passes its token."""
        self._held.append((self._next_token, address, request_id))
        self._next_token += 1
        if len(self._held) > MAX_HELD_ACKS:
            del self._held[0]
            self.held_dropped += 1

    @property
    def held(self) -> int:
        """How many acks are held."""
        return len(self._held)

    @property
    def mark(self) -> int:
        """The token the next held ack will get: release(mark) releases all held now."""
        return self._next_token

    def release(self, mark: int) -> list[tuple[str, int]]:
        """Take the held acks older than ``mark``: ``(address, request id)`` each."""
        count = 0
        while count < len(self._held) and self._held[count][0] < mark:
            count += 1
        released = [(address, request_id) for _, address, request_id in self._held[:count]]
        del self._held[:count]
        return released

"""Sending whole states of any size: independent parts, byte chunks, a budget per call.

Anti-entropy sends a key's whole state to a joiner, or to a member that lacks the key.
A small state goes at once as one :class:`~crdtgossip.protocol.messages.State`. A large
one is never encoded whole on the engine's call path, and never dropped for being
larger than a frame:

* **Parts** (ORSet, ORMap and the other causal types; GSet, LWWMap): the state is sent
  as a sequence of sub-states, each a valid state of its type that merges on its own
  (a join decomposition). A causal type is cut by ranges of one replica's dot counters:
  the part for counters ``[lo, hi)`` of replica r holds the live dots of r in that
  range with their elements, under a context of exactly the counters of r in that range
  the state has seen (so the part also carries the removes there, and nothing it says
  about other ranges). A G-Set or LWW-Map is cut by its elements or keys. The join of
  the parts is the state; each part is at most the state it was cut from, so a part
  cut after a change is still correct, and what changed meanwhile is repaired by the
  next exchange. No reassembly is needed: a lost part costs only itself.
* **Chunks** (every other type, and a single part still too large for a frame): the
  encoding is sliced into :class:`~crdtgossip.protocol.messages.StateChunk` messages
  that the receiver reassembles (:mod:`~crdtgossip.protocol.reassembly`).

Either way the work is spread over calls: :meth:`Transfers.pump`, run at each tick,
encodes at most :data:`STEP_BYTES` of parts or chunks and continues at the next tick;
the engine asks for a tick :data:`PUMP_INTERVAL` later while a transfer is pending. A
key being sent to a member is not queued for it again (a repeated join or exchange
does not restart it), and a key that cannot be sent (its encoding past
``max_key_bytes``, or one that fails to encode) is refused with a backoff that doubles
from :data:`BACKOFF_MIN` to :data:`BACKOFF_MAX`, counted, never retried in a loop.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Container
from dataclasses import dataclass, field
from typing import Any, Final, cast

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.errors import EncodeError
from crdtgossip.protocol.messages import MAX_KEY_BYTES, State, StateChunk, encode_message
from crdtgossip.protocol.outbox import Outbox

__all__ = [
    "BACKOFF_MAX",
    "BACKOFF_MIN",
    "COUNTERS",
    "MAX_PENDING",
    "PART_BYTES",
    "PUMP_INTERVAL",
    "SMALL_ITEMS",
    "STEP_BYTES",
    "Transfers",
]

STEP_BYTES: Final = 64 * 1024
"""Most bytes of parts or chunks encoded in one call into the engine. Cutting and
encoding parts runs at 5 to 20 MB/s in CPython on a busy machine: a step of 64 KiB
took at most 16 ms of CPU sending a 10^5-element ORSet (256 KiB took up to 57 ms, a
call that cut two parts), well under the 100 ms an event loop may be held, and the
receiver merges one step's parts in about as long."""

PART_BYTES: Final = 64 * 1024
"""Target size of one part: large enough that per-part overhead (a context, a message
header) is noise, small enough that several share a 16 MiB frame and a lost or
refused part costs little. Never more than half a reliable frame."""

SMALL_ITEMS: Final = 1024
"""A decomposable state with at most this many live dots, elements or keys is encoded
and sent whole at once (a few tens of kilobytes at most, well within a frame)."""

PUMP_INTERVAL: Final = 0.002
"""Seconds between two steps of a pending transfer: 2 ms gives the event loop (and
incoming frames) a turn between steps, and still moves STEP_BYTES up to 500 times a
second."""

MAX_BACKLOG: Final = 2 * 1024 * 1024
"""Bytes waiting in the transport for one member past which its transfers pause (the
others go on): a receiver slower than the sender (merging a large state costs more than
cutting it) would otherwise let the transport's buffer overflow and drop parts, and
each lost part leaves a gap in the receiver's counters that the rest of the transfer
then pays for. Set by the driver (:meth:`Transfers.set_backlog`); 0 without one."""

MAX_PENDING: Final = 1024
"""Most transfers queued at once; one more is refused (counted) and asked again by
the next anti-entropy exchange."""

BACKOFF_MIN: Final = 1.0
BACKOFF_MAX: Final = 300.0
"""Seconds a key that could not be sent to a member waits before it is tried again,
doubling from the first to the second: a state past ``max_key_bytes`` is not encoded
again at every exchange."""

_MIN_PART_ITEMS: Final = 16
_MAX_PART_ITEMS: Final = 1 << 16
_SCAN_FACTOR: Final = 4  # counters scanned per live dot wanted: bounds a part's work
_CHUNK_HEADER: Final = MAX_KEY_BYTES + 64  # a chunk's key and its five numbers

COUNTERS: Final = (
    "transfers_started",
    "transfers_done",
    "transfer_parts",
    "transfer_chunks",
    "transfers_refused",
    "transfers_deferred",
    "transfer_bytes_encoded",
)
"""Counters added to the engine's stats: transfers by parts or chunks started and
finished, parts and chunks sent, keys refused (too large, or failing to encode; then
backed off), transfers refused because too many were queued, and bytes encoded by
transfers (for the per-call budget)."""


def _decomposition(state: CRDT) -> str | None:
    """How a state splits into parts: "causal", "items", or None (it does not)."""
    if isinstance(state, CausalCRDT) and type(state)._subset is not CausalCRDT._subset:
        return "causal"
    if callable(getattr(state, "_subset_items", None)) and (
        hasattr(state, "_elements") or hasattr(state, "_entries")
    ):
        return "items"
    return None


def _items_of(state: CRDT) -> Any:
    found = getattr(state, "_elements", None)
    return getattr(state, "_entries", None) if found is None else found


def _replicas(state: CausalCRDT) -> list[str]:
    context = state._context
    return sorted(context.vector.keys() | context.cloud.keys())


def _live_count(state: CRDT, how: str) -> int:
    if how == "items":
        return len(_items_of(state))
    causal = cast(CausalCRDT, state)
    return sum(len(causal._live_of(replica)) for replica in _replicas(causal))


def context_slice(context: CausalContext, replica: str, low: int, high: int) -> CausalContext:
    """The counters of ``replica`` in ``[low, high)`` that ``context`` has seen.

    Args:
        context: a causal context.
        replica: the replica.
        low: the first counter (at least 1).
        high: one past the last.

    Returns:
        A new context of just those dots.
    """
    base = context.vector.get(replica, 0)
    cloud = {c for c in context.cloud.get(replica, ()) if low <= c < high}
    vector: dict[str, int] = {}
    if low == 1:
        if min(base, high - 1) > 0:
            vector[replica] = min(base, high - 1)
    else:
        cloud.update(range(low, min(base, high - 1) + 1))
    sliced = CausalContext(vector, {replica: cloud} if cloud else {})
    sliced.compact([replica])
    return sliced


@dataclass(slots=True)
class _Job:
    address: str
    key: str
    how: str  # "causal", "items" or "chunks"
    per_part: int = 1024
    replicas: list[str] = field(default_factory=list)
    replica_index: int = 0
    next_counter: int = 1
    items: list[Any] = field(default_factory=list)
    item_index: int = 0
    payload: bytes = b""
    transfer_id: int = 0
    chunk_index: int = 0
    chunk_count: int = 0


class Transfers:
    """The whole states being sent, a budget of bytes per call.

    Args:
        store: the engine's key -> state table (read only).
        held: keys whose state must not leave the node now (skipped until released).
        outbox: where messages go.
        counters: the engine's counters; :data:`COUNTERS` are added to it.
        max_key_bytes: ``GossipConfig.max_key_bytes``.
        clock: the engine's current time in seconds (for backoffs).
        measured: called with a key and the bytes its transfer encoded, once all of it
            was cut (the engine's size estimate of the key).
        life: puts the key's life record in front of an encoded state or part (see
            :mod:`~crdtgossip.keylife`); given no state (``b""``), returns
            the record of a deleted key alone, or ``b""``.
    """

    def __init__(
        self,
        *,
        store: dict[str, CRDT],
        held: Container[str],
        outbox: Outbox,
        counters: dict[str, int],
        max_key_bytes: int,
        clock: Callable[[], float],
        measured: Callable[[str, int], None] | None = None,
        written: Callable[[str], int] = lambda key: 0,
        life: Callable[[str, bytes], bytes] = lambda key, payload: payload,
    ) -> None:
        self._store = store
        self._written = written
        self._life = life
        self._held = held
        self._outbox = outbox
        self._counters = counters
        self._max_key_bytes = max_key_bytes
        self._measured = measured
        self._backlog: Callable[[str], int] = lambda address: 0
        self._clock = clock
        for name in COUNTERS:
            counters.setdefault(name, 0)
        self._jobs: deque[_Job] = deque()
        self._active: set[tuple[str, str]] = set()
        self._backoff: dict[tuple[str, str], tuple[float, float]] = {}  # until, delay
        self._serial = 0
        self._job_bytes: dict[tuple[str, str], int] = {}
        self._chunk_room = max(1, outbox.reliable_room - _CHUNK_HEADER)
        self._part_bytes = max(1, min(PART_BYTES, outbox.reliable_room // 2))

    @property
    def pending(self) -> bool:
        """Whether a transfer waits for :meth:`pump`."""
        return bool(self._jobs)

    def set_backlog(self, backlog: Callable[[str], int]) -> None:
        """Pause the transfers to a member while ``backlog(address)`` (the bytes the
        transport still holds for it) is past :data:`MAX_BACKLOG`."""
        self._backlog = backlog

    def sending(self, address: str, key: str) -> bool:
        """Whether the state of ``key`` is being sent to ``address`` now."""
        return (address, key) in self._active

    def send(self, address: str, key: str) -> None:
        """Send the whole state of ``key`` to ``address``: at once if small, else queued.

        Args:
            address: the destination.
            key: a key held here (ignored when absent or held).
        """
        state = self._store.get(key)
        name = (address, key)
        if key in self._held or name in self._active:
            return
        if state is None:
            tombstone = self._life(key, b"")  # a deleted key's record, if kept
            if tombstone:
                self._outbox.send(address, State(key, tombstone), reliable=True)
            return
        backoff = self._backoff.get(name)
        if backoff is not None and self._clock() < backoff[0]:
            return
        how = _decomposition(state)
        if how is not None and _live_count(state, how) > SMALL_ITEMS:
            job = _Job(address, key, how)
            if how == "causal":
                job.replicas = _replicas(cast(CausalCRDT, state))
            else:
                job.items = list(_items_of(state))
            self._queue(job)
            return
        payload = self._encode(name, state)
        if payload is None:
            return
        packed = encode_message(State(key, payload, self._written(key)))
        if len(packed) <= self._outbox.reliable_room:
            self._outbox.send(address, packed, reliable=True)
            self._backoff.pop(name, None)
        else:
            self._queue(self._chunks(address, key, payload))

    def _encode(self, name: tuple[str, str], state: CRDT) -> bytes | None:
        try:
            payload = self._life(name[1], encode(state))
        except EncodeError:
            self._refuse(name)
            return None
        self._counters["transfer_bytes_encoded"] += len(payload)
        if len(payload) > self._max_key_bytes:
            self._refuse(name)
            return None
        return payload

    def _refuse(self, name: tuple[str, str]) -> None:
        """Back a key off for a member: it is not tried again before the delay ends."""
        self._counters["transfers_refused"] += 1
        delay = min(BACKOFF_MAX, 2 * self._backoff.get(name, (0.0, BACKOFF_MIN / 2))[1])
        self._backoff[name] = (self._clock() + delay, delay)

    def _chunks(self, address: str, key: str, payload: bytes) -> _Job:
        self._serial += 1
        count = math.ceil(len(payload) / self._chunk_room)
        return _Job(address, key, "chunks", payload=payload, transfer_id=self._serial,
                    chunk_count=count)  # fmt: skip

    def _queue(self, job: _Job, *, front: bool = False) -> None:
        name = (job.address, job.key)
        if len(self._jobs) >= MAX_PENDING:
            self._counters["transfers_deferred"] += 1
            return
        if job.how != "chunks" or name not in self._active:
            self._counters["transfers_started"] += 1
        self._active.add(name)
        if front:
            self._jobs.appendleft(job)
        else:
            self._jobs.append(job)

    def pump(self) -> None:
        """Encode and queue the next parts or chunks, up to :data:`STEP_BYTES`."""
        spent = 0
        skipped = 0
        while self._jobs and spent < STEP_BYTES and skipped < len(self._jobs):
            job = self._jobs[0]
            if job.key in self._held or self._backlog(job.address) > MAX_BACKLOG:
                self._jobs.rotate(-1)  # it may not leave now: the others first
                skipped += 1
                continue
            state = self._store.get(job.key)
            if state is None and job.how != "chunks":
                self._finish(job)
                continue
            spent += self._step(job, state)

    def _step(self, job: _Job, state: CRDT | None) -> int:
        """One part or chunk of ``job``; the bytes it encoded."""
        if job.how == "chunks":
            return self._next_chunk(job)
        assert state is not None
        if job.how == "causal":
            part, advance = self._causal_part(job, cast(CausalCRDT, state))
            taken = advance[2]
        else:
            chunk = job.items[job.item_index : job.item_index + job.per_part]
            subset: Callable[[list[Any]], CRDT] = getattr(state, "_subset_items")  # noqa: B009
            part, advance, taken = subset(chunk), None, len(chunk)
        try:
            payload = self._life(job.key, encode(part))
        except EncodeError:
            self._jobs.popleft()
            self._active.discard((job.address, job.key))
            self._refuse((job.address, job.key))
            return 0
        size = len(payload)
        self._counters["transfer_bytes_encoded"] += size
        packed = encode_message(State(job.key, payload, self._written(job.key)))
        if len(packed) > self._outbox.reliable_room and job.per_part > 1:
            job.per_part = max(1, job.per_part // 2)  # too big: the same range, halved
            return size
        # Aim the next part at PART_BYTES from what this one cost per item.
        goal = max(1, taken) * self._part_bytes // max(size, 1)
        job.per_part = max(_MIN_PART_ITEMS, min(_MAX_PART_ITEMS, goal))
        if len(packed) > self._outbox.reliable_room:
            self._queue(self._chunks(job.address, job.key, payload), front=True)
        else:
            self._outbox.send(job.address, packed, reliable=True)
            self._counters["transfer_parts"] += 1
        name = (job.address, job.key)
        self._job_bytes[name] = self._job_bytes.get(name, 0) + size
        if advance is None:
            job.item_index += taken
            done = job.item_index >= len(job.items)
        else:
            job.replica_index, job.next_counter, _ = advance
            done = job.replica_index >= len(job.replicas)
        if done:
            self._finish(job)
        return size

    def _causal_part(self, job: _Job, state: CausalCRDT) -> tuple[CRDT, tuple[int, int, int]]:
        """The part for the next counter range, and where the job goes next."""
        replica = job.replicas[job.replica_index]
        low = job.next_counter
        live = state._live_of(replica)
        top = state._context.max_counter(replica)
        if low == 1 and len(live) <= job.per_part:
            high = top + 1  # the whole replica in one part, however sparse
            dots: list[Dot] = [(replica, counter) for counter in live]
        else:
            dots = []
            counter, last = low, min(top, low + _SCAN_FACTOR * job.per_part)
            while counter <= last and len(dots) < job.per_part:
                if counter in live:
                    dots.append((replica, counter))
                counter += 1
            high = counter
        part = state._subset(dots, context_slice(state._context, replica, low, high))
        if high > top:
            return cast(CRDT, part), (job.replica_index + 1, 1, len(dots))
        return cast(CRDT, part), (job.replica_index, high, len(dots))

    def _next_chunk(self, job: _Job) -> int:
        start = job.chunk_index * self._chunk_room
        data = job.payload[start : start + self._chunk_room]
        chunk = StateChunk(
            job.key,
            job.transfer_id,
            job.chunk_index,
            job.chunk_count,
            len(job.payload),
            data,
            self._written(job.key),
        )
        self._outbox.send(job.address, chunk, reliable=True)
        self._counters["transfer_chunks"] += 1
        job.chunk_index += 1
        if job.chunk_index >= job.chunk_count:
            self._finish(job)
        return len(data)

    def _finish(self, job: _Job) -> None:
        self._jobs.popleft()
        name = (job.address, job.key)
        if job.how == "chunks" and any(
            other.address == job.address and other.key == job.key for other in self._jobs
        ):
            return  # a part's chunks ended; the part transfer goes on
        self._active.discard(name)
        self._backoff.pop(name, None)
        self._counters["transfers_done"] += 1
        total = self._job_bytes.pop(name, len(job.payload))
        if self._measured is not None:
            self._measured(job.key, total)

"""The pruning markers: per retired replica, how far the cluster's pruning of it has got.

A marker is one of two things (see the concepts page "Pruning removed replicas"):

* :class:`Initialized` ``(pruner, seen, round)``: ``pruner`` is pruning the replica in
  ``round`` and has merged the copies of ``seen`` since. A round counts takeovers: a
  marker whose pruner is gone would win every join for ever, so another node takes it
  over in the next round (:class:`~crdtgossip.protocol.pruning.Pruner` says when);
* :class:`Performed` ``(at)``: the prune is done; ``at`` is a stamp (Unix ns, or an HLC
  stamp on that scale) of when, which sets how long the marker lives.

:class:`PruningMarkers` is the table of them, replica id -> marker, and it is a
join-semilattice, so it spreads, is repaired and is stored like any state: the engine
keeps its bytes (:meth:`PruningMarkers.encode`) under a reserved key. The join of two
tables is taken per replica id over the union of their ids, by :func:`join`:

* a performed marker beats an initialized one (the prune is done, whoever started it);
* of two performed markers, the larger ``at`` (the later stamp keeps it longer);
* of two initialized markers, the higher round, as it is (a takeover wins);
* of one round, the lower pruner id, as it is (its seen set says what *that* pruner
  merged, the other's nothing about it): concurrent starts settle on one pruner;
* of one round and pruner, the union of their seen sets.

Ordered so (Initialized by round, then pruner id descending, then seen set; every
Performed above, by ``at``: a lexicographic product of two chains and a powerset) the
markers form a lattice and :func:`join` is its least upper bound. Every mutator is an
inflation (its result is the join of the table with something), except
:meth:`PruningMarkers.expire`, the one step that forgets: see there why that is safe.

Bytes: :meth:`~PruningMarkers.encode` gives one canonical msgpack form (a version
first, markers sorted by replica id, seen sets sorted), and
:meth:`~PruningMarkers.decode` takes back exactly that form: any other input, hostile
or merely non-canonical, raises :class:`~crdtgossip.errors.DecodeError` and nothing
else. The limits below bound what a table may hold, so every table the mutators build
encodes and decodes again.

>>> markers = PruningMarkers()
>>> markers.initialize("b.00000000000000aa", "a")
True
>>> markers.see("b.00000000000000aa", "c", pruner="a")
True
>>> markers.get("b.00000000000000aa")
Initialized(pruner='a', seen=frozenset({'c'}), round=0)
>>> markers.initialize("b.00000000000000aa", "b", round=1)  # a takeover
True
>>> markers.get("b.00000000000000aa")
Initialized(pruner='b', seen=frozenset(), round=1)
>>> PruningMarkers.decode(markers.encode()) == markers
True
>>> markers.perform("b.00000000000000aa", 1_700_000_000_000_000_000)
True
>>> markers.performed()
frozenset({'b.00000000000000aa'})
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, TypeAlias

import msgpack

from crdtgossip._codec.limits import Limits
from crdtgossip._codec.reader import UNCHECKED_INPUT, check_complete
from crdtgossip.errors import DecodeError, EncodeError, MergeError, OperationError

__all__ = [
    "MARKERS_VERSION",
    "MAX_ENCODED_BYTES",
    "MAX_ID_BYTES",
    "MAX_MARKERS",
    "MAX_SEEN",
    "ROUND_MAX",
    "STAMP_MAX",
    "Initialized",
    "Marker",
    "Performed",
    "PruningMarkers",
    "join",
]

MARKERS_VERSION: Final = 2
"""The first item of every encoding; decode refuses any other (version 1, before rounds,
was never stored or sent)."""

MAX_MARKERS: Final = 65_536
"""Most markers in one table: one per replica retired within a marker's lifetime (6 h
by default) would take 3 stateless restarts a second."""

MAX_SEEN: Final = 65_536
"""Most node ids in one seen set: more than a cluster has members."""

MAX_ID_BYTES: Final = 1_024
"""Longest node id or replica id, in UTF-8 bytes."""

MAX_ENCODED_BYTES: Final = 16 * 1024 * 1024
"""Largest encoding: the node's TCP frame limit, so the table fits in one message."""

STAMP_MAX: Final = 2**64 - 1
"""Largest stamp (``Performed.at``, expiry times): an unsigned 64-bit integer."""

ROUND_MAX: Final = 2**64 - 1
"""Largest round (``Initialized.round``), like the stamps; no takeover goes past it."""

_INITIALIZED, _PERFORMED = 0, 1  # the wire code of each marker kind, fixed forever


@dataclass(frozen=True, slots=True)
class Initialized:
    """``pruner`` is pruning the replica in ``round`` (0, or one past the marker it took
    over); ``seen``: the node ids whose copies it has merged since (recorded by itself)."""

    pruner: str
    seen: frozenset[str] = field(default_factory=frozenset)
    round: int = 0


@dataclass(frozen=True, slots=True)
class Performed:
    """The prune is done; ``at`` is the stamp of when (Unix ns scale)."""

    at: int


Marker: TypeAlias = Initialized | Performed


def join(a: Marker, b: Marker) -> Marker:
    """The least upper bound of two markers of one replica (rules in the module doc).

    Returns one of the arguments when it is the bound, so a caller can tell a join that
    changed nothing by identity.
    """
    if isinstance(a, Performed):
        if isinstance(b, Performed):
            return a if a.at >= b.at else b
        return a
    if isinstance(b, Performed):
        return b
    if a.round != b.round:
        return a if a.round > b.round else b
    if a.pruner != b.pruner:
        return a if a.pruner < b.pruner else b
    if b.seen <= a.seen:
        return a
    if a.seen <= b.seen:
        return b
    return Initialized(a.pruner, a.seen | b.seen, a.round)


def _check_id(value: object, what: str) -> str:
    """A node or replica id: a non-empty str of at most MAX_ID_BYTES UTF-8 bytes."""
    if type(value) is str and value and len(value) <= MAX_ID_BYTES and value.isascii():
        return value
    if type(value) is not str or not value:
        raise OperationError(f"a {what} must be a non-empty str, not {value!r:.60}")
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError:
        raise OperationError(f"the {what} {value!r:.60} is not valid Unicode") from None
    if size > MAX_ID_BYTES:
        raise OperationError(f"a {what} is at most {MAX_ID_BYTES} UTF-8 bytes, not {size}")
    return value


def _check_stamp(value: object, what: str) -> int:
    """A stamp or a round: an int in 0 .. 2**64 - 1 (STAMP_MAX == ROUND_MAX)."""
    if type(value) is not int or not 0 <= value <= STAMP_MAX:
        raise OperationError(f"{what} must be an int in 0 .. 2**64 - 1, not {value!r:.60}")
    return value


def _check_marker(marker: object) -> Marker:
    if isinstance(marker, Performed):
        _check_stamp(marker.at, "Performed.at")
        return marker
    if isinstance(marker, Initialized):
        _check_id(marker.pruner, "pruner id")
        _check_stamp(marker.round, "Initialized.round")
        if type(marker.seen) is not frozenset:
            raise OperationError("Initialized.seen must be a frozenset of node ids")
        if len(marker.seen) > MAX_SEEN:
            raise OperationError(f"a seen set holds at most {MAX_SEEN} node ids")
        for node_id in marker.seen:
            _check_id(node_id, "node id")
        return marker
    raise OperationError(f"a marker is Initialized or Performed, not {marker!r:.60}")


class PruningMarkers:
    """The marker table: replica id -> :data:`Marker`, a join-semilattice.

    Mutable, like the data types; :meth:`copy` gives an independent table. The mutators
    return whether the table changed (what the engine spreads and stores). Each refuses
    an invalid argument or a table past the limits with
    :class:`~crdtgossip.errors.OperationError` (:meth:`merge`:
    :class:`~crdtgossip.errors.MergeError`), leaving the table unchanged.
    """

    __slots__ = ("_markers", "_performed")

    def __init__(self, markers: Mapping[str, Marker] | None = None) -> None:
        """Build a table, empty or holding ``markers`` (checked like the mutators')."""
        self._markers: dict[str, Marker] = {}
        self._performed: frozenset[str] | None = frozenset()
        if markers:
            if len(markers) > MAX_MARKERS:
                raise OperationError(f"a marker table holds at most {MAX_MARKERS} markers")
            self._markers = {
                _check_id(replica, "replica id"): _check_marker(marker)
                for replica, marker in markers.items()
            }
            self._performed = None

    def get(self, replica: str) -> Marker | None:
        """The marker of ``replica``, or None when it has none."""
        return self._markers.get(replica)

    def __len__(self) -> int:
        return len(self._markers)

    def __contains__(self, replica: object) -> bool:
        return replica in self._markers

    def __iter__(self) -> Iterator[str]:
        """The replica ids that have a marker (in no particular order)."""
        return iter(self._markers)

    def items(self) -> Iterator[tuple[str, Marker]]:
        """Every (replica id, marker) pair (in no particular order)."""
        return iter(self._markers.items())

    def performed(self) -> frozenset[str]:
        """The replica ids with a performed marker: the drop filter (every held state
        and every received payload naming one runs ``drop_replica`` on it first)."""
        if self._performed is None:
            self._performed = frozenset(
                replica
                for replica, marker in self._markers.items()
                if isinstance(marker, Performed)
            )
        return self._performed

    def _put(self, replica: str, marker: Marker) -> bool:
        """Join ``marker`` into ``replica``'s; whether that changed anything."""
        old = self._markers.get(replica)
        if old is None:
            if len(self._markers) >= MAX_MARKERS:
                raise OperationError(f"a marker table holds at most {MAX_MARKERS} markers")
            new = marker
        else:
            new = join(old, marker)
            if new is old or new == old:
                return False
        self._markers[replica] = new
        if isinstance(new, Performed) or isinstance(old, Performed):
            self._performed = None
        return True

    def initialize(self, replica: str, pruner: str, *, round: int = 0) -> bool:
        """Record that ``pruner`` starts pruning ``replica`` in ``round``, nothing seen
        yet. A join: it does nothing on a performed marker, a higher round's, or one of
        its round and a lower pruner; it replaces any other."""
        marker = Initialized(_check_id(pruner, "pruner id"), round=_check_stamp(round, "round"))
        return self._put(_check_id(replica, "replica id"), marker)

    def see(self, replica: str, node_id: str, *, pruner: str, round: int = 0) -> bool:
        """Add ``node_id`` to the seen set of ``replica``'s marker if it is initialized by
        ``pruner`` (the caller) in ``round``; else nothing is changed and False returned,
        so a pruner whose marker lost a join never writes into another's."""
        _check_id(replica, "replica id")
        _check_id(node_id, "node id")
        marker = self._markers.get(replica)
        if not isinstance(marker, Initialized) or (marker.pruner, marker.round) != (pruner, round):
            return False
        if node_id in marker.seen:
            return False
        if len(marker.seen) >= MAX_SEEN:
            raise OperationError(f"a seen set holds at most {MAX_SEEN} node ids")
        self._markers[replica] = Initialized(pruner, marker.seen | {node_id}, round)
        return True

    def perform(self, replica: str, at: int) -> bool:
        """Record that the prune of ``replica`` is done, at stamp ``at``."""
        marker = Performed(_check_stamp(at, "Performed.at"))
        return self._put(_check_id(replica, "replica id"), marker)

    def merge(self, other: PruningMarkers) -> bool:
        """Join ``other`` into this table, in place; whether this table changed.

        Raises:
            MergeError: ``other`` is not a marker table, or the join would pass
                :data:`MAX_MARKERS` markers or :data:`MAX_SEEN` seen ids (this table is
                then unchanged).
        """
        if not isinstance(other, PruningMarkers):
            raise MergeError(f"cannot merge {type(other).__name__} into a marker table")
        changes: dict[str, Marker] = {}
        for replica, theirs in other._markers.items():
            ours = self._markers.get(replica)
            new = theirs if ours is None else join(ours, theirs)
            if new is ours:
                continue
            if isinstance(new, Initialized) and len(new.seen) > MAX_SEEN:
                raise MergeError(f"the merged seen set of {replica!r:.60} passes {MAX_SEEN}")
            if ours is None or new != ours:
                changes[replica] = new
        added = sum(1 for replica in changes if replica not in self._markers)
        if len(self._markers) + added > MAX_MARKERS:
            raise MergeError(f"the merged marker table passes {MAX_MARKERS} markers")
        if not changes:
            return False
        self._markers.update(changes)
        self._performed = None
        return True

    def expire(self, now_stamp: int, ttl_ns: int) -> frozenset[str]:
        """Drop every performed marker older than ``ttl_ns`` at ``now_stamp``, that is
        with ``now_stamp - at > ttl_ns``; returns the replica ids dropped.

        This is the one step that is not a join (it forgets), and each node takes it
        locally, on its own clock; nothing is sent for it. It is safe because the
        marker is kept longer than any copy can stay apart: after the ttl every copy is
        assumed clean (it has run ``drop_replica``, or merged the pruned state and so
        never names the replica again). A node that has not expired the marker yet may
        send it back; it keeps its ``at``, so it expires here again at the next call,
        and the table settles on forgetting it everywhere. A copy that comes back after
        the ttl still naming the replica breaks that assumption: the lifetime must be
        longer than the longest partition, or the oldest store restored.
        """
        _check_stamp(now_stamp, "now_stamp")
        _check_stamp(ttl_ns, "ttl_ns")
        gone = frozenset(
            replica
            for replica, marker in self._markers.items()
            if isinstance(marker, Performed) and now_stamp - marker.at > ttl_ns
        )
        for replica in gone:
            del self._markers[replica]
        if gone:
            self._performed = None
        return gone

    def copy(self) -> PruningMarkers:
        """An independent table with the same markers (markers are immutable)."""
        twin = PruningMarkers()
        twin._markers = dict(self._markers)
        twin._performed = self._performed
        return twin

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PruningMarkers):
            return NotImplemented
        return self._markers == other._markers

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"PruningMarkers({dict(sorted(self._markers.items()))!r})"

    def encode(self) -> bytes:
        """The canonical bytes of the table.

        Layout: the msgpack array ``[MARKERS_VERSION, markers]``, where ``markers`` is
        an array sorted by replica id of ``[replica, 0, round, pruner, [seen ids,
        sorted]]`` (initialized) and ``[replica, 1, at]`` (performed). Equal tables give
        equal bytes.

        Raises:
            EncodeError: the bytes would pass :data:`MAX_ENCODED_BYTES`.
        """
        entries: list[list[object]] = []
        for replica in sorted(self._markers):
            marker = self._markers[replica]
            if isinstance(marker, Performed):
                entries.append([replica, _PERFORMED, marker.at])
            else:
                entries.append(
                    [replica, _INITIALIZED, marker.round, marker.pruner, sorted(marker.seen)]
                )
        data: bytes = msgpack.packb([MARKERS_VERSION, entries], use_bin_type=True)
        if len(data) > MAX_ENCODED_BYTES:
            raise EncodeError(f"a marker table of {len(data)} bytes passes {MAX_ENCODED_BYTES}")
        return data

    @classmethod
    def decode(cls, data: bytes | bytearray | memoryview) -> PruningMarkers:
        """The table :meth:`encode` gave these bytes for.

        Only the canonical form is taken: ``decode(data).encode() == data`` for every
        input accepted.

        Raises:
            DecodeError: ``data`` is not bytes, passes a limit, is not msgpack, is of
                another version, breaks the layout, or is not in its canonical form.
                Nothing else is raised.
        """
        if not isinstance(data, bytes | bytearray | memoryview):
            raise DecodeError(f"marker table bytes must be bytes, not {type(data).__name__}")
        if len(data) > MAX_ENCODED_BYTES:
            raise DecodeError(f"a marker table of {len(data)} bytes passes {MAX_ENCODED_BYTES}")
        data = bytes(data)
        wire = _unpack(data)
        table = cls()
        table._markers = _read_table(wire)
        table._performed = None
        if table.encode() != data:
            raise DecodeError("marker table not in canonical form")
        return table


def _unpack(data: bytes) -> object:
    """The msgpack object of ``data``, under the limits (DecodeError on anything else)."""
    # No array may announce more items than the input has bytes, and a large input is
    # walked first without building anything, so headers that announce more than follows
    # cost nothing (check_complete in the codec's reader).
    most_items = max(min(MAX_MARKERS, MAX_SEEN, len(data)), 1)
    unpacker = msgpack.Unpacker(
        raw=False,
        use_list=True,
        max_buffer_size=max(len(data), 1),
        max_str_len=MAX_ID_BYTES,
        max_bin_len=0,
        max_array_len=most_items,
        max_map_len=0,
        max_ext_len=0,
    )
    try:
        if len(data) > UNCHECKED_INPUT:
            check_complete(data, Limits(max_str_len=MAX_ID_BYTES), most_items)
        unpacker.feed(data)
        wire = unpacker.unpack()
        consumed = unpacker.tell()
    except DecodeError:
        raise
    except (ValueError, TypeError, OverflowError, msgpack.UnpackException) as error:
        raise DecodeError(f"malformed marker table: {type(error).__name__}") from None
    if consumed != len(data):
        raise DecodeError("malformed marker table: bytes after the table")
    return wire


def _read_table(wire: object) -> dict[str, Marker]:
    if type(wire) is not list or len(wire) != 2:
        raise DecodeError("a marker table is the array [version, markers]")
    version, entries = wire
    if type(version) is not int or version != MARKERS_VERSION:
        raise DecodeError(f"marker table of version {version!r:.20}, not {MARKERS_VERSION}")
    if type(entries) is not list:
        raise DecodeError("the markers of a marker table are an array")
    markers: dict[str, Marker] = {}
    previous = ""
    for entry in entries:
        if type(entry) is not list or len(entry) < 3:
            raise DecodeError("a marker is an array [replica, kind, ...]")
        replica = _read_id(entry[0], "replica id")
        if replica <= previous:
            raise DecodeError("markers not sorted by replica id, or a replica twice")
        previous = replica
        markers[replica] = _read_marker(entry)
    return markers


def _read_marker(entry: list[object]) -> Marker:
    kind = entry[1]
    if type(kind) is int and kind == _PERFORMED and len(entry) == 3:
        at = entry[2]
        if type(at) is not int or not 0 <= at <= STAMP_MAX:
            raise DecodeError("a performed marker's stamp is an int in 0 .. 2**64 - 1")
        return Performed(at)
    if type(kind) is int and kind == _INITIALIZED and len(entry) == 5:
        round_ = entry[2]
        if type(round_) is not int or not 0 <= round_ <= ROUND_MAX:
            raise DecodeError("an initialized marker's round is an int in 0 .. 2**64 - 1")
        return Initialized(_read_id(entry[3], "pruner id"), _read_seen(entry[4]), round_)
    raise DecodeError("a marker is [replica, 0, round, pruner, seen] or [replica, 1, at]")


def _read_seen(wire: object) -> frozenset[str]:
    if type(wire) is not list:
        raise DecodeError("a seen set is an array of node ids")
    seen: list[str] = []
    previous = ""
    for item in wire:
        node_id = _read_id(item, "node id")
        if node_id <= previous:
            raise DecodeError("a seen set not sorted, or a node id twice")
        seen.append(node_id)
        previous = node_id
    return frozenset(seen)


def _read_id(value: object, what: str) -> str:
    # msgpack already capped the length at MAX_ID_BYTES and decoded strict UTF-8.
    if type(value) is not str or not value:
        raise DecodeError(f"a {what} is a non-empty str")
    return value

"""The anti-entropy messages: the hash tree over keys, and the repair of one key.

:class:`Sync` finds which keys two members disagree on (see
:mod:`~crdtgossip.protocol.antientropy`); :class:`Diff` then repairs one such key by
its difference (see :mod:`~crdtgossip.protocol.repair`). Each message class here has
its wire form in :func:`to_wire` and its checked decoder in :data:`DECODERS`;
:mod:`~crdtgossip.protocol.messages` frames them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, TypeAlias

from crdtgossip.crdts._digest import FANOUT_BITS, LEAF_SHIFT
from crdtgossip.protocol.wire import (
    DIGEST_SIZE,
    MAX_KEY_BYTES,
    MAX_TREE_DEPTH,
    TREE_FANOUT,
    Kind,
    array,
    blob,
    boolean,
    digest,
    fail,
    key,
    text,
    tree_position,
    uint,
)

__all__ = [
    "DECODERS",
    "MAX_BITS_SHIFT",
    "MAX_RANGE_SHIFT",
    "RANGE_CHILDREN",
    "SUM_SIZE",
    "Diff",
    "RangeNode",
    "StateChunk",
    "Sync",
    "SyncMessage",
    "TreeNode",
    "to_wire",
]

SUM_SIZE: Final = 8
"""Bytes of one fingerprint in a :class:`RangeNode`: the low 64 bits of a sum of
128-bit hashes. Two differing ranges share one with probability 2**-64, and a repair
looks at a few hundred ranges at most."""

RANGE_CHILDREN: Final = 1 << FANOUT_BITS
"""Children of a range node (16, as in the key tree)."""

MAX_BITS_SHIFT: Final = LEAF_SHIFT + FANOUT_BITS
"""Widest range node that may be sent as a bitmap of its counters: 2**10 counters in
128 bytes, the size of 16 child sums, and final (nothing is left to compare below)."""

MAX_RANGE_SHIFT: Final = LEAF_SHIFT + FANOUT_BITS * 15
"""Shift of the widest range node: one node covering every 64-bit counter or position
(6 + 4 x 15 = 66 bits)."""


@dataclass(frozen=True, slots=True)
class TreeNode:
    """The sender's view of one node of the anti-entropy hash tree.

    The node at ``depth`` d and ``prefix`` p covers the keys whose 64-bit position
    starts with the d hexadecimal digits of p. Exactly one of ``children`` and
    ``entries`` is set.

    Attributes:
        depth: 0 (the root) to ``MAX_TREE_DEPTH``.
        prefix: below ``TREE_FANOUT ** depth``.
        children: the ``TREE_FANOUT`` child hashes, ``DIGEST_SIZE`` bytes each,
            all zero for an empty child.
        entries: ``(key, digest)`` of every key under the node, when there are few.
    """

    depth: int
    prefix: int
    children: bytes | None
    entries: tuple[tuple[str, bytes], ...] | None


@dataclass(frozen=True, slots=True)
class Sync:
    """One step of an anti-entropy exchange (the data half of a push-pull).

    Attributes:
        nodes: tree nodes whose hashes differ, for the receiver to compare.
        want_keys: keys whose state the sender asks for.
        want_prefixes: ``(depth, prefix)`` subtrees the sender has nothing of; the
            receiver sends the state of every key under them.
    """

    nodes: tuple[TreeNode, ...]
    want_keys: tuple[str, ...]
    want_prefixes: tuple[tuple[int, int], ...]


@dataclass(frozen=True, slots=True)
class RangeNode:
    """The sender's view of one node of a key's fingerprint tree.

    For a causal type the tree ranges over the counters of one replica's dots; for a
    G-Set or an LWW-Map over the 64-bit positions of its elements or keys. The node of
    ``shift`` s and ``index`` i covers the counters (positions) c with ``c >> s == i``;
    its 16 children have shift ``s - 4``. Exactly one of ``sums``, ``items`` and
    ``bits`` is set.

    Attributes:
        space: the replica whose dots the node ranges over; ``""`` for positions.
        shift: from ``crdts._digest.LEAF_SHIFT`` (6) to :data:`MAX_RANGE_SHIFT`, in
            steps of 4.
        index: below ``2 ** (64 - shift)``.
        sums: the 16 children's fingerprints, :data:`SUM_SIZE` bytes each.
        items: everything live under the node: dot counters, or 64-bit item hashes.
        bits: the live dot counters under the node as a bitmap, one bit per counter
            from ``index << shift`` (most significant bit first), for a shift up to
            :data:`MAX_BITS_SHIFT`.
        answer: ``items`` answer a listing: the receiver sends what it holds under the
            node that is not listed, and lists nothing back.
    """

    space: str
    shift: int
    index: int
    sums: bytes | None
    items: tuple[int, ...] | None
    bits: bytes | None = None
    answer: bool = False


@dataclass(frozen=True, slots=True)
class Diff:
    """One step of the repair of one key whose digests differ.

    Attributes:
        key: the data key.
        opening: the first message of a repair: the receiver answers with its own
            summary.
        context: ``crdtgossip.codec.encode`` of an empty state of the key's type that
            carries the sender's causal context (empty bytes for a type without one).
        patch: ``crdtgossip.codec.encode`` of a part of the sender's state for the
            receiver to merge, or empty bytes.
        nodes: fingerprint-tree nodes for the receiver to compare with its own.
    """

    key: str
    opening: bool
    context: bytes
    patch: bytes
    nodes: tuple[RangeNode, ...]


@dataclass(frozen=True, slots=True)
class StateChunk:
    """One piece of a key's encoded state too large for one reliable frame.

    A state that cannot be split into independent parts (see
    :mod:`~crdtgossip.protocol.transfer`) goes as ``count`` chunks of its encoding;
    the receiver keeps them, within strict bounds, until all have come, then decodes
    and merges the whole (:mod:`~crdtgossip.protocol.reassembly`).

    Attributes:
        key: the data key.
        transfer_id: chosen by the sender, the same in every chunk of one transfer.
        index: this chunk's place, from 0 to ``count - 1``.
        count: the number of chunks of the transfer (at least 1).
        total: the bytes of the whole encoding (what the chunks add up to).
        data: this chunk's bytes (at least one).
        written: the key's last-write stamp at the sender when the key expires (see
            :mod:`~crdtgossip.protocol.expiry`), else 0; sent as kind ``STATE_CHUNK_AT``
            when set.
    """

    key: str
    transfer_id: int
    index: int
    count: int
    total: int
    data: bytes
    written: int = 0


SyncMessage: TypeAlias = Sync | Diff | StateChunk


def to_wire(message: SyncMessage) -> list[object]:
    """The msgpack-ready array of one anti-entropy message."""
    match message:
        case Sync(nodes, want_keys, want_prefixes):
            wire_nodes = [
                [
                    n.depth,
                    n.prefix,
                    n.children,
                    None if n.entries is None else [[k, d] for k, d in n.entries],
                ]
                for n in nodes
            ]
            return [
                Kind.SYNC,
                wire_nodes,
                list(want_keys),
                [[d, p] for d, p in want_prefixes],
            ]
        case Diff(data_key, opening, context, patch, nodes):
            ranges = [
                [
                    n.space,
                    n.shift,
                    n.index,
                    n.sums,
                    None if n.items is None else list(n.items),
                    n.bits,
                    n.answer,
                ]
                for n in nodes
            ]
            return [Kind.DIFF, data_key, opening, context, patch, ranges]
        case StateChunk(data_key, transfer_id, index, count, total, data, 0):
            return [Kind.STATE_CHUNK, data_key, transfer_id, index, count, total, data]
        case StateChunk(data_key, transfer_id, index, count, total, data, written):
            fields = [data_key, transfer_id, index, count, total, data, written]
            return [Kind.STATE_CHUNK_AT, *fields]
    raise TypeError(f"not an anti-entropy message: {message!r}")  # pragma: no cover


def _tree_node(value: object) -> TreeNode:
    depth_value, prefix_value, children_value, entries_value = array(value, 4, "tree node")
    depth, prefix = tree_position(depth_value, prefix_value)
    if (children_value is None) == (entries_value is None):
        raise fail("a tree node has either children or entries")
    if children_value is not None:
        children = blob(children_value, "children")
        if len(children) != TREE_FANOUT * DIGEST_SIZE or depth >= MAX_TREE_DEPTH:
            raise fail("bad tree children")
        return TreeNode(depth, prefix, children, None)
    entries = []
    for item in array(entries_value, None, "entries"):
        entry_key, entry_digest = array(item, 2, "entry")
        entries.append((key(entry_key), digest(entry_digest)))
    return TreeNode(depth, prefix, None, tuple(entries))


def _decode_sync(fields: list[object]) -> Sync:
    nodes, want_keys, want_prefixes = fields
    return Sync(
        tuple(_tree_node(node) for node in array(nodes, None, "tree nodes")),
        tuple(key(wanted) for wanted in array(want_keys, None, "wanted keys")),
        tuple(
            tree_position(*array(item, 2, "wanted prefix"))
            for item in array(want_prefixes, None, "wanted prefixes")
        ),
    )


def _range_node(value: object) -> RangeNode:
    space, shift_value, index_value, sums_value, items_value, bits_value, answer = array(
        value, 7, "range node"
    )
    shift = uint(shift_value, "range shift")
    if not LEAF_SHIFT <= shift <= MAX_RANGE_SHIFT or (shift - LEAF_SHIFT) % FANOUT_BITS:
        raise fail("range shift out of the tree")
    index = uint(index_value, "range index")
    if index >> max(64 - shift, 0):
        raise fail("range index out of range for its shift")
    if [sums_value, items_value, bits_value].count(None) != 2:
        raise fail("a range node has one of sums, items and bits")
    sums = None
    items = None
    bits = None
    if sums_value is not None:
        sums = blob(sums_value, "range sums")
        if len(sums) != RANGE_CHILDREN * SUM_SIZE or shift == LEAF_SHIFT:
            raise fail("bad range sums")
    elif bits_value is not None:
        bits = blob(bits_value, "range bits")
        if shift > MAX_BITS_SHIFT or len(bits) != (1 << shift) // 8:
            raise fail("bad range bits")
    else:
        items = tuple(uint(item, "range item") for item in array(items_value, None, "items"))
    return RangeNode(
        text(space, MAX_KEY_BYTES, "range space", empty=True),
        shift,
        index,
        sums,
        items,
        bits,
        boolean(answer, "answer"),
    )


def _decode_diff(fields: list[object]) -> Diff:
    data_key, opening, context, patch, nodes = fields
    return Diff(
        key(data_key),
        boolean(opening, "opening"),
        blob(context, "context"),
        blob(patch, "patch"),
        tuple(_range_node(node) for node in array(nodes, None, "range nodes")),
    )


def _decode_chunk(fields: list[object]) -> StateChunk:
    data_key, transfer_value, index_value, count_value, total_value, data_value = fields
    index = uint(index_value, "chunk index")
    count = uint(count_value, "chunk count")
    total = uint(total_value, "transfer size")
    data = blob(data_value, "chunk data")
    # Cheap consistency checks; the bounds on memory are the reassembly's.
    if not index < count <= total or not 0 < len(data) <= total:
        raise fail("chunk index, count, size and data disagree")
    return StateChunk(key(data_key), uint(transfer_value, "transfer id"), index, count, total, data)


def _decode_chunk_at(fields: list[object]) -> StateChunk:
    chunk = _decode_chunk(fields[:6])
    return dataclasses.replace(chunk, written=uint(fields[6], "last-write stamp"))


#: Per kind: the number of fields after the kind, and how to build the message from
#: them (already of that count).
DECODERS: dict[Kind, tuple[int, Callable[[list[object]], SyncMessage]]] = {
    Kind.SYNC: (3, _decode_sync),
    Kind.DIFF: (5, _decode_diff),
    Kind.STATE_CHUNK: (6, _decode_chunk),
    Kind.STATE_CHUNK_AT: (7, _decode_chunk_at),
}

"""Repair of one key by its difference: what two replicas exchange once their digests differ.

The key tree (:mod:`~crdtgossip.protocol.antientropy`) finds the keys two members
disagree on; this module repairs each one with :class:`~crdtgossip.protocol.messages.Diff`
messages whose size follows the difference, not the state. It is pure: :func:`opening`
and :func:`respond` take a state and a message and return what to send; the engine
owns the store and the sockets. Each message stands alone (no session is kept), so a
lost or repeated one costs a later exchange, never correctness.

Causal types (ORSet, EWFlag, MVRegister, ORMap, nested ones included) use a join
decomposition (Enes et al., "Efficient Synchronization of State-based CRDTs", 2019):

1. The opener sends its causal context. The other side answers with its own context,
   a *patch* and, per replica both know, the root of a fingerprint tree over that
   replica's dot counters. The patch is the part of its state the opener's context has
   not seen: its live dots the opener never saw (with their elements, values or map
   entries), under a context of every dot it has seen and the opener has not (so the
   opener also learns the removes of dots it never saw). Where that context gap is
   larger than the state itself (a long partition with much churn), the whole state
   goes instead.
2. Each side merges the patch it receives (a plain join), and answers with its own
   patch against the context it was sent.
3. Removes are what is left: a dot both have seen, live on one side only. Each
   fingerprint is the sum of the hashes of the live dots under a counter range; the
   sender counts all its live dots (the patch it sent gave the receiver every other
   one), the receiver only the ones the sender has seen. Equal sums mean no
   difference below; a differing range is described one level deeper (16 child sums)
   until few dots are left, which are then listed (as counters, or as a bitmap of up
   to 1,024 counters). Given a list, the receiver drops its own dots the sender has
   seen and does not list (the sender removed them), and sends back, in a patch with
   no elements, the listed dots it has seen and no longer holds (it removed them).

Every step is a join with a part of the other state, so whatever is merged is correct
even when messages cross changes; the exchange ends with both sides equal to their
join. A one-element difference inside a 10^6-element ORSet costs about 1 KB.

G-Sets and LWW-Maps use the same tree over the 64-bit positions of their elements or
keys; listed items are 64-bit hashes, and what the other side lacks is sent. Counters
and registers are small: the opener sends its state, the other side merges it and
answers with only what it holds beyond it (a counter's slots that are ahead). A type
of the user's with none of this is repaired the same way, whole state first.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any, Final, cast

from crdtgossip.codec import decode, encode
from crdtgossip.crdts import CRDT
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.crdts._digest import FANOUT_BITS, LEAF_SHIFT, DotHashes, dot_hash
from crdtgossip.errors import MergeError
from crdtgossip.protocol.messages import (
    MAX_BITS_SHIFT,
    MAX_KEY_BYTES,
    MAX_RANGE_SHIFT,
    RANGE_CHILDREN,
    SUM_SIZE,
    Diff,
    RangeNode,
)

__all__ = [
    "GAP_LIMIT",
    "LEAF_DOTS",
    "LEAF_ITEMS",
    "MAX_DIFF_NODES",
    "Outcome",
    "opening",
    "respond",
    "root_shift",
]

LEAF_DOTS: Final = 24
"""A range holding at most this many live dots is listed (about 5 bytes a counter)
rather than split into 16 child sums (128 bytes): below it, listing costs less. A
range of at most 1,024 counters holding more goes as a bitmap (128 bytes at most)."""

LEAF_ITEMS: Final = 16
"""The same for the items of a G-Set or LWW-Map (about 9 bytes a hash)."""

GAP_LIMIT: Final = 4096
"""A context gap (dots seen here and not there) of up to this many dots, or up to the
number of live dots if more, goes as explicit dots in the patch's context; a larger
one sends the whole state instead, which is then the smaller of the two."""

MAX_DIFF_NODES: Final = 1024
"""Most range nodes handled from one message and described in one reply: bounds the
work one message can ask for (each costs at most a pass over one replica's buckets);
what is left over is found by the next exchange."""

_SUM_MASK: Final = (1 << (8 * SUM_SIZE)) - 1
_COUNTER_BYTES: Final = 5  # a listed counter in msgpack: up to a uint32 and its tag
_CHILD_MASK: Final = RANGE_CHILDREN - 1


@dataclass(slots=True)
class Outcome:
    """What :func:`respond` did and what to send back.

    Attributes:
        reply: the message to answer with, or None.
        changes: what was merged into the state, in order, each with its encoding:
            merging them into the state as it was gives the state as it is.
    """

    reply: Diff | None = None
    changes: list[tuple[CRDT, bytes]] = field(default_factory=list)


def root_shift(max_counter: int) -> int:
    """The shift of the smallest range node from 0 that covers ``max_counter``.

    Args:
        max_counter: the highest counter (or position) to cover.

    Returns:
        ``LEAF_SHIFT + 4k`` for the least k with ``max_counter >> shift == 0``.
    """
    shift = LEAF_SHIFT
    while max_counter >> shift and shift < MAX_RANGE_SHIFT:
        shift += FANOUT_BITS
    return shift


def _family(state: CRDT) -> str:
    if isinstance(state, CausalCRDT) and type(state)._subset is not CausalCRDT._subset:
        return "causal"
    if callable(getattr(state, "_positions", None)) and callable(
        getattr(state, "_subset_items", None)
    ):
        return "items"
    return "small"


def _decode_like(state: CRDT, payload: bytes) -> Any:
    """Decode a payload that must be a state of the same type as ``state``.

    Raises:
        DecodeError: the payload is malformed.
        MergeError: it is a state of another type.
    """
    value = decode(payload)
    same_kind = getattr(state, "_same_kind", None)
    if type(value) is not type(state) or (same_kind is not None and not same_kind(value)):
        raise MergeError(f"a {type(value).__name__} cannot repair a {type(state).__name__}")
    return value


def opening(key: str, state: CRDT) -> Diff:
    """The first message of the repair of ``key``.

    Args:
        key: the data key.
        state: the local state.

    Returns:
        A Diff with the local context (causal types), the root of the item tree
        (sets and maps of items) or the whole state (the small ones).
    """
    family = _family(state)
    if family == "causal":
        causal = cast(CausalCRDT, state)
        context = encode(cast(CRDT, causal._empty_bound(causal._context)))
        return Diff(key, True, context, b"", ())
    if family == "items":
        root = _Items(state).describe(MAX_RANGE_SHIFT, 0)
        return Diff(key, True, b"", b"", (root,))
    return Diff(key, True, b"", encode(state), ())


def respond(key: str, state: CRDT, message: Diff) -> Outcome:
    """Handle one Diff of ``key`` against the local state (which it may change).

    Args:
        key: the data key (``message.key``).
        state: the local state; merged into in place.
        message: what the other side sent.

    Returns:
        What changed and what to send back.

    Raises:
        DecodeError: a context or patch in the message is malformed.
        MergeError: it holds a state of another type than the local one.
    """
    family = _family(state)
    if family == "causal":
        return _CausalStep(key, cast(CausalCRDT, state), message).run()
    if family == "items":
        return _respond_items(key, state, message)
    return _respond_small(key, state, message)


# --- small states: counters, registers, a user's own types -----------------------------


def _respond_small(key: str, state: CRDT, message: Diff) -> Outcome:
    if not message.patch:
        return Outcome()
    theirs = _decode_like(state, message.patch)
    state.merge(theirs)
    changes = [(cast(CRDT, theirs), message.patch)]
    if not message.opening:
        return Outcome(changes=changes)
    delta_over: Callable[[Any], CRDT | None] | None = getattr(state, "_delta_over", None)
    ahead = delta_over(theirs) if delta_over is not None else (state if state != theirs else None)
    reply = None if ahead is None else Diff(key, False, b"", encode(ahead), ())
    return Outcome(reply, changes)


# --- causal types ------------------------------------------------------------------------


def _dots_unseen(state: CausalCRDT, theirs: CausalContext) -> dict[str, list[int]]:
    """The live dots of ``state`` that ``theirs`` has not seen, by replica.

    Costs O(gap) per replica: only the counters above the other's version vector are
    looked at (or the live ones, when there are fewer of those).
    """
    mine = state._context
    unseen: dict[str, list[int]] = {}
    for replica in mine.vector.keys() | mine.cloud.keys():
        base = theirs.vector.get(replica, 0)
        top = mine.max_counter(replica)
        if top <= base:
            continue
        live = state._live_of(replica)
        if not live:
            continue
        cloud = theirs.cloud.get(replica, ())
        if top - base <= len(live):
            found = [c for c in range(base + 1, top + 1) if c in live and c not in cloud]
        else:
            found = sorted(c for c in live if c > base and c not in cloud)
        if found:
            unseen[replica] = found
    return unseen


def _context_gap(mine: CausalContext, theirs: CausalContext, limit: int) -> list[Dot] | None:
    """The dots ``mine`` has seen and ``theirs`` has not; None if more than ``limit``."""
    gap: list[Dot] = []
    for replica in sorted(mine.vector.keys() | mine.cloud.keys()):
        base = theirs.vector.get(replica, 0)
        their_cloud = theirs.cloud.get(replica, ())
        my_base = mine.vector.get(replica, 0)
        if my_base > base:
            if my_base - base - len(their_cloud) > limit - len(gap):
                return None
            gap.extend((replica, c) for c in range(base + 1, my_base + 1) if c not in their_cloud)
        gap.extend(
            (replica, c) for c in mine.cloud.get(replica, ()) if c > base and c not in their_cloud
        )
        if len(gap) > limit:
            return None
    return gap


def _live_counters(
    table: DotHashes, live: Collection[int], replica: str, shift: int, index: int
) -> list[int]:
    """The live counters of ``replica`` under a range node, ascending."""
    found: list[int] = []
    for bucket in table.buckets_in(replica, shift, index):
        first = bucket << LEAF_SHIFT
        found.extend(c for c in range(first, first + (1 << LEAF_SHIFT)) if c in live)
    return found


@dataclass(slots=True)
class _CausalStep:
    """One :func:`respond` of a causal type (a class only to share its working data)."""

    key: str
    state: CausalCRDT
    message: Diff
    changes: list[tuple[CRDT, bytes]] = field(default_factory=list)
    nodes: list[RangeNode] = field(default_factory=list)
    removed_there: list[Dot] = field(default_factory=list)

    def run(self) -> Outcome:
        state, message = self.state, self.message
        theirs = cast(CausalCRDT, _decode_like(cast(CRDT, state), message.context))._context
        if message.patch:
            patch = _decode_like(cast(CRDT, state), message.patch)
            state.merge(patch)
            self.changes.append((patch, message.patch))
        unseen = _dots_unseen(state, theirs)
        if message.opening:
            for replica in sorted(state._context.vector.keys() | state._context.cloud.keys()):
                if theirs.knows(replica) and _fits(replica):
                    shift = root_shift(state._context.max_counter(replica))
                    self._describe(replica, shift, 0)
        seen: set[tuple[str, int, int]] = set()
        for node in message.nodes[:MAX_DIFF_NODES]:
            where = (node.space, node.shift, node.index)
            if where in seen or not node.space:
                continue
            seen.add(where)
            if node.sums is not None:
                self._compare(node, node.sums, unseen.get(node.space, []))
            elif node.items is not None or node.bits is not None:
                self._resolve(node, _listed(node), theirs)
        patch = self._patch(theirs, unseen)
        if not (message.opening or patch or self.nodes):
            return Outcome(changes=self.changes)
        context_bytes = encode(cast(CRDT, state._empty_bound(state._context)))
        reply = Diff(self.key, False, context_bytes, patch, tuple(self.nodes))
        return Outcome(reply, self.changes)

    def _patch(self, theirs: CausalContext, unseen: dict[str, list[int]]) -> bytes:
        """Our part the other side lacks: live dots it never saw, under the context it
        lacks and the removes it missed (or the whole state, if that is smaller)."""
        state = self.state
        context = state._context
        live = sum(len(state._live_of(r)) for r in context.vector.keys() | context.cloud.keys())
        gap = _context_gap(context, theirs, max(GAP_LIMIT, live))
        if gap is None:
            return encode(cast(CRDT, state))
        if not (gap or self.removed_there):
            return b""
        dots = [(replica, c) for replica, counters in unseen.items() for c in counters]
        lacking = CausalContext.from_dots([*gap, *self.removed_there])
        return encode(cast(CRDT, state._subset(dots, lacking)))

    def _describe(self, replica: str, shift: int, index: int) -> None:
        """Add the local description of a node: its live counters, or 16 child sums."""
        if len(self.nodes) >= MAX_DIFF_NODES:
            return
        table = self.state._dot_hashes()
        count = table.count(replica, shift, index)
        bitmap_bytes = (1 << shift) // 8
        if count <= LEAF_DOTS or shift <= MAX_BITS_SHIFT:
            live = self.state._live_of(replica)
            counters = _live_counters(table, live, replica, shift, index)
            if shift > MAX_BITS_SHIFT or _COUNTER_BYTES * count <= bitmap_bytes:
                self.nodes.append(RangeNode(replica, shift, index, None, tuple(counters)))
            else:
                first, bits = index << shift, 0
                for counter in counters:
                    bits |= 1 << ((1 << shift) - 1 - (counter - first))
                packed = bits.to_bytes(bitmap_bytes, "big")
                self.nodes.append(RangeNode(replica, shift, index, None, None, packed))
            return
        sums = b"".join(
            (total & _SUM_MASK).to_bytes(SUM_SIZE, "big")
            for _, total in table.children(replica, shift, index)
        )
        self.nodes.append(RangeNode(replica, shift, index, sums, None))

    def _compare(self, node: RangeNode, remote: bytes, unseen: list[int]) -> None:
        """Compare the sender's child sums with ours over the dots the sender has seen."""
        replica, shift, index = node.space, node.shift, node.index
        if index << shift > self.state._context.max_counter(replica):
            children = [[0, 0] for _ in range(RANGE_CHILDREN)]  # nothing of ours there
        else:
            children = self.state._dot_hashes().children(replica, shift, index)
        child_shift = shift - FANOUT_BITS
        for counter in unseen:
            if counter >> shift == index:
                children[(counter >> child_shift) & _CHILD_MASK][1] -= dot_hash(replica, counter)
        for digit, (_, total) in enumerate(children):
            theirs = int.from_bytes(remote[digit * SUM_SIZE : (digit + 1) * SUM_SIZE], "big")
            if theirs != total & _SUM_MASK:
                self._describe(replica, child_shift, index * RANGE_CHILDREN + digit)

    def _resolve(self, node: RangeNode, listed: tuple[int, ...], theirs: CausalContext) -> None:
        """Settle a listed range: drop what the sender removed, report what we did."""
        state, replica = self.state, node.space
        table = state._dot_hashes()
        live = state._live_of(replica)
        mine = _live_counters(table, live, replica, node.shift, node.index)
        listed_set = set(listed)
        gone = [(replica, c) for c in mine if c not in listed_set and theirs.covers(replica, c)]
        context = state._context
        for counter in listed_set:
            inside = counter >> node.shift == node.index
            if inside and counter not in live and context.covers(replica, counter):
                self.removed_there.append((replica, counter))
        if gone:
            removal = state._empty_bound(CausalContext.from_dots(gone))
            state.merge(removal)
            self.changes.append((cast(CRDT, removal), encode(cast(CRDT, removal))))


def _listed(node: RangeNode) -> tuple[int, ...]:
    """The counters a node lists, as items or as a bitmap."""
    if node.items is not None:
        return node.items
    assert node.bits is not None
    span, first = 8 * len(node.bits), node.index << node.shift
    bits = int.from_bytes(node.bits, "big")
    return tuple(first + i for i, bit in enumerate(f"{bits:0{span}b}") if bit == "1")


def _fits(replica: str) -> bool:
    """Whether a replica id can name a range node on the wire."""
    return len(replica.encode("utf-8", "surrogatepass")) <= MAX_KEY_BYTES


# --- sets and maps of items: G-Set, LWW-Map ---------------------------------------------


class _Items:
    """The items of a G-Set or LWW-Map sorted by position, with range sums."""

    def __init__(self, state: CRDT) -> None:
        positions: list[tuple[int, int, Any]] = getattr(state, "_positions")()  # noqa: B009
        positions.sort(key=lambda item: (item[0], item[1]))
        self.state = state
        self.positions = [item[0] for item in positions]
        self.hashes = [item[1] for item in positions]
        self.handles = [item[2] for item in positions]

    def span(self, shift: int, index: int) -> range:
        low = bisect_left(self.positions, index << shift)
        high = bisect_left(self.positions, (index + 1) << shift)
        return range(low, high)

    def ids(self, shift: int, index: int) -> dict[int, Any]:
        """Item id (low 64 bits of its hash) -> handle, under a node."""
        return {self.hashes[i] & _SUM_MASK: self.handles[i] for i in self.span(shift, index)}

    def children(self, shift: int, index: int) -> list[int]:
        sums = [0] * RANGE_CHILDREN
        child_shift = shift - FANOUT_BITS
        for i in self.span(shift, index):
            sums[(self.positions[i] >> child_shift) & _CHILD_MASK] += self.hashes[i]
        return [total & _SUM_MASK for total in sums]

    def describe(self, shift: int, index: int, *, answer: bool = False) -> RangeNode:
        span = self.span(shift, index)
        if answer or shift == LEAF_SHIFT or len(span) <= LEAF_ITEMS:
            items = tuple(sorted(self.hashes[i] & _SUM_MASK for i in span))
            return RangeNode("", shift, index, None, items, answer=answer)
        sums = b"".join(s.to_bytes(SUM_SIZE, "big") for s in self.children(shift, index))
        return RangeNode("", shift, index, sums, None)


def _respond_items(key: str, state: CRDT, message: Diff) -> Outcome:
    changes: list[tuple[CRDT, bytes]] = []
    if message.patch:
        patch = _decode_like(state, message.patch)
        state.merge(patch)
        changes.append((patch, message.patch))
    items = _Items(state)
    nodes: list[RangeNode] = []
    send: list[Any] = []
    seen: set[tuple[int, int]] = set()
    for node in message.nodes[:MAX_DIFF_NODES]:
        where = (node.shift, node.index)
        if node.space or where in seen:
            continue
        seen.add(where)
        if node.sums is not None:
            child_shift = node.shift - FANOUT_BITS
            mine = items.children(node.shift, node.index)
            for digit, total in enumerate(mine):
                theirs = int.from_bytes(node.sums[digit * SUM_SIZE : (digit + 1) * SUM_SIZE], "big")
                if theirs == total or len(nodes) >= MAX_DIFF_NODES:
                    continue
                child = (child_shift, node.index * RANGE_CHILDREN + digit)
                if theirs == 0:
                    send.extend(items.ids(*child).values())  # they hold nothing there
                else:
                    nodes.append(items.describe(*child, answer=total == 0))
        elif node.items is not None:
            mine_ids = items.ids(node.shift, node.index)
            listed = set(node.items)
            send.extend(handle for item, handle in mine_ids.items() if item not in listed)
            if not node.answer and not listed <= mine_ids.keys() and len(nodes) < MAX_DIFF_NODES:
                nodes.append(items.describe(node.shift, node.index, answer=True))
    subset: Callable[[list[Any]], CRDT] = getattr(state, "_subset_items")  # noqa: B009
    patch = encode(subset(send)) if send else b""
    if not (patch or nodes):
        return Outcome(changes=changes)
    return Outcome(Diff(key, False, b"", patch, tuple(nodes)), changes)

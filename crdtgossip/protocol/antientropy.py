"""Anti-entropy: find what two replicas disagree on, at a cost that follows the difference.

Gossip can miss a node (loss, a partition, a node that was down), so every
``push_pull_interval`` a node also compares its whole state with one random member,
the backstop of Demers et al. (1987). Comparing every key's digest would cost O(keys)
bytes per exchange (Akka's full-state gossip sends 20 bytes per key per round); a hash
tree (Merkle tree, as in Dynamo and Cassandra) makes it O(differences x log keys):

* every key has a *position*, the first 64 bits of BLAKE2b of its name, and a *digest*
  of its state (:func:`key_digest`): the one each built-in type keeps up to date as it
  changes (a running sum of the hashes of its live dots, elements or entries, with its
  causal context), so an anti-entropy round never re-encodes a key; for a type of the
  user's, BLAKE2b-128 of its canonical encoding;
* the tree node at depth d and prefix p covers the keys whose position starts with the
  d hexadecimal digits of p; its hash is the XOR of its keys' entry hashes, so it is
  zero when the node is empty and it is kept up to date key by key;
* a :class:`~crdtgossip.protocol.messages.Sync` message describes some tree nodes by
  their 16 child hashes, or by their ``(key, digest)`` entries when they hold few
  keys. The receiver compares them with its own tree and answers with its description
  of the children that differ, one level deeper each time, until both sides are down
  to the keys that differ; then each sends the states the other lacks, and the side
  that compared the keys opens the repair of each key both hold differently, which
  sends only the difference (:mod:`~crdtgossip.protocol.repair`). Identical subtrees
  cost one 16-byte hash and are never opened.

This module is pure: the engine owns the store, calls :func:`respond` and sends what
the resulting :class:`SyncPlan` says.
"""

from __future__ import annotations

import hashlib
import math
from bisect import bisect_left, insort
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.protocol.compaction import shrink
from crdtgossip.protocol.messages import (
    DIGEST_SIZE,
    MAX_TREE_DEPTH,
    TREE_FANOUT,
    Sync,
    TreeNode,
)

__all__ = [
    "LEAF_KEYS",
    "MAX_SYNC_NODES",
    "PUSH_PULL_SCALE_THRESHOLD",
    "HashTree",
    "SyncPlan",
    "describe",
    "key_digest",
    "key_position",
    "push_pull_interval",
    "respond",
    "start",
    "state_digest",
]

LEAF_KEYS: Final = 8
"""A tree node holding at most this many keys is described by its entries (about 40
bytes each) rather than by its 16 child hashes (256 bytes): below it, listing costs
less than descending."""

MAX_SYNC_NODES: Final = 1024
"""Most tree nodes described in one Sync reply: bounds the work a peer can ask for in
one message; whatever is left over is found by the next exchange."""

PUSH_PULL_SCALE_THRESHOLD: Final = 32
"""Above this many members the push-pull interval grows with log2 N, so the cluster's
total anti-entropy traffic stays bounded (memberlist ``pushPullScaleThreshold``)."""

_BULK_REFRESH: Final = 256
"""Above this many changed keys a refresh re-sorts and drops every cached hash at once
instead of updating key by key."""

_POSITION_BITS: Final = 64
_DIGIT_BITS: Final = 4  # log2(TREE_FANOUT)
_EMPTY: Final = bytes(DIGEST_SIZE)


def key_position(key: str) -> int:
    """The 64-bit position of a key in the hash tree: where it sits, not what it holds.

    Args:
        key: the data key.

    Returns:
        The first 8 bytes of BLAKE2b of its UTF-8 name, as an int.
    """
    name = key.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(name, digest_size=8).digest(), "big")


def state_digest(encoded_state: bytes) -> bytes:
    """The digest of a key's state: equal states have equal canonical bytes.

    Args:
        encoded_state: ``crdtgossip.codec.encode`` of the state.

    Returns:
        :data:`DIGEST_SIZE` bytes of BLAKE2b.
    """
    return hashlib.blake2b(encoded_state, digest_size=DIGEST_SIZE).digest()


def key_digest(state: CRDT) -> bytes:
    """The digest of a key's state: the type's own, else a hash of its encoding.

    Args:
        state: the state.

    Returns:
        :data:`DIGEST_SIZE` bytes; equal states give equal digests.

    Raises:
        EncodeError: a state without a digest of its own that cannot be encoded.
    """
    own = getattr(state, "_digest", None)
    if callable(own):
        digest: bytes = own()
        return digest
    return state_digest(encode(state))


def _entry_hash(key: str, digest: bytes) -> int:
    # The digest has a fixed length, so digest + name is unambiguous.
    data = digest + key.encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(data, digest_size=DIGEST_SIZE).digest(), "big")


def push_pull_interval(interval: float, members: int) -> float:
    """The push-pull interval scaled for large clusters, as memberlist scales it.

    Args:
        interval: ``GossipConfig.push_pull_interval`` in seconds.
        members: the number of members.

    Returns:
        ``interval`` up to 32 members, then ``interval * (ceil(log2 N - log2 32) + 1)``.
    """
    if members <= PUSH_PULL_SCALE_THRESHOLD:
        return interval
    multiplier = math.ceil(math.log2(members) - math.log2(PUSH_PULL_SCALE_THRESHOLD)) + 1
    return interval * multiplier


class HashTree:
    """The hash tree over the digests of every key's state.

    Digests are computed lazily: :meth:`touch` marks a key changed and the next read
    recomputes the digests of the changed keys, so a burst of updates to one key costs
    one encoding per anti-entropy exchange, not one per update.

    Args:
        digest_of: returns the current digest of a key's state (the engine calls
            :func:`key_digest`).
    """

    def __init__(self, digest_of: Callable[[str], bytes]) -> None:
        self._digest_of = digest_of
        self._entries: dict[str, tuple[int, int, bytes]] = {}  # key -> position, hash, digest
        self._sorted: list[tuple[int, str]] = []  # (position, key), ascending
        self._hashes: dict[tuple[int, int], int] = {}  # cached node hashes
        self._dirty: dict[str, None] = {}  # keys whose digest is stale, in order

    def __len__(self) -> int:
        self.refresh()
        return len(self._entries)

    def touch(self, key: str) -> None:
        """Mark a key's state as changed (or new).

        Args:
            key: the data key.
        """
        self._dirty[key] = None

    def refresh(self) -> None:
        """Recompute the digests of every key touched since the last refresh."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, {}
        bulk = len(dirty) > _BULK_REFRESH
        new_positions: list[tuple[int, str]] = []
        for key in dirty:
            digest = self._digest_of(key)
            old = self._entries.get(key)
            if old is not None and old[2] == digest:
                continue
            position = key_position(key) if old is None else old[0]
            self._entries[key] = (position, _entry_hash(key, digest), digest)
            if old is None:
                if bulk:
                    new_positions.append((position, key))
                else:
                    insort(self._sorted, (position, key))
            if not bulk:
                for depth in range(MAX_TREE_DEPTH + 1):
                    self._hashes.pop((depth, position >> _shift(depth)), None)
        if bulk:
            # Many changes at once (a full state arrived): sort once, drop the cache.
            self._sorted.extend(new_positions)
            self._sorted.sort()
            self._hashes.clear()

    def compact(self) -> None:
        """Give back the memory of removed keys (see :mod:`~.compaction`)."""
        shrink(self._entries)
        shrink(self._hashes)
        shrink(self._dirty)

    def remove(self, key: str) -> None:
        """Take a key out of the tree (its state is gone): its entry, its place in the
        order and the cached hashes above it; a key not in the tree is ignored.

        Args:
            key: the data key.
        """
        self._dirty.pop(key, None)
        entry = self._entries.pop(key, None)
        if entry is None:
            return
        position = entry[0]
        index = bisect_left(self._sorted, (position, key))
        if index < len(self._sorted) and self._sorted[index] == (position, key):
            del self._sorted[index]
        for depth in range(MAX_TREE_DEPTH + 1):
            self._hashes.pop((depth, position >> _shift(depth)), None)

    def digest(self, key: str) -> bytes | None:
        """The current digest of ``key``, or ``None`` when it has no state here."""
        self.refresh()
        entry = self._entries.get(key)
        return None if entry is None else entry[2]

    def _range(self, depth: int, prefix: int) -> tuple[int, int]:
        shift = _POSITION_BITS - _DIGIT_BITS * depth
        low = bisect_left(self._sorted, (prefix << shift, ""))
        high = bisect_left(self._sorted, ((prefix + 1) << shift, ""))
        return low, high

    def count(self, depth: int, prefix: int) -> int:
        """How many keys the node at ``(depth, prefix)`` covers."""
        self.refresh()
        low, high = self._range(depth, prefix)
        return high - low

    def node_hash(self, depth: int, prefix: int) -> bytes:
        """The hash of the node at ``(depth, prefix)``; all zero when it is empty."""
        self.refresh()
        return self._node_hash(depth, prefix).to_bytes(DIGEST_SIZE, "big")

    def _node_hash(self, depth: int, prefix: int) -> int:
        cached = self._hashes.get((depth, prefix))
        if cached is not None:
            return cached
        low, high = self._range(depth, prefix)
        value = 0
        for _, key in self._sorted[low:high]:
            value ^= self._entries[key][1]
        self._hashes[(depth, prefix)] = value
        return value

    def children(self, depth: int, prefix: int) -> bytes:
        """The :data:`TREE_FANOUT` child hashes of a node, concatenated.

        Args:
            depth: below :data:`MAX_TREE_DEPTH`.
            prefix: the node's prefix.

        Returns:
            ``TREE_FANOUT * DIGEST_SIZE`` bytes; an empty child is all zero.
        """
        self.refresh()
        first = prefix * TREE_FANOUT
        return b"".join(
            self._node_hash(depth + 1, first + digit).to_bytes(DIGEST_SIZE, "big")
            for digit in range(TREE_FANOUT)
        )

    def entries(self, depth: int, prefix: int) -> tuple[tuple[str, bytes], ...]:
        """``(key, digest)`` of every key under a node, in position order."""
        self.refresh()
        low, high = self._range(depth, prefix)
        return tuple((key, self._entries[key][2]) for _, key in self._sorted[low:high])

    def keys_under(self, depth: int, prefix: int) -> list[str]:
        """Every key under a node, in position order."""
        self.refresh()
        low, high = self._range(depth, prefix)
        return [key for _, key in self._sorted[low:high]]


@dataclass(slots=True)
class SyncPlan:
    """What to do after comparing a :class:`Sync` with the local tree.

    Attributes:
        nodes: local descriptions of the subtrees that differ, to send back.
        want_keys: keys whose remote state is needed (the local side has none).
        want_prefixes: subtrees the local side has nothing of.
        send_keys: keys whose local state the other side needs, in order, no repeats.
        repair_keys: keys both sides hold, differently: to repair by difference.
    """

    nodes: list[TreeNode] = field(default_factory=list)
    want_keys: list[str] = field(default_factory=list)
    want_prefixes: list[tuple[int, int]] = field(default_factory=list)
    send_keys: list[str] = field(default_factory=list)
    repair_keys: list[str] = field(default_factory=list)

    def reply(self) -> Sync | None:
        """The Sync message to send back, or ``None`` if there is nothing to ask."""
        if not (self.nodes or self.want_keys or self.want_prefixes):
            return None
        return Sync(tuple(self.nodes), tuple(self.want_keys), tuple(self.want_prefixes))


def describe(tree: HashTree, depth: int, prefix: int) -> TreeNode:
    """The local description of one tree node: entries if few keys, else child hashes.

    Args:
        tree: the local tree.
        depth: the node's depth.
        prefix: the node's prefix.

    Returns:
        The :class:`TreeNode` to send.
    """
    if depth >= MAX_TREE_DEPTH or tree.count(depth, prefix) <= LEAF_KEYS:
        return TreeNode(depth, prefix, None, tree.entries(depth, prefix))
    return TreeNode(depth, prefix, tree.children(depth, prefix), None)


def start(tree: HashTree) -> Sync:
    """The first message of an exchange: the description of the root.

    Args:
        tree: the local tree.

    Returns:
        A Sync with the root node.
    """
    return Sync((describe(tree, 0, 0),), (), ())


def respond(tree: HashTree, message: Sync) -> SyncPlan:
    """Compare a received Sync with the local tree.

    Args:
        tree: the local tree.
        message: what the other side sent.

    Returns:
        The plan: subtrees to describe back, states to ask for, states to send, keys
        to repair.
    """
    plan = SyncPlan()
    to_send: dict[str, None] = {}
    for node in message.nodes:
        if node.children is not None:
            _compare_children(tree, node, node.children, plan, to_send)
        elif node.entries is not None:
            _compare_entries(tree, node, node.entries, plan, to_send)
    for key in message.want_keys:
        if tree.digest(key) is not None:
            to_send[key] = None
    for depth, prefix in message.want_prefixes:
        to_send.update(dict.fromkeys(tree.keys_under(depth, prefix)))
    plan.send_keys = list(to_send)
    return plan


def _compare_children(
    tree: HashTree,
    node: TreeNode,
    remote_children: bytes,
    plan: SyncPlan,
    to_send: dict[str, None],
) -> None:
    depth, prefix = node.depth, node.prefix
    local_children = tree.children(depth, prefix)
    for digit in range(TREE_FANOUT):
        span = slice(digit * DIGEST_SIZE, (digit + 1) * DIGEST_SIZE)
        remote_hash, local_hash = remote_children[span], local_children[span]
        if remote_hash == local_hash:
            continue
        child = (depth + 1, prefix * TREE_FANOUT + digit)
        if remote_hash == _EMPTY:
            to_send.update(dict.fromkeys(tree.keys_under(*child)))
        elif local_hash == _EMPTY:
            plan.want_prefixes.append(child)
        elif len(plan.nodes) < MAX_SYNC_NODES:
            plan.nodes.append(describe(tree, *child))


def _compare_entries(
    tree: HashTree,
    node: TreeNode,
    remote_entries: tuple[tuple[str, bytes], ...],
    plan: SyncPlan,
    to_send: dict[str, None],
) -> None:
    depth, prefix = node.depth, node.prefix
    local = dict(tree.entries(depth, prefix))
    remote = dict(remote_entries)
    for key, digest in remote.items():
        if local.get(key) != digest and key_position(key) >> _shift(depth) == prefix:
            (plan.repair_keys if key in local else plan.want_keys).append(key)
    for key in local:
        if key not in remote:
            to_send[key] = None


def _shift(depth: int) -> int:
    return _POSITION_BITS - _DIGIT_BITS * depth

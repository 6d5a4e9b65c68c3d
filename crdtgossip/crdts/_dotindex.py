"""The dot index of an ORMap: which key's entry holds each live dot.

An ORMap joins another state key by key. The keys the other side holds are visited
anyway; the others can change only where the other side's causal context has seen one
of their dots (it then removed that dot). The index ``replica -> counter -> key`` finds
those keys by walking the other context's dots, so merging a delta costs O(size of the
delta) however many keys the map holds.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from crdtgossip.crdts._causal import CausalContext, Dot

__all__ = ["DotIndex", "covered_dots", "index_add", "index_discard"]

#: replica -> counter -> the key whose entry holds the dot ``(replica, counter)``. No
#: empty inner dict is kept, so ``len(index[replica])`` counts that replica's live dots.
DotIndex: TypeAlias = dict[str, dict[int, Any]]

#: Marks "no key" in lookups (keys may be None).
_ABSENT: Any = object()


def covered_dots(index: DotIndex, their_context: CausalContext) -> list[tuple[str, int, Any]]:
    """``(replica, counter, key)`` of every indexed dot that ``their_context`` has seen.

    Per replica it walks the smaller side: the other context's dots (a delta's few) or
    the index's dots of that replica (when the other side is a large state).
    """
    found: list[tuple[str, int, Any]] = []
    if not index:
        return found
    for replica in their_context.vector.keys() | their_context.cloud.keys():
        block = index.get(replica)
        if block is None:
            continue
        if their_context.size(replica) <= len(block):
            for counter in their_context.dots_of(replica):
                key = block.get(counter, _ABSENT)
                if key is not _ABSENT:
                    found.append((replica, counter, key))
        else:
            covers = their_context.covers
            found.extend(
                (replica, counter, key)
                for counter, key in block.items()
                if covers(replica, counter)
            )
    return found


def index_add(index: DotIndex, dot: Dot, key: Any) -> None:
    """Record in ``index`` that ``dot`` is live in the entry of ``key``."""
    block = index.get(dot[0])
    if block is None:
        index[dot[0]] = {dot[1]: key}
    else:
        block[dot[1]] = key


def index_discard(index: DotIndex, dot: Dot, key: Any) -> None:
    """Forget ``dot`` (of ``key``'s entry) in ``index``; nothing if it is not there."""
    block = index.get(dot[0])
    if block is not None and block.get(dot[1], _ABSENT) is not _ABSENT:
        del block[dot[1]]
        if not block:
            del index[dot[0]]

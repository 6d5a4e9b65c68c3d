"""How far a replica's own writes have gone in a state: the marks a rollback shows in.

Every write a replica makes raises a number that only that replica raises: its slot of
a counter, the highest dot of its own in a causal context. Those numbers are the
replica's *marks* in the state. A replica holds every write it made, so a peer can
never hold a mark of it higher than its own, unless the replica's store lost commits
(issue 18): a peer that holds ``(r, 50)`` while ``r`` restarted with ``(r, 24)``
proves that ``r`` would now issue dots and counter values its peers already hold, so
its new writes would vanish on merge. :mod:`crdtgossip.protocol.rollback` asks peers
for their marks of a restarted node and compares them with :func:`marks_ahead`.

Types without per-replica numbers (G-Set; LWW types, ordered by hybrid-logical-clock
stamps that a restart does not reuse) have no marks. A type of the user's can give
its own by a ``replica_marks(replica) -> tuple[int, ...]`` method.
"""

from __future__ import annotations

from typing import Any

from crdtgossip.crdts._causal import CausalCRDT
from crdtgossip.crdts.gcounter import GCounter
from crdtgossip.crdts.pncounter import PNCounter

__all__ = ["MAX_MARKS", "marks_ahead", "replica_marks"]

MAX_MARKS = 8
"""Most marks one state may give for a replica (a bound for what crosses the wire)."""


def replica_marks(state: Any, replica: str) -> tuple[int, ...]:
    """The marks of ``replica``'s own writes in ``state`` (see the module docstring).

    Args:
        state: any state a node holds.
        replica: the replica id.

    Returns:
        Non-negative ints, compared position by position; ``()`` for a type without
        marks (and for a user type whose method gives something else).
    """
    if isinstance(state, CausalCRDT):
        return (state._context.max_counter(replica),)
    if isinstance(state, GCounter):
        return (state._counts.get(replica, 0),)
    if isinstance(state, PNCounter):
        return (
            state._increments._counts.get(replica, 0),
            state._decrements._counts.get(replica, 0),
        )
    method = getattr(state, "replica_marks", None)
    if method is None:
        return ()
    marks = method(replica)
    if (
        type(marks) is not tuple
        or len(marks) > MAX_MARKS
        or not all(type(mark) is int and mark >= 0 for mark in marks)
    ):
        return ()
    return marks


def marks_ahead(theirs: tuple[int, ...], ours: tuple[int, ...]) -> bool:
    """Whether ``theirs`` holds a write that ``ours`` lacks: a mark above ours (a mark
    missing on either side counts as 0)."""
    return any(mark > (ours[i] if i < len(ours) else 0) for i, mark in enumerate(theirs))

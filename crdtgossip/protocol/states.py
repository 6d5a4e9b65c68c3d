"""Member states and the table of their transitions.

A member is *alive*, *suspect* (missed its probes; it has a suspicion timeout to
refute), *dead* (the timeout ran out) or *left* (it said goodbye). What moves a member
between states is a *rumor* about it (alive, suspect, dead, left) carrying an
incarnation number, which only the member itself raises: so a rumor older than what a
node knows never wins, and a member refutes a suspicion by announcing itself alive with
a higher incarnation.

The rules are a table, not branches spread through the engine (h11's ``_state.py`` is
the model): :data:`TRANSITIONS` maps (current status, rumor, how the rumor's
incarnation compares with the known one) to the new status. A combination that is not
in the table is ignored. The rules are SWIM's with memberlist's refinements:

* *alive* wins only with a higher incarnation, from any state (so a dead or left member
  that comes back with a higher incarnation is accepted again);
* *suspect* and *dead* need at least the known incarnation and never revive a member
  that is already dead or left;
* *left* comes only from the member itself and also overrides *dead* (a member that
  left but was declared dead first, because its goodbye was late, is shown as left).
"""

from __future__ import annotations

import enum

__all__ = [
    "STATUS_CODES",
    "TRANSITIONS",
    "Order",
    "Rumor",
    "Status",
    "next_status",
    "order_of",
]


class Status(enum.StrEnum):
    """What a node believes about a member."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


class Rumor(enum.Enum):
    """The kinds of membership news that travel between nodes."""

    ALIVE = enum.auto()
    SUSPECT = enum.auto()
    DEAD = enum.auto()
    LEFT = enum.auto()


class Order(enum.Enum):
    """How a rumor's incarnation compares with the one already known."""

    OLDER = enum.auto()
    SAME = enum.auto()
    NEWER = enum.auto()


#: Wire code of each status, in member tables exchanged by push-pull.
STATUS_CODES: dict[Status, int] = {
    Status.ALIVE: 0,
    Status.SUSPECT: 1,
    Status.DEAD: 2,
    Status.LEFT: 3,
}

_A, _S, _D, _L = Status.ALIVE, Status.SUSPECT, Status.DEAD, Status.LEFT
_SAME, _NEWER = Order.SAME, Order.NEWER

#: (current status, rumor, incarnation order) -> new status; absent means "ignore".
TRANSITIONS: dict[tuple[Status, Rumor, Order], Status] = {
    # A higher incarnation proves the member is alive, whatever we thought.
    (_A, Rumor.ALIVE, _NEWER): _A,
    (_S, Rumor.ALIVE, _NEWER): _A,
    (_D, Rumor.ALIVE, _NEWER): _A,
    (_L, Rumor.ALIVE, _NEWER): _A,
    # Suspicion of a live member; on a suspect member it counts as a confirmation.
    (_A, Rumor.SUSPECT, _SAME): _S,
    (_A, Rumor.SUSPECT, _NEWER): _S,
    (_S, Rumor.SUSPECT, _SAME): _S,
    (_S, Rumor.SUSPECT, _NEWER): _S,
    # Death is final for this incarnation.
    (_A, Rumor.DEAD, _SAME): _D,
    (_A, Rumor.DEAD, _NEWER): _D,
    (_S, Rumor.DEAD, _SAME): _D,
    (_S, Rumor.DEAD, _NEWER): _D,
    # A goodbye is final too, and more precise than a death.
    (_A, Rumor.LEFT, _SAME): _L,
    (_A, Rumor.LEFT, _NEWER): _L,
    (_S, Rumor.LEFT, _SAME): _L,
    (_S, Rumor.LEFT, _NEWER): _L,
    (_D, Rumor.LEFT, _SAME): _L,
    (_D, Rumor.LEFT, _NEWER): _L,
}


def order_of(rumor_incarnation: int, known_incarnation: int) -> Order:
    """Compare a rumor's incarnation with the known one.

    Args:
        rumor_incarnation: the incarnation the rumor carries.
        known_incarnation: the incarnation in the member table.

    Returns:
        :attr:`Order.OLDER`, :attr:`Order.SAME` or :attr:`Order.NEWER`.
    """
    if rumor_incarnation < known_incarnation:
        return Order.OLDER
    if rumor_incarnation == known_incarnation:
        return Order.SAME
    return Order.NEWER


def next_status(current: Status, rumor: Rumor, order: Order) -> Status | None:
    """Look up the transition for a rumor about a known member.

    Args:
        current: the member's status now.
        rumor: the kind of rumor received.
        order: how the rumor's incarnation compares with the known one.

    Returns:
        The new status, or ``None`` when the rumor must be ignored.
    """
    return TRANSITIONS.get((current, rumor, order))

"""The node's hybrid logical clock, and the check of stamps that peers send.

Every last-writer-wins stamp a node makes (an LWWRegister or LWWMap write through
``Node.update`` without an explicit timestamp) comes from one :class:`HLC` per node
(Kulkarni, Demirbas et al., "Logical Physical Clocks", 2014), not from each register's
"wall clock or highest seen + 1": a write made after this node merged a stamp of any key
is ordered after that stamp, and stamps stay close to real time.

**Layout.** A stamp is one unsigned 64-bit integer on the scale of Unix time in
nanoseconds, so stamps made before the clock existed (raw ``time.time_ns()``) and
explicit nanosecond timestamps compare with it as they always did::

    bit 63 .............................. 20 | 19 ............ 0
    physical time: Unix ns >> 20             | logical counter
    (ticks of 2**20 ns = 1.048576 ms)        | (0 .. 2**20 - 1)

``stamp >> LOGICAL_BITS`` is the physical tick (:func:`physical_ns` gives it back in
nanoseconds), ``stamp & LOGICAL_MASK`` the logical counter (:func:`logical`). 64 bits of
nanoseconds last until the year 2554.

**Rules.** A local stamp is ``max(physical now, last + 1)``, past the key's own stamp
too; a stamp received (:meth:`HLC.observe`) raises ``last`` to it. As one integer this
is Kulkarni's ``l = max(l, l_m, pt)`` with ``c`` counting within equal ``l``. The
logical counter only grows while the physical clock stands still or is behind ``last``,
so it stays far below its bound: 2**20 stamps would have to be made within one tick
or within the lead of ``last`` over the local clock, which :meth:`HLC.observe` keeps
below ``max_offset`` by refusing stamps beyond ``now + max_offset``. Were it reached,
the carry moves into the physical part (the clock runs ahead by one tick, counted in
:attr:`HLC.carries`); no stamp is ever reused and none overflows: past ``2**64 - 1``
:class:`~crdtgossip.errors.OperationError` is raised, never ``OverflowError``.

The engine checks every delta, state and repair patch it merges with
:func:`max_stamp` against :meth:`HLC.admits` (see ``GossipConfig.max_clock_offset``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

from crdtgossip.crdts._base import next_timestamp
from crdtgossip.crdts._values import INT_MAX

__all__ = [
    "AHEAD_WINDOW",
    "HLC",
    "LOGICAL_BITS",
    "LOGICAL_MASK",
    "SkewMonitor",
    "logical",
    "max_stamp",
    "may_hold_stamps",
    "physical_ns",
]

_log = logging.getLogger("crdtgossip.clock")

LOGICAL_BITS: Final = 20
"""Low bits of a stamp holding the logical counter. 20 bits: a physical tick of about
1 ms (the resolution of CockroachDB's and most HLCs' wall time), and room for 10**6
stamps within one tick, far more than a Python node makes in a millisecond."""

LOGICAL_MASK: Final = (1 << LOGICAL_BITS) - 1
"""The logical counter of a stamp: ``stamp & LOGICAL_MASK``."""

_PHYSICAL_MASK: Final = ~LOGICAL_MASK

AHEAD_WINDOW: Final = 60.0
"""Seconds a writer refused for a stamp ahead of this node's clock counts as ahead
when deciding whether this node's own clock is behind (see :class:`SkewMonitor`). A
minute: several push-pull rounds of the local preset, so one refusal is not forgotten
before the members that agree with it are heard from."""


def logical(stamp: int) -> int:
    """The logical counter of a stamp (its low :data:`LOGICAL_BITS` bits)."""
    return stamp & LOGICAL_MASK


def physical_ns(stamp: int) -> int:
    """The physical part of a stamp, in Unix nanoseconds rounded down to a tick."""
    return stamp & ~LOGICAL_MASK


class HLC:
    """A hybrid logical clock (see the module docstring for the layout and rules).

    Args:
        wall_clock: the physical clock, Unix time in integer nanoseconds
            (``time.time_ns``; the simulator passes virtual time).
        max_offset_ns: the largest lead over the physical clock a received stamp may
            have (``GossipConfig.max_clock_offset`` in nanoseconds).

    Example:
        >>> clock = HLC(lambda: 5 << LOGICAL_BITS, max_offset_ns=10**9)
        >>> first = clock.stamp(0)
        >>> clock.stamp(0) == first + 1         # the physical clock stood still
        True
        >>> clock.observe(first + 1000), clock.stamp(0) == first + 1001
        (True, True)
        >>> clock.observe(first + 2 * 10**9)    # two seconds ahead: refused
        False
    """

    __slots__ = ("_last", "_wall", "carries", "max_offset_ns")

    def __init__(self, wall_clock: Callable[[], int], max_offset_ns: int) -> None:
        self._wall = wall_clock
        self.max_offset_ns = max_offset_ns
        self._last = 0
        #: How many times the logical counter ran out and carried into the physical
        #: part (the clock then runs one tick ahead of real time); 0 in practice.
        self.carries = 0

    @property
    def last(self) -> int:
        """The highest stamp made or observed."""
        return self._last

    def now(self) -> int:
        """The physical clock's reading in nanoseconds (not a stamp; nothing changes)."""
        return self._wall()

    def stamp(self, seen: int = 0) -> int:
        """A new stamp, later than every stamp made or observed and than ``seen``.

        Args:
            seen: the stamp the write must beat (the key's current one). A ``seen``
                beyond the clock's bound (written by an explicit timestamp) is beaten
                by ``seen + 1`` without moving the clock, so one key holding an
                outlier never drags the stamps of the others.

        Returns:
            The stamp.

        Raises:
            OperationError: no stamp after ``seen`` fits in 64 bits.
        """
        physical = self._wall() & _PHYSICAL_MASK
        last = self._last
        if physical > last:
            stamp = physical
        else:
            stamp = last + 1
            if not stamp & LOGICAL_MASK:
                self.carries += 1
        if seen >= stamp:
            stamp = next_timestamp(seen, stamp)
            if stamp > physical + self.max_offset_ns:
                return stamp
        self._last = stamp
        return stamp

    def admits(self, stamp: int) -> bool:
        """Whether a received stamp is within ``max_offset`` of the physical clock."""
        return stamp <= self._wall() + self.max_offset_ns

    def observe(self, stamp: int) -> bool:
        """Advance past a received stamp, if it is admitted (see :meth:`admits`).

        Returns:
            False, and nothing changes, when the stamp is too far ahead.
        """
        if stamp <= self._last:
            return True
        if stamp > self._wall() + self.max_offset_ns:  # admits(), in line
            return False
        self._last = stamp if stamp <= INT_MAX else INT_MAX
        return True


def max_stamp(state: object) -> tuple[int, str]:
    """The highest LWW stamp in a state or delta with its writer's replica id;
    ``(0, "")`` when it holds none.

    LWW types say it with ``_max_stamp()``; an ORMap is looked into, down to its
    nested registers and maps; other types hold no stamps.
    """
    own: Callable[[], tuple[int, str]] | None = getattr(state, "_max_stamp", None)
    if own is not None:
        return own()
    top = (0, "")
    if not may_hold_stamps(state):
        return top
    entries: dict[Any, Any] = getattr(state, "_entries", {})
    for entry in entries.values():
        nested = entry.nested
        if nested is not None:
            top = max(top, max_stamp(nested))
        for contribution in entry.tags.values():
            if contribution is not None:
                top = max(top, max_stamp(contribution))
    return top


def may_hold_stamps(state: object) -> bool:
    """Whether a state's type holds LWW stamps (an LWW type, or maps of them)."""
    if hasattr(state, "_max_stamp"):
        return True
    inner = getattr(state, "_prototype", None)
    return inner is not None and hasattr(state, "_entries") and may_hold_stamps(inner)


class SkewMonitor:
    """Refusals of stamps ahead of this node's clock, and whether it is the one behind.

    A stamp ahead of ``now + max_offset`` may mean its writer's clock is ahead, or this
    node's is behind. When writers refused within :data:`AHEAD_WINDOW` are more than
    half of the other live members (and at least one), it is likelier this node: it
    reports :attr:`behind` and logs a warning once, until that is no longer so.
    """

    __slots__ = ("_ahead", "behind", "refused")

    def __init__(self) -> None:
        self._ahead: dict[str, float] = {}
        self.refused = 0
        self.behind = False

    def refuse(self, writer: str, lead_ns: int, now: float, live_members: int) -> None:
        """Count a refused stamp of ``writer`` ahead of the local clock by ``lead_ns``.

        Args:
            writer: the replica id (or sender) whose stamp was refused.
            lead_ns: how far ahead of the local physical clock the stamp was.
            now: the engine's time in seconds.
            live_members: the other members alive now.
        """
        self.refused += 1
        self._ahead[writer] = now
        _log.debug("refused a stamp of %s %.3f s ahead of this clock", writer, lead_ns / 1e9)
        self.review(now, live_members)

    def review(self, now: float, live_members: int) -> None:
        """Forget old refusals and decide whether this node's clock is behind."""
        for writer in [w for w, at in self._ahead.items() if now - at > AHEAD_WINDOW]:
            del self._ahead[writer]
        behind = bool(self._ahead) and 2 * len(self._ahead) > max(1, live_members)
        if behind and not self.behind:
            _log.warning(
                "this node's clock looks behind: stamps of %d of %d live members were more "
                "than max_clock_offset ahead of it within %.0f s; check NTP",
                len(self._ahead),
                live_members,
                AHEAD_WINDOW,
            )
        elif self.behind and not behind:
            _log.info("this node's clock no longer looks behind its peers")
        self.behind = behind

"""Whether a simulated cluster has settled, kept up to date from the engines' events.

A full check compares every running node's member table with every other's and every
store with every other: O(N²) per check, which a run that checks every gossip round
pays thousands of times. :class:`Convergence` instead follows the engines' events:

* per observer, the members it does not see alive (from the membership events; a
  formed cluster starts with none, a joining one with everyone unknown), so checking
  the running members costs the number of such pairs, not N²;
* the keys changed since the last check (from ``KeyChanged``); only those are compared
  across the running nodes, each in O(N), and the keys that disagree are remembered.

Down nodes (crashed, left) are checked in full, one column of the member tables each:
their rules have exceptions (see :meth:`~crdtgossip.testing.simulation.Simulation.converged`)
and there are few of them. A node's life changing (crash, leave, restart) marks every
key for a new comparison. :meth:`Convergence.full_check` is the O(N²) reference the
tests hold the incremental answer to.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.protocol import (
    Engine,
    Event,
    KeyChanged,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
    Status,
)

__all__ = ["Convergence", "Life", "Slot"]

_MEMBER_EVENTS = (MemberJoined, MemberAlive, MemberSuspect, MemberDead, MemberLeft)
_ALIVE = Status.ALIVE  # a module constant: reading it off the enum is 8x slower


class Life(enum.Enum):
    """Where a simulated node is in its life."""

    RUNNING = enum.auto()
    LEAVING = enum.auto()  # left gracefully, still gossiping the goodbye
    LEFT = enum.auto()
    CRASHED = enum.auto()


@dataclass(slots=True)
class Slot:
    """One simulated node: its current engine and what survives a restart."""

    engine: Engine
    life: Life
    generation: int
    saved: dict[str, CRDT] = field(default_factory=dict)
    #: The life records the node had (see :mod:`crdtgossip.keylife`), tombstones too.
    saved_lives: dict[str, dict[str, tuple[int, int]]] = field(default_factory=dict)
    #: The last-write stamps of its keys that expire (see :mod:`crdtgossip.protocol.expiry`).
    saved_written: dict[str, int] = field(default_factory=dict)


def _index(node_id: str, size: int) -> int | None:
    """The simulator's node number of ``node_id`` (``"n<i>"``), if it is one."""
    if node_id[:1] != "n" or not node_id[1:].isdigit():
        return None
    index = int(node_id[1:])
    return index if index < size else None


class Convergence:
    """The settledness of a simulated cluster (see the module doc).

    Args:
        slots: the simulator's nodes (the list is shared, read on every check).
        formed: the cluster starts formed (every node sees every other alive).
    """

    def __init__(self, slots: Sequence[Slot], *, formed: bool) -> None:
        self._slots = slots
        size = len(slots)
        # The node number of each simulated node id (what _index parses, looked up).
        self._numbers = {f"n{i}": i for i in range(size)}
        self._not_alive: list[set[int]] = [
            set() if formed else set(range(size)) - {i} for i in range(size)
        ]
        self._dirty: set[str] = set()
        self._bad_keys: set[str] = set()
        self._keys: set[str] = set()

    # --- inputs --------------------------------------------------------------------

    def observe(self, observer: int, events: Sequence[Event]) -> None:
        """Take the events node ``observer``'s engine just returned."""
        size = len(self._slots)
        numbers, not_alive = self._numbers, self._not_alive[observer]
        for event in events:
            if isinstance(event, KeyChanged):
                self._dirty.add(event.key)
                self._keys.add(event.key)
            elif isinstance(event, _MEMBER_EVENTS):
                node_id = event.member.node_id
                member = numbers.get(node_id)
                if member is None:
                    member = _index(node_id, size)
                if member is None or member == observer:
                    continue
                if event.member.status is _ALIVE:
                    not_alive.discard(member)
                else:
                    not_alive.add(member)

    def new_engine(self, i: int) -> None:
        """Node ``i`` has a new engine (a restart): its view starts empty."""
        self._not_alive[i] = set(range(len(self._slots))) - {i}
        self.life_changed()

    def life_changed(self) -> None:
        """A node went down, started leaving or came back: compare every key again."""
        self._dirty |= self._keys

    # --- the check -----------------------------------------------------------------

    def converged(self) -> bool:
        """Whether the cluster has settled (the rules of ``Simulation.converged``)."""
        slots = self._slots
        if any(slot.life is Life.LEAVING for slot in slots):
            return False
        live = [i for i, slot in enumerate(slots) if slot.life is Life.RUNNING]
        if not live:
            return True
        for i in live:
            if any(slots[j].life is Life.RUNNING for j in self._not_alive[i]):
                return False
        engines = [slots[i].engine for i in live]
        for j, slot in enumerate(slots):
            if slot.life is not Life.RUNNING and not self._down_settled(j, slot, engines):
                return False
        for key in sorted(self._dirty):
            if self._key_agrees(key, engines):
                self._bad_keys.discard(key)
            else:
                self._bad_keys.add(key)
        self._dirty.clear()
        return not self._bad_keys

    def full_check(self) -> bool:
        """The same answer by comparing everything: O(N²), for tests."""
        slots = self._slots
        if any(slot.life is Life.LEAVING for slot in slots):
            return False
        live = [i for i, slot in enumerate(slots) if slot.life is Life.RUNNING]
        if not live:
            return True
        engines = [slots[i].engine for i in live]
        for j, slot in enumerate(slots):
            if slot.life is Life.RUNNING:
                found = [engine.member(f"n{j}") for engine in engines]
                if any(m is None or m.status is not Status.ALIVE for m in found):
                    return False
            elif not self._down_settled(j, slot, engines):
                return False
        keys = set().union(*(engine.keys() for engine in engines))
        return all(self._key_agrees(key, engines) for key in keys)

    @staticmethod
    def _down_settled(j: int, slot: Slot, engines: list[Engine]) -> bool:
        """How the running nodes see down node ``j`` is as settled as it can be."""
        found = [engine.member(f"n{j}") for engine in engines]
        if slot.life is Life.CRASHED:
            incarnation = slot.engine.incarnation
            for m in found:
                if m is None or m.status is Status.DEAD:
                    continue
                if m.status is not Status.LEFT or m.incarnation >= incarnation:
                    return False
            return True
        statuses = {m.status for m in found if m is not None}
        return statuses in ({Status.LEFT}, {Status.DEAD}, set())

    @staticmethod
    def _key_agrees(key: str, engines: list[Engine]) -> bool:
        """Every running node holds ``key`` in the same state, or none holds it."""
        states = [engine.get(key) for engine in engines]
        present = [state for state in states if state is not None]
        if not present:
            return True
        if len(present) != len(states):
            return False
        reference = encode(present[0])
        return all(encode(state) == reference for state in present[1:])

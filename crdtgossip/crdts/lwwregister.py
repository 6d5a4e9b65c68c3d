"""LWW-Register: a last-writer-wins register.

Each write carries an integer timestamp and the writer's replica id; the join keeps the
write with the highest ``(timestamp, replica)``, so every replica picks the same winner.
(Two writes with the same timestamp and replica only happen with explicit timestamps;
the value's total order breaks that tie, so merge stays commutative.)

A write without a timestamp made through a node (``Node.update``) takes the node's
hybrid logical clock (:mod:`crdtgossip.protocol.clock`, Kulkarni et al., 2014), raised
past the register's own timestamp: it wins over everything this replica and this node
have seen, even when the local clock is behind, and the node refuses stamps from peers
more than ``GossipConfig.max_clock_offset`` ahead of its clock. Outside a node it uses
``max(now_ns, highest seen + 1)``. Against writes it has not seen yet, clock skew
still decides: a replica whose clock is behind by ``d`` loses to a concurrent write
made elsewhere up to ``d`` earlier. Pass explicit timestamps where that matters.

Cost: one value, one timestamp, one replica id; the delta is the register itself.
"""

from __future__ import annotations

import copy as _copy
from typing import Any, Generic, Self, TypeVar

from crdtgossip.crdts._base import (
    check_replica,
    check_timestamp,
    current_stamps,
    next_timestamp,
    now_ns,
    order_key,
)
from crdtgossip.crdts._digest import digest_of, value_hash
from crdtgossip.crdts._values import INT_MAX, INT_MIN, check_value
from crdtgossip.errors import MergeError

__all__ = ["LWWRegister"]

V = TypeVar("V")

# Values that cannot change in place: a write keeps them as they are, without the
# deep copy (most of a small write's cost) that a list or dict needs.
_IMMUTABLE: frozenset[type] = frozenset({str, int, float, bool, bytes, type(None)})


# A register without __init__'s work (the fields are set right after).
_new = object.__new__

#: Replica ids that passed check_replica (exact strs), so a write by one of them checks
#: nothing again; at most this many are kept, then the set starts anew.
MAX_CHECKED_REPLICAS = 1024
_checked_replicas: set[str] = set()


def _remember_replica(replica: str) -> None:
    if len(_checked_replicas) >= MAX_CHECKED_REPLICAS:
        _checked_replicas.clear()
    _checked_replicas.add(replica)


def write_key(timestamp: int, replica: str, value: object) -> tuple[Any, ...]:
    """The order in which LWW writes win: timestamp, then replica, then value."""
    return (timestamp, replica, order_key(value))


class LWWRegister(Generic[V]):
    """A last-writer-wins register. Empty: ``value`` None and ``timestamp`` 0.

    Example:
        >>> from crdtgossip import LWWRegister
        >>> a, b = LWWRegister(), LWWRegister()
        >>> d1 = a.set("v1", "a", timestamp=10)
        >>> d2 = b.set("v2", "b", timestamp=10)   # same time: replica "b" > "a" wins
        >>> a.merge(d2); b.merge(d1)
        >>> a.value, b.value, a.timestamp
        ('v2', 'v2', 10)
    """

    __slots__ = ("_replica", "_timestamp", "_value")

    def __init__(self) -> None:
        self._value: V | None = None
        self._timestamp = 0
        self._replica = ""

    @classmethod
    def _from_parts(cls, value: V | None, timestamp: int, replica: str) -> Self:
        register = cls.__new__(cls)
        register._value = value
        register._timestamp = timestamp
        register._replica = replica
        return register

    @property
    def value(self) -> V | None:
        """The winning value (None when never written)."""
        return _copy.deepcopy(self._value)

    @property
    def timestamp(self) -> int:
        """The winning write's timestamp (0 when never written)."""
        return self._timestamp

    @property
    def replica(self) -> str:
        """The winning write's replica id ("" when never written)."""
        return self._replica

    def set(self, value: V, replica: str, timestamp: int | None = None) -> Self:
        """Write ``value``.

        Args:
            value: the new value.
            replica: the writer's replica id.
            timestamp: an integer timestamp; by default the node's hybrid logical clock
                (inside ``Node.update``) or ``max(now_ns, highest seen + 1)``, always
                past the current one. A write with a lower explicit timestamp than the
                current one loses.

        Returns:
            The delta: a register holding just this write.

        Raises:
            OperationError: a bad replica id or timestamp, a value the codec cannot
                encode (see :mod:`crdtgossip.crdts._values`), or no default timestamp
                left (the register holds 2**64 - 1). Nothing has changed then.
        """
        kind = type(value)
        # The checks' common cases in line (a call each is a quarter of a small write);
        # anything else goes through the full check, which raises or passes it.
        if value is not None and not (
            kind is int and INT_MIN <= value <= INT_MAX  # type: ignore[operator]
        ):
            check_value(value)
        if type(replica) is not str or replica not in _checked_replicas:
            _remember_replica(check_replica(replica))
        seen = self._timestamp
        if timestamp is None:
            stamps = current_stamps()
            stamp = next_timestamp(seen, now_ns()) if stamps is None else stamps(seen)
        elif type(timestamp) is int and 0 <= timestamp <= INT_MAX:
            stamp = timestamp
        else:
            stamp = check_timestamp(timestamp)
        immutable = kind in _IMMUTABLE
        owned = value if immutable else _copy.deepcopy(value)
        delta = _new(type(self))
        delta._value = owned
        delta._timestamp = stamp
        delta._replica = replica
        # A default stamp is always past the current one; only an explicit one can lose.
        if stamp > seen or delta._wins_over(self):
            self._value = owned if immutable else _copy.deepcopy(owned)
            self._timestamp = stamp
            self._replica = replica
        return delta

    def _wins_over(self, other: LWWRegister[V]) -> bool:
        # Timestamp, then replica; the value's order key only on a full tie (rare).
        if self._timestamp != other._timestamp:
            return self._timestamp > other._timestamp
        if self._replica != other._replica:
            return self._replica > other._replica
        return order_key(self._value) > order_key(other._value)

    def merge(self, other: Self) -> None:
        """Join ``other`` in place: the write with the highest (timestamp, replica)."""
        if type(other) is not type(self):
            raise MergeError(f"cannot merge {type(other).__name__} into {type(self).__name__}")
        theirs, mine = other._timestamp, self._timestamp
        if theirs > mine or (theirs == mine and other._wins_over(self)):
            value = other._value
            self._value = value if type(value) in _IMMUTABLE else _copy.deepcopy(value)
            self._timestamp = other._timestamp
            self._replica = other._replica

    def _max_stamp(self) -> tuple[int, str]:
        """The highest timestamp held and its writer (the engine checks it against its
        clock)."""
        return (self._timestamp, self._replica)

    def copy(self) -> Self:
        """An independent copy."""
        return type(self)._from_parts(_copy.deepcopy(self._value), self._timestamp, self._replica)

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        assert isinstance(other, LWWRegister)
        return (
            self._timestamp == other._timestamp
            and self._replica == other._replica
            and order_key(self._value) == order_key(other._value)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"LWWRegister({self._value!r}, timestamp={self._timestamp}, replica={self._replica!r})"
        )

    # ---- digests (used by anti-entropy) -----------------------------------------------
    def _digest(self) -> bytes:
        """A canonical digest of the state (one write: computed each time)."""
        return digest_of(b"LWWRegister", value_hash((self._timestamp, self._replica, self._value)))

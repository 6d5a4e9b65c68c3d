"""A mergeable quantile sketch that is itself a CRDT: DDSketch with per-replica buckets.

DDSketch (Masson, Rim, Lee, VLDB 2019) puts a value ``x > 0`` in the bucket
``i = ceil(log_gamma(x))`` with ``gamma = (1 + a) / (1 - a)``; every value of bucket
``i`` lies in ``(gamma**(i-1), gamma**i]``, so answering a quantile with
``2 * gamma**i / (gamma + 1)`` is off by at most the relative accuracy ``a`` (here 1%).
Negative values take buckets of their magnitude; values closer to zero than
:data:`MIN_INDEXABLE` share one zero bucket.

Merging two sketches adds their bucket counts, which is not idempotent; so each bucket
here holds one grow-only count *per replica* (a G-Counter per bucket) and merging takes
the larger count per (bucket, replica). That makes the sketch a join semilattice: every
agent that has seen the same adds holds the same buckets and answers the same
percentiles, whatever the order or repetition of the merges. The smallest and largest
value seen (joins too) clamp the answers at the ends.

A replica's buckets are bounded: every finite float maps to an index of magnitude at
most :data:`MAX_INDEX` (about 35,500 at 1%), and a latency spread over six orders of
magnitude uses about 700 buckets.

The type is registered with the codec (:data:`SKETCH_TAG`) when this module is imported,
so a node gossips, persists and nests it like a built-in type; decoding checks every
part (signs, index range, counts, ordering, min and max) as strictly as the built-ins.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Self

from crdtgossip.codec import Body, register_type
from crdtgossip.errors import OperationError

__all__ = [
    "GAMMA",
    "MAX_INDEX",
    "MIN_INDEXABLE",
    "RELATIVE_ACCURACY",
    "SKETCH_TAG",
    "DDSketch",
]

#: The relative accuracy of every quantile: 1%, the DDSketch paper's and the ``ddsketch``
#: package's default.
RELATIVE_ACCURACY = 0.01

#: The bucket growth factor that gives :data:`RELATIVE_ACCURACY`.
GAMMA = (1 + RELATIVE_ACCURACY) / (1 - RELATIVE_ACCURACY)
_LOG_GAMMA = math.log(GAMMA)

#: Magnitudes below this share the zero bucket: a nanosecond, in seconds; far below any
#: latency or size a service reports, and it keeps indices bounded.
MIN_INDEXABLE = 1e-9

#: The largest bucket index magnitude: ``ceil(log_gamma(sys.float_info.max))`` is about
#: 35,485; a little more, so every finite float has a bucket and a decoded index beyond
#: it is refused as hostile.
MAX_INDEX = 36_000

#: The codec tag of :class:`DDSketch` in the users' range; fixed forever (17: the issue
#: that introduced it).
SKETCH_TAG = 40_017

#: Signs of the buckets: negative magnitudes, the zero bucket, positive magnitudes.
_SIGNS = (-1, 0, 1)

#: A bucket: (sign, index); the zero bucket is (0, 0).
Bucket = tuple[int, int]


def _bucket_of(value: float) -> Bucket:
    magnitude = abs(value)
    if magnitude < MIN_INDEXABLE:
        return (0, 0)
    return (1 if value > 0 else -1, math.ceil(math.log(magnitude) / _LOG_GAMMA))


def _estimate(bucket: Bucket) -> float:
    sign, index = bucket
    if sign == 0:
        return 0.0
    return sign * 2.0 * math.exp(index * _LOG_GAMMA) / (GAMMA + 1.0)


def _value_order(bucket: Bucket) -> tuple[int, int]:
    # Negative buckets from the largest magnitude down, then zero, then positives up.
    sign, index = bucket
    return (sign, -index if sign < 0 else index)


def _canonical(value: float) -> float:
    return float(value) + 0.0  # -0.0 becomes 0.0: equal states encode alike


class DDSketch:
    """A DDSketch whose bucket counts are per-replica grow-only counters.

    Example::

        sketch = DDSketch()
        delta = sketch.add("a", 12.5)
        sketch.quantile(0.99)
    """

    __slots__ = ("_counts", "_max", "_min")

    def __init__(self) -> None:
        # (sign, index, replica) -> that replica's count in that bucket.
        self._counts: dict[tuple[int, int, str], int] = {}
        self._min: float | None = None
        self._max: float | None = None

    # ---- mutators --------------------------------------------------------------------
    def add(self, replica: str, value: float, count: int = 1) -> Self:
        """Count ``value`` ``count`` times for ``replica``; returns the delta.

        Raises:
            OperationError: ``value`` is not a finite number, or ``count`` not a
                positive int, or ``replica`` not a non-empty str.
        """
        return self.add_all(replica, (value,), count)

    def add_all(self, replica: str, values: Iterable[float], count: int = 1) -> Self:
        """Count each of ``values`` ``count`` times for ``replica``; returns one delta.

        Raises:
            OperationError: as :meth:`add`; nothing is counted then.
        """
        if not isinstance(replica, str) or not replica:
            raise OperationError(f"replica must be a non-empty str, not {replica!r:.40}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise OperationError(f"count must be a positive int, not {count!r:.40}")
        added: dict[Bucket, int] = {}
        low = high = None
        for value in values:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise OperationError(f"a sketch counts numbers, not {value!r:.40}")
            if not math.isfinite(value):
                raise OperationError("a sketch counts finite numbers only")
            bucket = _bucket_of(value)
            added[bucket] = added.get(bucket, 0) + count
            low = value if low is None or value < low else low
            high = value if high is None or value > high else high
        delta = type(self)()
        if low is None or high is None:
            return delta
        for (sign, index), more in added.items():
            slot = (sign, index, replica)
            self._counts[slot] = delta._counts[slot] = self._counts.get(slot, 0) + more
        delta._min, delta._max = _canonical(low), _canonical(high)
        self._join_range(delta._min, delta._max)
        return delta

    def _join_range(self, low: float | None, high: float | None) -> None:
        if low is not None:
            self._min = low if self._min is None else min(self._min, low)
        if high is not None:
            self._max = high if self._max is None else max(self._max, high)

    # ---- the CRDT protocol -----------------------------------------------------------
    def merge(self, other: Self) -> None:
        """Join ``other`` into this sketch: the larger count per (bucket, replica)."""
        counts = self._counts
        for slot, count in other._counts.items():
            if counts.get(slot, 0) < count:
                counts[slot] = count
        self._join_range(other._min, other._max)

    def copy(self) -> Self:
        """An independent copy."""
        twin = type(self)()
        twin._counts = dict(self._counts)
        twin._min, twin._max = self._min, self._max
        return twin

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, DDSketch)
            and self._counts == other._counts
            and self._min == other._min
            and self._max == other._max
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"DDSketch(count={self.count}, min={self._min}, max={self._max})"

    @property
    def value(self) -> tuple[tuple[int, int, int], ...]:
        """Every non-empty bucket as ``(sign, index, count over all replicas)``, in
        value order."""
        return tuple((sign, index, count) for (sign, index), count in self._totals())

    # ---- reading ---------------------------------------------------------------------
    def _totals(self) -> Iterator[tuple[Bucket, int]]:
        totals: dict[Bucket, int] = {}
        for (sign, index, _), count in self._counts.items():
            totals[(sign, index)] = totals.get((sign, index), 0) + count
        for bucket in sorted(totals, key=_value_order):
            yield bucket, totals[bucket]

    @property
    def count(self) -> int:
        """How many values were counted, over all replicas."""
        return sum(self._counts.values())

    @property
    def min(self) -> float | None:
        """The smallest value counted (None when empty)."""
        return self._min

    @property
    def max(self) -> float | None:
        """The largest value counted (None when empty)."""
        return self._max

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 to 1), within :data:`RELATIVE_ACCURACY` of the value at
        rank ``floor(q * (count - 1))`` of the sorted values; None when empty.

        Raises:
            OperationError: ``q`` is not within 0 and 1.
        """
        return self.quantiles([q])[0]

    def quantiles(self, qs: Iterable[float]) -> list[float | None]:
        """:meth:`quantile` of each of ``qs``, in one pass over the buckets.

        Raises:
            OperationError: a ``q`` is not within 0 and 1.
        """
        wanted = list(qs)
        for q in wanted:
            if isinstance(q, bool) or not isinstance(q, int | float) or not 0 <= q <= 1:
                raise OperationError(f"a quantile is within 0 and 1, not {q!r:.40}")
        total = self.count
        if total == 0 or self._min is None or self._max is None:
            return [None] * len(wanted)
        order = sorted(range(len(wanted)), key=lambda at: wanted[at])
        answers: list[float | None] = [None] * len(wanted)
        buckets = self._totals()
        seen, bucket = 0, (0, 0)
        for at in order:
            rank = wanted[at] * (total - 1)
            while seen <= rank:
                bucket, count = next(buckets)
                seen += count
            answers[at] = min(max(_estimate(bucket), self._min), self._max)
        return answers


# ---- codec -----------------------------------------------------------------------------
def _encode_body(sketch: DDSketch) -> object:
    counts = [
        [sign, index, replica, count]
        for (sign, index, replica), count in sorted(sketch._counts.items())
    ]
    return [counts, sketch._min, sketch._max]


def _optional_float(body: Body) -> float | None:
    return None if body.is_none() else body.as_float()


def _decode_body(body: Body, version: int) -> DDSketch:
    del version  # only version 1 exists
    counts_body, min_body, max_body = body.as_list(3)
    sketch = DDSketch()
    previous: tuple[int, int, str] | None = None
    for entry in counts_body.as_list():
        sign_body, index_body, replica_body, count_body = entry.as_list(4)
        sign = sign_body.as_int(-1, 1)
        index = index_body.as_int(-MAX_INDEX, MAX_INDEX)
        if sign == 0 and index != 0:
            raise ValueError("the zero bucket has index 0")
        slot = (sign, index, replica_body.as_replica())
        if previous is not None and slot <= previous:
            raise ValueError("sketch buckets out of order or repeated")
        previous = slot
        sketch._counts[slot] = count_body.as_int(1)
    low, high = _optional_float(min_body), _optional_float(max_body)
    if (low is None) != (not sketch._counts) or (high is None) != (not sketch._counts):
        raise ValueError("a sketch has min and max exactly when it has counts")
    if low is not None and high is not None and not (math.isfinite(low) and low <= high):
        raise ValueError("a sketch's min must be finite and at most its max")
    if high is not None and not math.isfinite(high):
        raise ValueError("a sketch's max must be finite")
    sketch._min, sketch._max = low, high
    return sketch


register_type(DDSketch, tag=SKETCH_TAG, encode_body=_encode_body, decode_body=_decode_body)

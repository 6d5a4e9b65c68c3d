"""Canonical digests of states, kept up to date as the states change.

Anti-entropy compares replicas by digest, so a digest must be *canonical*: equal states
give equal digests in every process (never Python's randomized ``hash()`` of a str),
and it must be cheap to keep current: a running sum, not a re-encoding.

* A **dot** ``(replica, counter)`` hashes to 128 bits of BLAKE2s (the faster of the two
  BLAKE2 on short inputs: about 0.35 us) of the replica's UTF-8 name followed by the
  counter in 16 bytes (the fixed-length tail keeps the pair
  unambiguous). A causal state's digest combines a hash of its causal context with the
  sum, modulo 2**128, of the hashes of its live dots. A dot names one write, so it
  determines its payload (the element, the value, the map key): the payload needs no
  hashing of its own.
* An **element** (a G-Set member, an LWW-Map key) hashes its canonical bytes under
  Python's equality: ``1``, ``1.0`` and ``True`` are one element of a Python set, so
  they hash alike; ``-0.0`` hashes as ``0``. A **value** (an LWW write) hashes under the
  order the LWW types compare by (:func:`~crdtgossip.crdts._base.order_key`): there
  ``1`` and ``1.0`` differ.
* :class:`DotHashes` keeps, besides the running sum, the sum and count of the live dots
  of each replica per *bucket* of :data:`LEAF_SPAN` consecutive counters. Anti-entropy
  compares these per range of counters to find which dots two replicas disagree on
  without listing them (a small hash tree over counter ranges, 16 children per node).

A sum of hashes is a fingerprint of a set that can be updated one element at a time in
O(1): add the hash of what arrives, subtract the hash of what leaves.
"""

from __future__ import annotations

from collections.abc import Iterable
from hashlib import blake2b, blake2s
from typing import Final, Protocol

# A leaf below the causal kernel (which imports it): the shapes it reads, not the kernel.
Dot = tuple[str, int]


class CausalContext(Protocol):
    """What a digest reads of a causal context (:class:`crdtgossip.crdts.CausalContext`)."""

    vector: dict[str, int]
    cloud: dict[str, set[int]]


__all__ = [
    "DIGEST_BYTES",
    "FANOUT_BITS",
    "LEAF_SHIFT",
    "LEAF_SPAN",
    "DotHashes",
    "digest_of",
    "dot_hash",
    "element_hash",
    "entry_hash",
    "value_hash",
]

DIGEST_BYTES: Final = 16
"""Bytes of a digest: BLAKE2b-128, as the anti-entropy hash tree uses."""

_MODULUS: Final = 1 << 128

LEAF_SHIFT: Final = 6
"""A bucket holds the counters sharing ``counter >> LEAF_SHIFT``: 64 consecutive ones.
Its live dots, listed, cost about 64 x 5 bytes at most, about what one level of 16
child fingerprints costs; finer buckets would cost more memory (one small list per
bucket) for little."""

LEAF_SPAN: Final = 1 << LEAF_SHIFT
"""Counters per bucket."""

FANOUT_BITS: Final = 4
"""Each node of the counter-range tree has ``2**FANOUT_BITS`` = 16 children, as the
anti-entropy tree over keys."""


def dot_hash(replica: str, counter: int) -> int:
    """The 128-bit hash of one dot.

    Args:
        replica: the replica id.
        counter: the dot's counter (below 2**128).

    Returns:
        BLAKE2s-128 of the replica's UTF-8 bytes and the counter in 16 bytes, as an int.
    """
    data = replica.encode("utf-8", "surrogatepass") + counter.to_bytes(16, "big")
    return int.from_bytes(blake2s(data, digest_size=DIGEST_BYTES).digest(), "big")


def _element_bytes(element: object, parts: list[bytes]) -> None:
    """Canonical bytes of an element under Python's equality (see the module doc)."""
    if element is None:
        parts.append(b"N")
    elif type(element) is bool or type(element) is int:
        parts.append(b"I%d;" % element)
    elif type(element) is float:
        if element.is_integer():
            parts.append(b"I%d;" % int(element))  # 1.0 == 1, and -0.0 == 0
        else:
            parts.append(b"F" + element.hex().encode() + b";")
    elif type(element) is str:
        data = element.encode("utf-8", "surrogatepass")
        parts.append(b"S%d:" % len(data) + data)
    elif type(element) is bytes:
        parts.append(b"B%d:" % len(element) + element)
    elif type(element) is tuple:
        parts.append(b"T%d:" % len(element))
        for item in element:
            _element_bytes(item, parts)
    else:
        # Not an element the codec carries; keep it distinct from every one that is.
        shown = repr((type(element).__qualname__, element))
        parts.append(b"?" + shown.encode("utf-8", "replace"))


def _value_bytes(value: object, parts: list[bytes]) -> None:
    """Canonical bytes of a value under ``order_key`` (types kept apart, -0.0 as 0.0)."""
    if type(value) is bool:
        parts.append(b"b1" if value else b"b0")
    elif type(value) is int:
        parts.append(b"i%d;" % value)
    elif type(value) is float:
        parts.append(b"f" + (value + 0.0).hex().encode() + b";")  # -0.0 + 0.0 is 0.0
    elif type(value) is tuple:
        parts.append(b"T%d:" % len(value))
        for item in value:
            _value_bytes(item, parts)
    elif type(value) is list:
        parts.append(b"L%d:" % len(value))
        for item in value:
            _value_bytes(item, parts)
    elif type(value) is dict:
        parts.append(b"D%d:" % len(value))
        for key in sorted(value):
            _element_bytes(key, parts)
            _value_bytes(value[key], parts)
    else:
        _element_bytes(value, parts)


def element_hash(element: object) -> int:
    """The 128-bit hash of an element, equal for elements Python holds equal.

    Args:
        element: None, bool, int, float, str, bytes or a tuple of these.

    Returns:
        BLAKE2s-128 of its canonical bytes, as an int.
    """
    parts: list[bytes] = []
    _element_bytes(element, parts)
    return int.from_bytes(blake2s(b"".join(parts), digest_size=DIGEST_BYTES).digest(), "big")


def value_hash(value: object) -> int:
    """The 128-bit hash of a value, equal for values ``order_key`` holds equal.

    Args:
        value: an element, or lists and str-keyed dicts of values.

    Returns:
        BLAKE2s-128 of its canonical bytes, as an int.
    """
    parts: list[bytes] = []
    _value_bytes(value, parts)
    return int.from_bytes(blake2s(b"".join(parts), digest_size=DIGEST_BYTES).digest(), "big")


def entry_hash(key: object, value: object) -> int:
    """The 128-bit hash of a map entry: ``key`` as an element, ``value`` as a value.

    Args:
        key: the entry's key (hashed under Python's equality).
        value: what the entry holds (hashed under ``order_key``).

    Returns:
        BLAKE2s-128 of their canonical bytes, as an int.
    """
    parts: list[bytes] = []
    _element_bytes(key, parts)
    _value_bytes(value, parts)
    return int.from_bytes(blake2s(b"".join(parts), digest_size=DIGEST_BYTES).digest(), "big")


def _context_bytes(context: CausalContext) -> bytes:
    """Canonical bytes of a causal context (compacted, so equal sets give equal bytes)."""
    parts: list[bytes] = []
    for replica in sorted(context.vector.keys() | context.cloud.keys()):
        name = replica.encode("utf-8", "surrogatepass")
        cloud = sorted(context.cloud.get(replica, ()))
        parts.append(b"%d:" % len(name) + name + b"%d;" % context.vector.get(replica, 0))
        parts.append(b"%d:" % len(cloud) + b",".join(b"%d" % counter for counter in cloud))
    return b";".join(parts)


def digest_of(tag: bytes, total: int, context: CausalContext | None = None) -> bytes:
    """The digest of a state: its type tag, its running sum and its causal context.

    Args:
        tag: names the type (and for a map its nested types), so states of different
            types never share a digest.
        total: the running sum of the state's hashes (taken modulo 2**128).
        context: the causal context, for causal types.

    Returns:
        :data:`DIGEST_BYTES` bytes.
    """
    hasher = blake2b(digest_size=DIGEST_BYTES)
    hasher.update(b"%d:" % len(tag) + tag)
    hasher.update((total % _MODULUS).to_bytes(DIGEST_BYTES, "big"))
    if context is not None:
        hasher.update(_context_bytes(context))
    return hasher.digest()


class DotHashes:
    """The running sum of the hashes of a set of dots, and the same per bucket.

    ``buckets[replica][counter >> LEAF_SHIFT]`` is ``[sum, count]`` of the live dots of
    that replica in that bucket; empty buckets and replicas are not stored. Sums are
    exact (not reduced), so an emptied bucket sums to exactly 0.
    """

    __slots__ = ("buckets", "total")

    def __init__(self) -> None:
        self.total = 0
        self.buckets: dict[str, dict[int, list[int]]] = {}

    @classmethod
    def of(cls, dots: Iterable[Dot]) -> DotHashes:
        """The table of some distinct dots."""
        table = cls()
        for replica, counter in dots:
            table.add(replica, counter)
        return table

    def add(self, replica: str, counter: int) -> None:
        """Count one dot in (it must not be in already)."""
        data = replica.encode("utf-8", "surrogatepass") + counter.to_bytes(16, "big")
        value = int.from_bytes(blake2s(data, digest_size=DIGEST_BYTES).digest(), "big")
        self.total += value
        table = self.buckets.get(replica)
        if table is None:
            self.buckets[replica] = {counter >> LEAF_SHIFT: [value, 1]}
            return
        cell = table.get(counter >> LEAF_SHIFT)
        if cell is None:
            table[counter >> LEAF_SHIFT] = [value, 1]
        else:
            cell[0] += value
            cell[1] += 1

    def discard(self, replica: str, counter: int) -> None:
        """Count one dot out (it must be in)."""
        data = replica.encode("utf-8", "surrogatepass") + counter.to_bytes(16, "big")
        value = int.from_bytes(blake2s(data, digest_size=DIGEST_BYTES).digest(), "big")
        self.total -= value
        table = self.buckets[replica]
        bucket = counter >> LEAF_SHIFT
        cell = table[bucket]
        if cell[1] == 1:
            del table[bucket]
            if not table:
                del self.buckets[replica]
        else:
            cell[0] -= value
            cell[1] -= 1

    def copy(self) -> DotHashes:
        """An independent copy."""
        fresh = DotHashes()
        fresh.total = self.total
        fresh.buckets = {
            replica: {bucket: list(cell) for bucket, cell in table.items()}
            for replica, table in self.buckets.items()
        }
        return fresh

    def children(self, replica: str, shift: int, index: int) -> list[list[int]]:
        """``[count, sum]`` of each of the 16 children of a counter-range node.

        The node at ``shift`` s and ``index`` i covers the counters c with
        ``c >> s == i``; its children have shift ``s - FANOUT_BITS``.

        Args:
            replica: the replica whose dots are counted.
            shift: the node's shift, above :data:`LEAF_SHIFT`.
            index: the node's index.

        Returns:
            16 ``[count, sum]`` pairs.
        """
        out = [[0, 0] for _ in range(1 << FANOUT_BITS)]
        child_bits = shift - FANOUT_BITS - LEAF_SHIFT
        for bucket, cell in self._cells(replica, shift, index):
            child = out[(bucket >> child_bits) & ((1 << FANOUT_BITS) - 1)]
            child[0] += cell[1]
            child[1] += cell[0]
        return out

    def count(self, replica: str, shift: int, index: int) -> int:
        """How many live dots of ``replica`` a counter-range node covers."""
        return sum(cell[1] for _, cell in self._cells(replica, shift, index))

    def buckets_in(self, replica: str, shift: int, index: int) -> list[int]:
        """The non-empty buckets a counter-range node covers, ascending."""
        return sorted(bucket for bucket, _ in self._cells(replica, shift, index))

    def _cells(self, replica: str, shift: int, index: int) -> list[tuple[int, list[int]]]:
        table = self.buckets.get(replica)
        if not table:
            return []
        span_bits = max(shift - LEAF_SHIFT, 0)
        first = index << span_bits
        if span_bits < 62 and (1 << span_bits) <= len(table):
            get = table.get
            found = [(bucket, get(bucket)) for bucket in range(first, first + (1 << span_bits))]
            return [(bucket, cell) for bucket, cell in found if cell is not None]
        return [(bucket, cell) for bucket, cell in table.items() if bucket >> span_bits == index]

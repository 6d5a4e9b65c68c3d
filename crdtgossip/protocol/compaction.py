"""Giving back the memory of per-key tables once many keys have gone.

A Python dict never shrinks when items are deleted: a table that held 10,000 keys keeps
its 10,000 slots (about 200 KiB) when all of them are deleted, until it grows again.
The engine keeps several tables per key (states, hash-tree entries, size estimates,
last-write stamps); after a mass expiry or delete it rebuilds them at their live size
(:func:`shrink`), once the keys dropped since the last rebuild outnumber the keys
left, so the rebuilds cost O(1) a dropped key.
"""

from __future__ import annotations

from typing import Final, TypeVar

__all__ = ["MIN_DROPS", "shrink"]

K = TypeVar("K")
V = TypeVar("V")

MIN_DROPS: Final = 1024
"""Dropped keys before a rebuild is considered at all (small tables cost little)."""


def shrink(table: dict[K, V]) -> None:
    """Rebuild ``table`` in place at the size of what it holds (same order)."""
    items = list(table.items())
    table.clear()  # frees the slots; update allocates for what is live
    table.update(items)

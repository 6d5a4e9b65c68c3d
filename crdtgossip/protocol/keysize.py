"""The size of each key's state, estimated without encoding it: the per-key size limit.

``GossipConfig.max_key_bytes`` bounds the encoding of one key's state. Encoding a large
state to learn its size would cost what the limit is there to avoid, so the size is an
*estimate*: the last measured size of the key (a whole encoding, or the bytes of a
transfer that cut the whole state into parts) plus the encoding of every change merged
into it since (local deltas, deltas, states, parts and repair patches). It never
undercounts a key it has measured, and overcounts changes that overwrite (a counter's
increments, an LWW value set again). When the estimate reaches the limit the key is
measured exactly, with one encoding, at most once per :data:`REMEASURE_FRACTION` of the
limit of growth; between measurements a write to a key at the limit is refused. A key
restored from storage counts from zero until its first measurement.
"""

from __future__ import annotations

import contextlib
from typing import Final

from crdtgossip.codec import encode
from crdtgossip.crdts import CRDT
from crdtgossip.errors import EncodeError, OperationError
from crdtgossip.protocol.compaction import shrink

__all__ = ["REMEASURE_FRACTION", "KeySizes"]

REMEASURE_FRACTION: Final = 16
"""A key at the limit is measured again only after 1/16 of the limit of growth: writes
near the limit cost one encoding per that many bytes, never one per write."""


class KeySizes:
    """Estimated encoded size per key, and the check of writes against the limit.

    Args:
        max_key_bytes: ``GossipConfig.max_key_bytes``.
    """

    def __init__(self, max_key_bytes: int) -> None:
        self.max_key_bytes = max_key_bytes
        self._estimate: dict[str, int] = {}
        self._since_measure: dict[str, int] = {}

    def estimate(self, key: str) -> int:
        """The estimated encoded size of ``key``'s state in bytes (0 when unknown)."""
        return self._estimate.get(key, 0)

    def grow(self, key: str, size: int) -> None:
        """Count a change of ``size`` encoded bytes merged into ``key``."""
        self._estimate[key] = self._estimate.get(key, 0) + size
        self._since_measure[key] = self._since_measure.get(key, 0) + size

    def measured(self, key: str, size: int) -> None:
        """Record an exact (or upper-bound) size of ``key``'s state."""
        self._estimate[key] = size
        self._since_measure[key] = 0

    def compact(self) -> None:
        """Give back the memory of forgotten keys (see :mod:`~.compaction`)."""
        shrink(self._estimate)
        shrink(self._since_measure)

    def forget(self, key: str) -> None:
        """Drop what is known of ``key`` (its state went away)."""
        self._estimate.pop(key, None)
        self._since_measure.pop(key, None)

    def check(self, key: str, state: CRDT | None) -> None:
        """Refuse a write to ``key`` if its state has reached the limit.

        Args:
            key: the data key.
            state: its current state (None when absent).

        Raises:
            OperationError: the state's size has reached ``max_key_bytes``; nothing
                was changed.
        """
        if state is None or self.estimate(key) < self.max_key_bytes:
            return
        if self._since_measure.get(key, 0) * REMEASURE_FRACTION >= self.max_key_bytes:
            # A state that cannot be encoded keeps its estimate; the write says why.
            with contextlib.suppress(EncodeError):
                self.measured(key, len(encode(state)))
            if self.estimate(key) < self.max_key_bytes:
                return
        raise OperationError(
            f"key {key!r:.80} holds about {self.estimate(key)} bytes, the limit of "
            f"max_key_bytes ({self.max_key_bytes}); nothing changed. Split the data "
            "over several keys, or raise GossipConfig.max_key_bytes"
        )

"""One key of an ORMap: its presence tags and its nested value.

Its own module so that the parts of ORMap kept apart (:mod:`crdtgossip.crdts.ormap`,
:mod:`crdtgossip.crdts._mappruning`, the codec) share it without importing each other.
"""

from __future__ import annotations

from typing import Any

from crdtgossip.crdts._causal import CausalCRDT, Dot

__all__ = ["MapEntry"]


class MapEntry:
    """One key: its presence tags and its nested value.

    ``tags`` maps each live presence dot to the contribution made under it (non-causal
    nested types) or None (causal nested types, whose state is ``nested``).
    """

    __slots__ = ("nested", "tags")

    def __init__(self, tags: dict[Dot, Any], nested: CausalCRDT | None) -> None:
        self.tags = tags
        self.nested = nested

"""Shape checks of decoded structures, used by every type's reader."""

from __future__ import annotations

import itertools
from typing import Any

from crdtgossip._codec.limits import Wire
from crdtgossip.errors import DecodeError


def _array(wire: Wire, what: str, length: int | None = None) -> list[Any]:
    if type(wire) is not list:
        raise DecodeError(f"{what}: expected an array")
    if length is not None and len(wire) != length:
        raise DecodeError(f"{what}: expected {length} items, got {len(wire)}")
    return wire


def _replica(wire: Wire) -> str:
    if type(wire) is not str or not wire:
        raise DecodeError("a replica id must be a non-empty str")
    return wire


def _positive(wire: Wire, what: str) -> int:
    if type(wire) is not int or wire < 1:
        raise DecodeError(f"{what} must be a positive integer, got {wire!r:.40}")
    return wire


def _non_negative(wire: Wire, what: str) -> int:
    if type(wire) is not int or wire < 0:
        raise DecodeError(f"{what} must be a non-negative integer, got {wire!r:.40}")
    return wire


def _ascending(values: list[Any], what: str) -> None:
    for before, after in itertools.pairwise(values):
        if not before < after:
            raise DecodeError(f"{what} must be sorted and unique")

"""A user-defined CRDT, as a user of the library would write and register it.

``MaxRegister`` keeps the largest int written. The tests of the registration API, of
the law checker on registered types and of a registered type on a real cluster share
it; :func:`registered` registers it for one test and forgets it afterwards.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Self

from crdtgossip import Body, TypeCodec, register_type, unregister_type

#: The tag the tests register MaxRegister under: the first of the users' range.
MAX_REGISTER_TAG = 1024


class MaxRegister:
    """The largest int written wins; the delta of a write is the new maximum."""

    def __init__(self, value: int = 0) -> None:
        self._value = value

    @property
    def value(self) -> int:
        return self._value

    def write(self, n: int) -> Self:
        self._value = max(self._value, n)
        return type(self)(self._value)

    def merge(self, other: Self) -> None:
        self._value = max(self._value, other._value)

    def copy(self) -> Self:
        return type(self)(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, MaxRegister) and self._value == other._value

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"MaxRegister({self._value})"


def decode_max_register(body: Body, version: int) -> MaxRegister:
    """Body version 1: the value itself, a non-negative int."""
    return MaxRegister(body.as_int(minimum=0))


@contextmanager
def registered() -> Iterator[TypeCodec[MaxRegister]]:
    """MaxRegister registered under :data:`MAX_REGISTER_TAG` for the ``with`` block."""
    registration = register_type(
        MaxRegister,
        tag=MAX_REGISTER_TAG,
        encode_body=lambda register: register.value,
        decode_body=decode_max_register,
    )
    try:
        yield registration
    finally:
        unregister_type(MaxRegister)

"""Reading a registered type's body: checked accessors, and the errors they turn into.

A user's ``decode_body`` never sees raw msgpack: it gets a :class:`Body`, the decoded
body wrapped with accessors that each check one kind and range and raise
:class:`~crdtgossip.DecodeError` otherwise. The bytes were unpacked under the same
:class:`~crdtgossip.codec.Limits` as every built-in type (total size, lengths, string
sizes, nesting depth), so nothing a body holds is larger than the input allowed.
"""

from __future__ import annotations

from typing import Any

from crdtgossip._codec.checks import _check_element, _check_value
from crdtgossip._codec.limits import INT_MAX, INT_MIN, Limits, Wire
from crdtgossip._codec.shapes import _array, _replica
from crdtgossip.errors import DecodeError

__all__ = ["Body"]


class Body:
    """A registered type's decoded body, read through accessors that check it.

    Every accessor raises :class:`~crdtgossip.DecodeError` when the part it reads is of
    another kind or out of range, so a ``decode_body`` written with them refuses hostile
    input the way the built-in types do. ``what`` names the part in error messages.

    Example:
        >>> from crdtgossip import Body
        >>> Body([3, "x"], what="MaxRegister").as_list(2)[0].as_int(minimum=0)
        3
    """

    __slots__ = ("_limits", "_what", "_wire")

    def __init__(self, wire: Wire, *, what: str = "body", limits: Limits | None = None) -> None:
        self._wire = wire
        self._what = what
        self._limits = limits if limits is not None else Limits()

    def _refuse(self, expected: str) -> DecodeError:
        return DecodeError(f"{self._what}: expected {expected}, got {self._wire!r:.40}")

    def _part(self, wire: Wire, what: str) -> Body:
        return Body(wire, what=f"{self._what}{what}", limits=self._limits)

    @property
    def raw(self) -> Wire:
        """The body as decoded (msgpack-native values, tuples, registered types)."""
        return self._wire

    def is_none(self) -> bool:
        """Whether the body is None (msgpack nil)."""
        return self._wire is None

    def as_int(self, minimum: int = INT_MIN, maximum: int = INT_MAX) -> int:
        """An int (not a bool) from ``minimum`` to ``maximum``."""
        if type(self._wire) is not int or not minimum <= self._wire <= maximum:
            raise self._refuse(f"an int from {minimum} to {maximum}")
        return self._wire

    def as_float(self) -> float:
        """A float (not NaN, which the reader refuses everywhere)."""
        if type(self._wire) is not float or self._wire != self._wire:
            raise self._refuse("a float")
        return self._wire

    def as_bool(self) -> bool:
        """A bool."""
        if type(self._wire) is not bool:
            raise self._refuse("a bool")
        return self._wire

    def as_str(self, *, allow_empty: bool = True) -> str:
        """A str (non-empty unless ``allow_empty``)."""
        if type(self._wire) is not str or (not allow_empty and not self._wire):
            raise self._refuse("a str" if allow_empty else "a non-empty str")
        return self._wire

    def as_bytes(self) -> bytes:
        """A bytes value."""
        if type(self._wire) is not bytes:
            raise self._refuse("bytes")
        return self._wire

    def as_replica(self) -> str:
        """A replica id: a non-empty str."""
        return _replica(self._wire)

    def as_list(self, length: int | None = None) -> list[Body]:
        """An array (of exactly ``length`` items when given), each item a Body."""
        items = _array(self._wire, self._what, length)
        return [self._part(item, f"[{index}]") for index, item in enumerate(items)]

    def as_dict(self) -> dict[str, Body]:
        """A str-keyed map, each value a Body."""
        if type(self._wire) is not dict or any(type(key) is not str for key in self._wire):
            raise self._refuse("a map with str keys")
        return {key: self._part(item, f"[{key!r}]") for key, item in self._wire.items()}

    def as_value(self) -> Any:
        """Any value the built-in registers hold (see :data:`crdtgossip.crdts.Value`)."""
        return _check_value(self._wire, self._limits, hashable=False)

    def as_element(self) -> Any:
        """A set element or map key: a hashable value (None, bool, int, float, str,
        bytes, tuples of these)."""
        return _check_element(self._wire, self._limits, keyed=False)

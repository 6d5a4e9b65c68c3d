"""Reading a registered type's body: checked accessors, and the errors they turn into.

A user's ``decode_body`` never sees raw msgpack: it gets a :class:`Body`, the decoded
body wrapped with accessors that each check one kind and range and raise
:class:`~crdtgossip.DecodeError` otherwise. The bytes were unpacked under the same
:class:`~crdtgossip.codec.Limits` as every built-in type (total size, lengths, string
sizes, nesting depth), so nothing a body holds is larger than the input allowed.
"""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from crdtgossip._codec.limits import INT_MAX, INT_MIN, MAX_BODY_VERSION, Limits, Wire
from crdtgossip._codec.reader import install_user_value_reader
from crdtgossip._codec.registry import TypeCodec, registration_for_tag
from crdtgossip._codec.shapes import _array, _replica
from crdtgossip._codec.values import _check_element, _check_value
from crdtgossip.errors import DecodeError

__all__ = ["Body"]

#: The names of the registered types read from an older body version during the decode
#: under way (None outside of one): their re-encoding is in the current version, so the
#: decoder cannot ask for the input's exact bytes back.
OLDER_BODIES: ContextVar[list[str] | None] = ContextVar("crdtgossip_older_bodies", default=None)


class Body:
    """A registered type's decoded body, read through accessors that check it.

    Every accessor raises :class:`~crdtgossip.DecodeError` when the part it reads is of
    another kind or out of range, so a ``decode_body`` written with them refuses hostile
    input the way the built-in types do. ``what`` names the part in error messages.

    Example:
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


def read_body(registration: TypeCodec[Any], version: Wire, body: Wire, limits: Limits) -> Any:
    """Run a type's ``decode_body``; only DecodeError escapes, and only its own type returns.

    Raises:
        DecodeError: the version is not one the type reads, ``decode_body`` raised, or
            returned something other than an instance of the registered class.
    """
    name = registration.cls.__qualname__
    if type(version) is not int or not 1 <= version <= registration.version:
        shown = version if type(version) is int and version <= MAX_BODY_VERSION else "?"
        raise DecodeError(
            f"{name} body version {shown!s:.20} is not one this program reads (1 to "
            f"{registration.version}): written by a newer version of the type"
        )
    try:
        state = registration.decode_body(Body(body, what=name, limits=limits), version)
    except DecodeError:
        raise
    except Exception as exc:
        # A user's decoder that trips over hostile input must not take a node down.
        raise DecodeError(f"{name} body refused: {type(exc).__name__}: {exc!s:.200}") from None
    if type(state) is not registration.cls:
        raise DecodeError(f"decode_body of {name} returned a {type(state).__name__}")
    if version < registration.version:
        older = OLDER_BODIES.get()
        if older is not None:
            older.append(name)
    return state


def read_versioned_body(registration: TypeCodec[Any], wire: Wire, limits: Limits) -> Any:
    """A registered type from its ``[version, body]`` (top level, ORMap contributions)."""
    version, body = _array(wire, f"{registration.cls.__qualname__} encoding", 2)
    return read_body(registration, version, body, limits)


def _read_user_value(wire: Wire, limits: Limits) -> object:
    tag, version, body = _array(wire, "a registered type in a value", 3)
    registration = registration_for_tag(tag)
    if registration is None:
        raise DecodeError(f"a value holds a type of unknown tag {tag!r:.20}: not registered")
    return read_body(registration, version, body, limits)


install_user_value_reader(_read_user_value)

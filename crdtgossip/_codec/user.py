"""Reading registered types: a body's version, its ``decode_body``, and what it may raise."""

from __future__ import annotations

from contextvars import ContextVar
from typing import Any

from crdtgossip._codec.body import Body
from crdtgossip._codec.limits import MAX_BODY_VERSION, Limits, Wire
from crdtgossip._codec.reader import install_user_value_reader
from crdtgossip._codec.registry import TypeCodec, registration_for_tag
from crdtgossip._codec.shapes import _array
from crdtgossip.errors import DecodeError

#: The names of the registered types read from an older body version during the decode
#: under way (None outside of one): their re-encoding is in the current version, so the
#: decoder cannot ask for the input's exact bytes back.
OLDER_BODIES: ContextVar[list[str] | None] = ContextVar("crdtgossip_older_bodies", default=None)


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

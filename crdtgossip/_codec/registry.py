"""Users' own data types: the registration table the codec consults.

A registered type travels like a built-in one. At the top level its encoding is
``[FORMAT_VERSION, tag, [version, body]]``; nested in an ORMap its signature is ``[tag]``
and each presence dot carries ``[version, body]``; inside a value (an LWWMap or register
value) it is the msgpack extension :data:`USER_VALUE_EXT_CODE` holding
``[tag, version, body]``. ``body`` is whatever the type's ``encode_body`` returns: a
value of the kinds :data:`crdtgossip.crdts.Value` allows (registered types included).

Tags below :data:`USER_TAG_MIN` are crdtgossip's own, now and in every later format; the
range from :data:`USER_TAG_MIN` to :data:`USER_TAG_MAX` is the users', never taken by a
built-in type.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from crdtgossip._codec.body import Body
from crdtgossip._codec.limits import MAX_BODY_VERSION, USER_TAG_MAX, USER_TAG_MIN
from crdtgossip._codec.table import REGISTERED_CLASSES
from crdtgossip.crdts import (
    CRDT,
    EWFlag,
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
)
from crdtgossip.crdts._causal import CausalCRDT
from crdtgossip.errors import ConfigError

T = TypeVar("T")


@dataclass(frozen=True)
class TypeCodec(Generic[T]):
    """How one user type is written and read back; made by :func:`register_type`.

    Attributes:
        cls: the type; ``cls()`` is its empty state.
        tag: its type tag, in the users' range.
        version: the body version written; bodies of versions 1 to ``version`` are read.
        encode_body: ``state -> body``, a value made of None, bool, int, float, str,
            bytes, tuples, lists, str-keyed dicts and registered types. Equal states
            must give equal bodies (the codec writes dicts with sorted keys, but keeps
            list order: sort what has no order of its own).
        decode_body: ``(body, version) -> state``; ``body`` is a :class:`Body` whose
            accessors check each part.
    """

    cls: type[T]
    tag: int
    version: int
    encode_body: Callable[[T], object]
    decode_body: Callable[[Body, int], T]


_BY_CLASS: dict[type[Any], TypeCodec[Any]] = {}
_BY_TAG: dict[int, TypeCodec[Any]] = {}
_LOCK = threading.Lock()


_BUILTIN_TYPES = (GCounter, PNCounter, GSet, ORSet, EWFlag, LWWRegister, MVRegister, LWWMap, ORMap)


def _is_builtin(cls: type[Any]) -> bool:
    return issubclass(cls, _BUILTIN_TYPES)


def _check_registration(cls: object, tag: object, version: object) -> type[Any]:
    if not isinstance(cls, type):
        raise ConfigError(f"register_type needs a class, not {cls!r:.60}")
    if _is_builtin(cls):
        raise ConfigError(
            f"{cls.__qualname__} is, or derives from, a crdtgossip type: those have their "
            "own tags; register a class of your own"
        )
    if issubclass(cls, CausalCRDT):
        raise ConfigError(f"{cls.__qualname__}: causal types cannot be registered")
    if type(tag) is not int or not USER_TAG_MIN <= tag <= USER_TAG_MAX:
        raise ConfigError(
            f"tag {tag!r:.30} of {cls.__qualname__} is outside the users' range "
            f"{USER_TAG_MIN} to {USER_TAG_MAX} (tags below {USER_TAG_MIN} are crdtgossip's)"
        )
    if type(version) is not int or not 1 <= version <= MAX_BODY_VERSION:
        raise ConfigError(
            f"version {version!r:.30} of {cls.__qualname__} must be an int from 1 to "
            f"{MAX_BODY_VERSION}"
        )
    try:
        empty = cls()
    except Exception as exc:
        raise ConfigError(
            f"{cls.__qualname__}() must make the empty state (ORMap and Node call it), "
            f"but raised {type(exc).__name__}: {exc}"
        ) from exc
    if not isinstance(empty, CRDT):
        raise ConfigError(f"{cls.__qualname__} lacks merge, copy or value: not a CRDT")
    return cls


def register_type(
    cls: type[T],
    *,
    tag: int,
    version: int = 1,
    encode_body: Callable[[T], object],
    decode_body: Callable[[Body, int], T],
) -> TypeCodec[T]:
    """Teach the codec a data type of your own, so that it gossips, persists and nests.

    Once registered, :func:`crdtgossip.encode` and :func:`crdtgossip.decode` handle the
    type at the top level, as the value type of an ``ORMap`` and inside values (an
    ``LWWMap`` or register value), so ``Node.update`` and ``Node.get`` take it. Decoding
    applies the built-in types' limits and strictness: ``decode_body`` gets a
    :class:`Body` whose accessors refuse anything of another kind or range, whatever
    ``decode_body`` raises becomes a :class:`~crdtgossip.DecodeError`, and bytes that
    ``encode_body`` would not have written (``encode(decode(data)) != data``) are refused.

    Args:
        cls: the type; ``cls()`` must make its empty state. Not a crdtgossip type, nor a
            causal one (those share the causal context of the map holding them).
        tag: the type's tag, fixed forever, from :data:`USER_TAG_MIN` to
            :data:`USER_TAG_MAX`.
        version: the body version ``encode_body`` writes; raise it when the body's
            layout changes, and keep reading the older ones in ``decode_body``.
        encode_body: ``state -> body`` (see :class:`TypeCodec`).
        decode_body: ``(body, version) -> state`` (see :class:`TypeCodec`).

    Returns:
        The registration.

    Raises:
        ConfigError: the class or the tag is registered already, the tag is outside the
            users' range, the version out of range, or the class not a CRDT made by
            ``cls()``.
    """
    checked = _check_registration(cls, tag, version)
    if not callable(encode_body) or not callable(decode_body):
        raise ConfigError("encode_body and decode_body must be callables")
    registration: TypeCodec[T] = TypeCodec(checked, tag, version, encode_body, decode_body)
    with _LOCK:
        if checked in _BY_CLASS:
            raise ConfigError(
                f"{checked.__qualname__} is registered already (tag {_BY_CLASS[checked].tag}); "
                "register each type once, at import time"
            )
        if tag in _BY_TAG:
            raise ConfigError(
                f"tag {tag} is taken by {_BY_TAG[tag].cls.__qualname__}: every type needs "
                "a tag of its own"
            )
        _BY_CLASS[checked] = registration
        _BY_TAG[tag] = registration
        REGISTERED_CLASSES.add(checked)
    return registration


def unregister_type(cls: type[Any]) -> None:
    """Forget a registration (for tests that register types of their own).

    Raises:
        ConfigError: ``cls`` is not registered.
    """
    with _LOCK:
        registration = _BY_CLASS.pop(cls, None)
        if registration is None:
            raise ConfigError(f"{getattr(cls, '__qualname__', cls)!r} is not registered")
        del _BY_TAG[registration.tag]
        REGISTERED_CLASSES.discard(cls)


def registration_of(cls: type[Any]) -> TypeCodec[Any] | None:
    """The registration of ``cls``, or None."""
    return _BY_CLASS.get(cls)


def registration_for_tag(tag: object) -> TypeCodec[Any] | None:
    """The registration holding ``tag``, or None."""
    return _BY_TAG.get(tag) if type(tag) is int else None

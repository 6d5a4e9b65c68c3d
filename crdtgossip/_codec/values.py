"""Elements and values: their canonical msgpack form, and the checks of decoded ones."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import msgpack

from crdtgossip._codec.limits import (
    DEFAULT_LIMITS,
    INT_MAX,
    INT_MIN,
    TUPLE_EXT_CODE,
    Limits,
    Wire,
)
from crdtgossip._codec.reader import _guarded
from crdtgossip.crdts._values import scalar_problem
from crdtgossip.errors import DecodeError, EncodeError


def _canonical(value: object, depth: int = 0) -> Wire:
    """The msgpack-ready form of a value: tuples as extensions, dict keys sorted."""
    kind = type(value)
    if kind is bool or value is None:
        return value
    if kind is str or kind is bytes or kind is int or kind is float:
        # The mutators' rules (crdts/_values.py): 64-bit ints, no NaN, UTF-8 strings.
        problem = scalar_problem(value)
        if problem is not None:
            raise EncodeError(problem)
        return value
    if depth >= DEFAULT_LIMITS.max_depth:
        raise EncodeError(f"value nested deeper than {DEFAULT_LIMITS.max_depth} levels")
    if kind is tuple:
        items = [_canonical(item, depth + 1) for item in value]  # type: ignore[attr-defined]
        return msgpack.ExtType(TUPLE_EXT_CODE, msgpack.packb(items, use_bin_type=True))
    if kind is list:
        return [_canonical(item, depth + 1) for item in value]  # type: ignore[attr-defined]
    if kind is dict:
        mapping: dict[Any, Any] = value  # type: ignore[assignment]
        for key in mapping:
            if type(key) is not str:
                raise EncodeError(f"dict values need str keys, not {key!r}")
        return {key: _canonical(mapping[key], depth + 1) for key in sorted(mapping)}
    raise EncodeError(
        f"cannot encode {kind.__name__} {value!r:.60}: elements and values are None, bool, "
        "int, float, str, bytes, tuples of these, and lists and str-keyed dicts of values"
    )


def _pack(wire: Wire) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]


def _sorted_by_encoding(items: Iterable[Wire]) -> list[Wire]:
    """Canonical order for unordered collections: by each item's own encoding."""
    return [item for _, item in sorted((_pack(item), item) for item in items)]


#: What msgpack raises for what it cannot pack: a str with a lone surrogate (not UTF-8,
#: a UnicodeEncodeError), an integer outside its 64 bits (a counter or a timestamp:
#: OverflowError), an object too large or of an unknown type. Each becomes EncodeError.
_PACKING_ERRORS = (ValueError, TypeError, OverflowError)


def _encode_error(exc: Exception) -> EncodeError:
    """The EncodeError saying why msgpack refused to pack a state or a value."""
    if isinstance(exc, UnicodeEncodeError):
        text = exc.object[max(0, exc.start - 20) : exc.end + 20]
        return EncodeError(
            f"str {text!r} holds a lone surrogate at index {exc.start}: it is not valid "
            "UTF-8 text, so it cannot travel; encode it with errors='surrogatepass' and "
            "store the bytes, or clean it first"
        )
    if isinstance(exc, OverflowError):
        return EncodeError(
            "an integer (a counter, a timestamp or a dot) does not fit in msgpack's "
            f"range {INT_MIN} to {INT_MAX}"
        )
    return EncodeError(f"cannot encode: {type(exc).__name__}: {exc!s:.200}")


def encode_value(value: object) -> bytes:
    """Encode a single element or value canonically.

    Raises:
        EncodeError: the value is not of a supported kind (see :data:`crdtgossip.crdts.Value`),
            holds a str that is not valid UTF-8 (a lone surrogate) or an integer outside
            msgpack's 64 bits.
    """
    try:
        return _pack(_canonical(value))
    except EncodeError:  # a TypeError, itself: not one of msgpack's
        raise
    except _PACKING_ERRORS as exc:
        raise _encode_error(exc) from exc


def _check_value(value: Wire, limits: Limits, *, hashable: bool, depth: int = 0) -> Wire:
    """Check a decoded value is of an allowed kind, within the depth limit."""
    kind = type(value)
    if kind is str or kind is bytes or kind is bool or kind is int or value is None:
        return value
    if kind is float:
        if math.isnan(value):
            raise DecodeError("NaN is not a valid element or value")
        return value
    if depth >= limits.max_depth:
        raise DecodeError(f"value nested deeper than {limits.max_depth} levels")
    if kind is tuple:
        for item in value:
            _check_value(item, limits, hashable=hashable, depth=depth + 1)
        return value
    if hashable:
        raise DecodeError(f"an element or key must be hashable, not a {kind.__name__}")
    if kind is list:
        for item in value:
            _check_value(item, limits, hashable=False, depth=depth + 1)
        return value
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise DecodeError("dict values need str keys")
            _check_value(item, limits, hashable=False, depth=depth + 1)
        return value
    raise DecodeError(f"unexpected {kind.__name__} in a value")


def decode_value(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode a value written by :func:`encode_value`.

    Raises:
        DecodeError: for any malformed, oversized or hostile input.
    """
    return _guarded(data, limits, lambda wire, _: _check_value(wire, limits, hashable=False))

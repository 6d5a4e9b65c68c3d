"""Elements and values: their canonical msgpack form, and the checks of decoded ones."""

from __future__ import annotations

from collections.abc import Iterable
from contextvars import ContextVar
from typing import Any

import msgpack

from crdtgossip._codec.checks import _element_problem
from crdtgossip._codec.limits import (
    DEFAULT_LIMITS,
    INT_MAX,
    INT_MIN,
    TUPLE_EXT_CODE,
    USER_VALUE_EXT_CODE,
    Wire,
)
from crdtgossip._codec.registry import registration_of
from crdtgossip.crdts._values import scalar_problem
from crdtgossip.errors import EncodeError

#: The deepest nesting the encoder writes: the default limits' depth, so that it never
#: writes what a default decoder refuses; raised while a decoder given deeper limits
#: re-encodes what it read (strict decoding).
ENCODE_MAX_DEPTH: ContextVar[int] = ContextVar(
    "crdtgossip_encode_max_depth", default=DEFAULT_LIMITS.max_depth
)


def _encode_depth_exceeded(depth: int) -> int | None:
    """The depth limit when ``depth`` passes it, else None (looked up past the default)."""
    if depth < DEFAULT_LIMITS.max_depth:
        return None
    limit = ENCODE_MAX_DEPTH.get()
    return limit if depth >= limit else None


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
    limit = _encode_depth_exceeded(depth)
    if limit is not None:
        raise EncodeError(f"value nested deeper than {limit} levels")
    registration = registration_of(kind)
    if registration is not None:
        body = _canonical(_user_body(registration.encode_body, value), depth + 1)
        payload = _pack([registration.tag, registration.version, body])
        return msgpack.ExtType(USER_VALUE_EXT_CODE, payload)
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


def _user_body(encode_body: Any, state: object) -> Wire:
    """``encode_body(state)``: what a user's encoder raises becomes an EncodeError."""
    try:
        return encode_body(state)
    except EncodeError:
        raise
    except Exception as exc:
        raise EncodeError(
            f"encode_body of {type(state).__name__} raised {type(exc).__name__}: {exc!s:.200}"
        ) from exc


def _canonical_element(value: object, *, keyed: bool) -> Wire:
    """:func:`_canonical` of a set element (``keyed``: a G-Set element or map key)."""
    wire = _canonical(value)  # first: it checks the nesting depth
    problem = _element_problem(value, keyed=keyed)
    if problem is not None:
        raise EncodeError(problem)
    return wire


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

"""What an element, a key, a value or a replica id may be: exactly what the codec encodes.

Every mutator checks its arguments here *before* it changes anything, so a state built
through the API can always be encoded, and its encoding decoded again: a write that the
codec could not carry is refused at the call, with an :class:`~crdtgossip.OperationError`
that says why, instead of failing later (in a node, after the state changed and while
its delta is encoded).

The rules (the codec, :mod:`crdtgossip.codec`, checks the same ones with the same
function, :func:`value_problem`):

* scalars of these exact types (subclasses are refused, as the codec refuses them):
  None, bool, int in msgpack's range ``-2**63 .. 2**64 - 1``, float except NaN, str that
  UTF-8 can encode (a lone surrogate cannot be), bytes;
* a str or bytes of at most :data:`MAX_STR_BYTES` bytes (UTF-8 for a str);
* tuples of these, with at most :data:`MAX_COLLECTION_LEN` items, whose packed items fit
  in :data:`MAX_STR_BYTES` (a tuple travels as one msgpack extension, whose payload the
  decoder bounds like a string);
* values (not elements or keys) may also be lists and dicts with str keys;
* containers nested at most :data:`MAX_DEPTH` levels deep.

The checks cost O(size of the value); the common elements (a short ASCII str, an int in
range, bytes) take a fast path of a few type tests.
"""

from __future__ import annotations

import math
from typing import TypeVar, cast

from crdtgossip.errors import OperationError

__all__ = [
    "INT_MAX",
    "INT_MIN",
    "MAX_COLLECTION_LEN",
    "MAX_DEPTH",
    "MAX_STR_BYTES",
    "check_element",
    "check_value",
    "scalar_problem",
    "value_problem",
]

#: The largest and smallest integers msgpack carries (uint64 and int64); also the bound
#: of every counter, dot counter and timestamp, which travel as msgpack integers.
INT_MAX = 2**64 - 1
INT_MIN = -(2**63)

#: The longest str (in UTF-8 bytes) or bytes, and the largest packed tuple: the
#: decoder's ``Limits.max_str_len`` default (1 MiB), so what is accepted decodes again.
MAX_STR_BYTES = 1024 * 1024

#: The most items in one tuple, list or dict: the decoder's ``Limits.max_collection_len``.
MAX_COLLECTION_LEN = 4 * 1024 * 1024

#: The deepest nesting of containers inside one value: the codec's ``Limits.max_depth``.
MAX_DEPTH = 32


#: Classes registered with the codec (:func:`crdtgossip.register_type`): their
#: instances may be register and map values (the codec writes them), never elements or
#: keys. Kept by ``crdtgossip._codec.registry``, the layer above, which owns the tags.
REGISTERED_VALUE_TYPES: set[type] = set()

#: Where one of several equal values would be kept as the same one.
KEYED_POSITIONS = "G-Set elements, LWWMap keys and ORMap keys"


def keyed_problem(value: object) -> str | None:
    """Why ``value`` cannot be a G-Set element or a map key, beyond the element rules.

    Python takes ``True == 1`` and ``0.0 == -0.0``: a set or map keeps one of them, but
    they encode differently, so two equal states could give unequal bytes. Bools and
    ``-0.0`` are therefore refused there, at any depth of tuples; ORSet elements (kept
    by dot) and values (kept by stamp) may hold them. An int and a float of equal value
    (``1`` and ``1.0``) still collapse into one element: keep one numeric type per
    element position (a timestamp is always a float, a count always an int).
    Anti-entropy digests follow Python's equality, so replicas holding ``{1}`` and
    ``{1.0}`` agree that they are equal and do not exchange them forever.
    """
    kind = type(value)
    if kind is tuple:
        for item in value:  # type: ignore[attr-defined]
            problem = keyed_problem(item)
            if problem is not None:
                return problem
        return None
    if kind is bool:
        return (
            f"{value!r} is a bool, which equals the int {int(value)}: {KEYED_POSITIONS} "  # type: ignore[call-overload]
            "cannot be bools (use 0 and 1, or str), so that equal states have equal bytes"
        )
    if kind is float and value == 0.0 and math.copysign(1.0, value) < 0:
        return (
            f"-0.0 equals 0.0: {KEYED_POSITIONS} cannot be -0.0 (use 0.0), so that equal "
            "states have equal bytes"
        )
    return None


T = TypeVar("T")


def _str_problem(text: str) -> str | None:
    if len(text) <= MAX_STR_BYTES and text.isascii():
        return None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return f"the str {text!r:.60} cannot be encoded as UTF-8 (a lone surrogate)"
    if size > MAX_STR_BYTES:
        return f"a str of {size} UTF-8 bytes is longer than the limit of {MAX_STR_BYTES}"
    return None


def scalar_problem(value: object) -> str | None:
    """Why a scalar cannot be encoded, or None when it can (or is not a scalar).

    Covers str, bytes, int and float; every other kind gives None (the caller checks
    containers and unsupported kinds itself).
    """
    kind = type(value)
    if kind is str:
        return _str_problem(value)  # type: ignore[arg-type]
    if kind is int:
        if INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            return None
        return f"the integer {value!r:.60} does not fit in 64 bits (-2**63 .. 2**64 - 1)"
    if kind is bytes:
        if len(value) <= MAX_STR_BYTES:  # type: ignore[arg-type]
            return None
        return f"bytes of length {len(value)} are longer than the limit of {MAX_STR_BYTES}"  # type: ignore[arg-type]
    if kind is float:
        if math.isnan(value):  # type: ignore[arg-type]
            # NaN never equals itself: a state holding it could never compare equal to
            # its own copy, so replicas could not tell they had converged.
            return "NaN cannot be an element or value"
        return None
    return None


def _int_size(number: int) -> int:
    """The bytes msgpack packs ``number`` into."""
    if -32 <= number <= 127:
        return 1
    if -(2**7) <= number <= 2**8 - 1:
        return 2
    if -(2**15) <= number <= 2**16 - 1:
        return 3
    if -(2**31) <= number <= 2**32 - 1:
        return 5
    return 9


def _header_size(length: int, small: int) -> int:
    """The header bytes of a msgpack str/bin/array of ``length`` (``small``: fix limit)."""
    if length < small:
        return 1
    return 3 if length < 2**16 else 5


def _tuple_payload_size(items: tuple[object, ...]) -> int:
    """The bytes of the msgpack extension payload a tuple travels as (its packed items)."""
    return _header_size(len(items), 16) + sum(_packed_size(item) for item in items)


def _packed_size(value: object) -> int:
    """The bytes msgpack packs an already checked element into (tuples as extensions)."""
    kind = type(value)
    if value is None or kind is bool:
        return 1
    if kind is int:
        return _int_size(value)  # type: ignore[arg-type]
    if kind is float:
        return 9
    if kind is str:
        size = len(value.encode("utf-8"))  # type: ignore[attr-defined]
        return (2 if 32 <= size < 256 else _header_size(size, 32)) + size
    if kind is bytes:
        size = len(value)  # type: ignore[arg-type]
        return (2 if size < 256 else 3 if size < 2**16 else 5) + size
    if kind is tuple:
        payload = _tuple_payload_size(cast("tuple[object, ...]", value))
        fixed = payload in (1, 2, 4, 8, 16)
        return payload + (2 if fixed else 3 if payload < 256 else 4 if payload < 2**16 else 6)
    if kind is list:
        items_list: list[object] = value  # type: ignore[assignment]
        return _header_size(len(items_list), 16) + sum(_packed_size(i) for i in items_list)
    mapping: dict[str, object] = value  # type: ignore[assignment]
    return _header_size(len(mapping), 16) + sum(
        _packed_size(key) + _packed_size(item) for key, item in mapping.items()
    )


def value_problem(value: object, *, hashable: bool, depth: int = 0) -> str | None:
    """Why ``value`` cannot be encoded as an element (``hashable``) or value, or None.

    Args:
        value: the element, key or value.
        hashable: True for set elements and map keys (no lists or dicts).
        depth: the nesting depth of ``value`` (0 at the top).

    Returns:
        A sentence saying what is wrong, or None when the codec can encode it.
    """
    kind = type(value)
    if value is None or kind is bool:
        return None
    if kind is str or kind is int or kind is bytes or kind is float:
        return scalar_problem(value)
    if not hashable and kind in REGISTERED_VALUE_TYPES:
        return None  # the codec writes it as a value (its own body checks are its own)
    if kind is not tuple and ((kind is not list and kind is not dict) or hashable):
        allowed = "tuples of these" if hashable else "tuples, lists and str-keyed dicts"
        return (
            f"{kind.__name__} {value!r:.60} is not supported: elements, keys and values are "
            f"None, bool, int, float, str, bytes and {allowed}"
        )
    if depth >= MAX_DEPTH:
        return f"the value is nested deeper than {MAX_DEPTH} levels"
    items: tuple[object, ...] | list[object] | dict[object, object] = value  # type: ignore[assignment]
    if len(items) > MAX_COLLECTION_LEN:
        return f"a {kind.__name__} of {len(items)} items is longer than {MAX_COLLECTION_LEN}"
    if type(items) is dict:
        for key, item in items.items():
            if type(key) is not str:
                return f"dict values need str keys, not {key!r:.60}"
            problem = _str_problem(key) or value_problem(item, hashable=False, depth=depth + 1)
            if problem is not None:
                return problem
        return None
    for item in items:
        problem = value_problem(item, hashable=hashable, depth=depth + 1)
        if problem is not None:
            return problem
    if kind is tuple and _tuple_payload_size(cast("tuple[object, ...]", value)) > MAX_STR_BYTES:
        return f"a tuple packs into more than {MAX_STR_BYTES} bytes"
    return None


def check_element(element: T, what: str = "an element") -> T:
    """Return ``element`` if the codec can encode it as a set element or map key.

    Args:
        element: the element or key.
        what: how the error message names it ("an ORMap key").

    Raises:
        OperationError: it cannot be encoded (see the module docstring for the rules).
    """
    kind = type(element)
    # The fast path: the common elements, with the checks that scalar_problem makes.
    if kind is str:
        if element.isascii() and len(element) <= MAX_STR_BYTES:  # type: ignore[attr-defined, arg-type]
            return element
    elif kind is int:
        if INT_MIN <= element <= INT_MAX:  # type: ignore[operator]
            return element
    elif element is None or kind is bool:
        return element
    problem = value_problem(element, hashable=True)
    if problem is not None:
        raise OperationError(f"{what} cannot be {element!r:.60}: {problem}")
    return element


def check_key(element: T, what: str = "a key") -> T:
    """:func:`check_element`, and the rule of :func:`keyed_problem` (no bools or
    ``-0.0``), for G-Set elements and LWWMap and ORMap keys.

    Raises:
        OperationError: it cannot be encoded, or is a bool or ``-0.0``.
    """
    check_element(element, what)
    kind = type(element)
    if kind is str or kind is int or kind is bytes or element is None:
        return element  # the fast path: nothing of the keyed rule applies
    problem = keyed_problem(element)
    if problem is not None:
        raise OperationError(f"{what} cannot be {element!r:.60}: {problem}")
    return element


def check_value(value: T, what: str = "a value") -> T:
    """Return ``value`` if the codec can encode it as a register or map value.

    Args:
        value: the value.
        what: how the error message names it.

    Raises:
        OperationError: it cannot be encoded (see the module docstring for the rules).
    """
    kind = type(value)
    if kind is str:
        if value.isascii() and len(value) <= MAX_STR_BYTES:  # type: ignore[attr-defined, arg-type]
            return value
    elif kind is int:
        if INT_MIN <= value <= INT_MAX:  # type: ignore[operator]
            return value
    elif value is None or kind is bool:
        return value
    problem = value_problem(value, hashable=False)
    if problem is not None:
        raise OperationError(f"{what} cannot be {value!r:.60}: {problem}")
    return value

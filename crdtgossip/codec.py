"""Canonical, versioned msgpack encoding of the data types, hardened against hostile input.

Layout: every encoding is the msgpack array ``[FORMAT_VERSION, type_tag, body]``; the
body of each type is described beside its encoder, in ``crdtgossip._codec.bodies`` (and
``crdtgossip._codec.types`` for ORMap). Elements, keys and values are msgpack scalars,
except tuples, which travel as the extension type :data:`TUPLE_EXT_CODE` so that a tuple
comes back a tuple (and a list a list).

Canonical: equal states give equal bytes. Replica ids, dots and counters are written in
sorted order, unordered collections of elements (G-Set members, map keys) in the order of
their own encodings, and str-keyed dict values with sorted keys. Digests of encodings can
therefore compare replicas.

Errors: :func:`encode` raises :class:`~crdtgossip.EncodeError` and nothing else (a str
that is not UTF-8, an integer past 64 bits, an unsupported value); :func:`decode` raises
:class:`~crdtgossip.DecodeError` and nothing else, whatever the bytes.

Hostile input: msgpack checks every declared length against the limits below, and
against the input's own size, *before* allocating, so a header announcing four billion
elements or a 4 GiB string costs nothing. Input past a few hundred bytes is first
skipped through by msgpack without building anything, so nested headers announcing more
items than follow are refused before msgpack reserves room for those items (3 KB of them
cost 78 MiB before). Nesting is bounded, and the decoded structure is then checked
against the type's invariants (counters positive, dots inside the causal context, sorted
and unique replica ids ...) before any object is built. Refusing hostile input allocates
at most 16 times its size plus 1 MiB (measured by the tests, with tracemalloc); a valid
state takes what its Python objects take, 15 to 65 times its encoding for the types'
usual shapes, for inputs of at most :attr:`Limits.max_bytes`.
"""

from __future__ import annotations

from typing import Any

from crdtgossip._codec import limits as _limits
from crdtgossip._codec.bodies import _context_body, _read_context
from crdtgossip._codec.body import Body
from crdtgossip._codec.canonical import decode_strict
from crdtgossip._codec.checks import _check_value
from crdtgossip._codec.limits import TAG_ORMAP, Limits, Wire
from crdtgossip._codec.registry import (
    TypeCodec,
    register_type,
    registration_of,
    unregister_type,
)
from crdtgossip._codec.shapes import _array
from crdtgossip._codec.types import (
    _CAUSAL_READERS,
    _CAUSAL_STORES,
    _ormap_entries,
    _prototype_from,
    _read_ormap_entries,
    _read_store_into,
    _signature,
    plain_body,
    plain_reader,
)
from crdtgossip._codec.values import (
    _PACKING_ERRORS,
    _encode_error,
    _pack,
    encode_value,
)
from crdtgossip.crdts import _base as _crdts_base
from crdtgossip.crdts._base import CRDT
from crdtgossip.crdts._causal import CausalCRDT
from crdtgossip.crdts.ormap import ORMap
from crdtgossip.errors import DecodeError, EncodeError

# The constants live with the limits in crdtgossip._codec.limits; they are named again
# here, where the API reference documents them.

#: Bumped on any incompatible change of the layout; decode refuses other versions.
FORMAT_VERSION = _limits.FORMAT_VERSION

#: msgpack extension type code carrying a tuple (its items as a packed msgpack array).
TUPLE_EXT_CODE = _limits.TUPLE_EXT_CODE

#: The limits used when none are given.
DEFAULT_LIMITS = _limits.DEFAULT_LIMITS

#: The first and last type tags of the users' range (:func:`register_type`); every tag
#: below USER_TAG_MIN is crdtgossip's own, in this format and every later one.
USER_TAG_MIN = _limits.USER_TAG_MIN
USER_TAG_MAX = _limits.USER_TAG_MAX

#: msgpack extension type code carrying a registered type inside a value.
USER_VALUE_EXT_CODE = _limits.USER_VALUE_EXT_CODE

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_VERSION",
    "TUPLE_EXT_CODE",
    "USER_TAG_MAX",
    "USER_TAG_MIN",
    "USER_VALUE_EXT_CODE",
    "Body",
    "Limits",
    "TypeCodec",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
    "register_type",
    "registration_of",
    "unregister_type",
]


def _registered_order_key(value: object) -> bytes | None:
    """The canonical encoding of a registered type held as a value, for order_key."""
    if registration_of(type(value)) is None:
        return None
    try:
        return encode_value(value)
    except EncodeError:
        return None


_crdts_base.OTHER_ORDER_KEYS[:] = [_registered_order_key]


def _body(obj: object) -> tuple[int, Wire]:
    kind = type(obj)
    written = plain_body(obj)
    if written is not None:
        return written
    if isinstance(obj, ORMap) and kind is ORMap:
        return TAG_ORMAP, [
            _signature(obj._prototype),
            _context_body(obj._context),
            _ormap_entries(obj),
        ]
    if kind in _CAUSAL_STORES:
        tag, writer = _CAUSAL_STORES[kind]
        assert isinstance(obj, CausalCRDT)
        return tag, [_context_body(obj._context), writer(obj)]
    raise EncodeError(
        f"cannot encode {kind.__name__}: not a crdtgossip data type nor a registered one "
        "(see crdtgossip.register_type)"
    )


def encode(obj: CRDT) -> bytes:
    """Encode a data type canonically: equal states give equal bytes.

    Raises:
        EncodeError: ``obj`` is not one of the nine data types, or holds an element or
            value of an unsupported kind (see :data:`crdtgossip.crdts.Value`), a str that
            is not valid UTF-8 (a lone surrogate), an integer outside msgpack's 64 bits
            (a counter, timestamp or dot), or ORMaps nested deeper than
            :attr:`Limits.max_depth`. Nothing else.
    """
    try:
        tag, body = _body(obj)
        return _pack([FORMAT_VERSION, tag, body])
    except EncodeError:  # a TypeError, itself: not one of msgpack's
        raise
    except _PACKING_ERRORS as exc:
        raise _encode_error(exc) from exc


def _read_top(wire: Wire, limits: Limits) -> Any:
    version, tag, body = _array(wire, "encoding", 3)
    if version != FORMAT_VERSION or type(version) is not int:
        raise DecodeError(
            f"format version {version!r:.20} is not {FORMAT_VERSION}: written by an "
            "incompatible crdtgossip version"
        )
    if type(tag) is not int:
        raise DecodeError("type tag must be an integer")
    read_plain = plain_reader(tag)
    if read_plain is not None:
        return read_plain(body, limits)
    if tag in _CAUSAL_READERS:
        context_wire, store_wire = _array(body, "causal state", 2)
        context = _read_context(context_wire)
        obj = _CAUSAL_READERS[tag][0]()
        obj._context = context
        _read_store_into(obj, store_wire, context, limits, 0)
        return obj
    if tag == TAG_ORMAP:
        signature_wire, context_wire, entries_wire = _array(body, "ORMap", 3)
        ormap: ORMap[Any] = ORMap(_prototype_from(signature_wire, 1, limits))
        context = _read_context(context_wire)
        ormap._context = context
        _read_ormap_entries(ormap, entries_wire, context, limits, 1)
        dots = list(ormap._store_dots())
        if len(dots) != len(set(dots)):
            raise DecodeError("ORMap: a dot is used twice (every write has its own dot)")
        return ormap
    raise DecodeError(f"unknown type tag {tag}")


def decode(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode bytes written by :func:`encode` into a new state.

    Args:
        data: the encoding.
        limits: hard limits on size and nesting (:data:`DEFAULT_LIMITS` by default).

    Returns:
        The decoded data type (one of the nine).

    Raises:
        DecodeError: for anything malformed, truncated, oversized, too deeply nested, of
            another format version, well-formed but not a valid state, or a valid state
            in another form than the one :func:`encode` writes (so equal states always
            came from equal bytes). Nothing else.
    """
    return decode_strict(data, limits, _read_top, encode)


def decode_value(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode a value written by :func:`encode_value`.

    Raises:
        DecodeError: for any malformed, oversized or hostile input, or a value in
            another form than the one :func:`encode_value` writes.
    """
    return decode_strict(
        data, limits, lambda wire, _: _check_value(wire, limits, hashable=False), encode_value
    )

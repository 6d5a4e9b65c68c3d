"""Canonical, versioned msgpack encoding of the data types, hardened against hostile input.

Layout: every encoding is the msgpack array ``[FORMAT_VERSION, type_tag, body]``; the
body of each type is described beside its encoder below. Elements, keys and values are
msgpack scalars, except tuples, which travel as the extension type
:data:`TUPLE_EXT_CODE` so that a tuple comes back a tuple (and a list a list).

Canonical: equal states give equal bytes. Replica ids, dots and counters are written in
sorted order, unordered collections of elements (G-Set members, map keys) in the order of
their own encodings, and str-keyed dict values with sorted keys. Digests of encodings can
therefore compare replicas.

Hostile input: :func:`decode` raises :class:`~crdtgossip.DecodeError` and nothing else,
whatever the bytes. msgpack checks every declared length against the limits below
*before* allocating, so a header announcing four billion elements or a 4 GiB string
costs nothing; nesting is bounded; and the decoded structure is then checked against the
type's invariants (counters positive, dots inside the causal context, sorted and unique
replica ids ...) before any object is built. Memory use is at most a small multiple of
the input size, itself at most :attr:`Limits.max_bytes`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeAlias

import msgpack

from crdtgossip.crdts._base import CRDT
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.crdts._values import scalar_problem
from crdtgossip.crdts.ewflag import EWFlag
from crdtgossip.crdts.gcounter import GCounter
from crdtgossip.crdts.gset import GSet
from crdtgossip.crdts.lwwmap import LWWEntry, LWWMap
from crdtgossip.crdts.lwwregister import LWWRegister
from crdtgossip.crdts.mvregister import MVRegister
from crdtgossip.crdts.ormap import ORMap, _Entry
from crdtgossip.crdts.orset import ORSet
from crdtgossip.crdts.pncounter import PNCounter
from crdtgossip.errors import DecodeError, EncodeError

__all__ = [
    "DEFAULT_LIMITS",
    "FORMAT_VERSION",
    "TUPLE_EXT_CODE",
    "Limits",
    "decode",
    "decode_value",
    "encode",
    "encode_value",
]

#: Bumped on any incompatible change of the layout; decode refuses other versions.
FORMAT_VERSION = 1

#: msgpack extension type code carrying a tuple (its items as a packed msgpack array).
TUPLE_EXT_CODE = 1

# Type tags: small integers, fixed forever (a tag is never reused for another layout).
TAG_GCOUNTER, TAG_PNCOUNTER, TAG_GSET, TAG_ORSET, TAG_EWFLAG = 1, 2, 3, 4, 5
TAG_LWWREGISTER, TAG_MVREGISTER, TAG_LWWMAP, TAG_ORMAP = 6, 7, 8, 9

#: Tuple extension payloads may add up to this many times the input's size (each level
#: of nested tuples is a copy of the level inside it); bounds decode memory to a small
#: multiple of the input.
EXT_COPY_FACTOR = 4

#: The largest and smallest integers msgpack carries (uint64 and int64).
INT_MAX = 2**64 - 1
INT_MIN = -(2**63)


@dataclass(frozen=True)
class Limits:
    """Hard limits applied by :func:`decode`; every one is checked before allocating.

    Attributes:
        max_bytes: the largest input accepted. 16 MiB, the TCP frame limit of the node:
            a state larger than that is not sent in one piece anyway. (Akka's remote
            frame default is 256 KiB; memberlist caps a push-pull at 10 MiB of state.)
        max_collection_len: the most items in one msgpack array or map; bounds the
            allocation a header can request. One block of an ORSet holds one replica's
            live dots, so this is also the largest per-replica set decoded.
        max_str_len: the longest str or bytes value. 1 MiB: replica ids, keys and
            values are small; large blobs do not belong in a CRDT element.
        max_depth: the deepest nesting of tuples, lists and dicts inside one value,
            and of ORMaps inside ORMaps. 32 levels, far above any real schema, far below
            the interpreter's recursion limit.
    """

    max_bytes: int = 16 * 1024 * 1024
    max_collection_len: int = 4 * 1024 * 1024
    max_str_len: int = 1024 * 1024
    max_depth: int = 32


#: The limits used when none are given.
DEFAULT_LIMITS = Limits()

Wire: TypeAlias = Any  # a structure of msgpack-native objects, before packing

# =========================================================================================
# values
# =========================================================================================


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


def encode_value(value: object) -> bytes:
    """Encode a single element or value canonically.

    Raises:
        EncodeError: the value is not of a supported kind (see :data:`crdtgossip.crdts.Value`).
    """
    return _pack(_canonical(value))


class _Reader:
    """Decoding state: the limits and the current nesting depth of tuple extensions."""

    def __init__(self, limits: Limits, size: int) -> None:
        self.limits = limits
        self.depth = 0
        # msgpack hands each tuple extension's payload over as a fresh copy, so nested
        # tuples copy the input once per level: cap the bytes copied in all.
        self.copy_budget = EXT_COPY_FACTOR * size + 4096

    def unpack(self, data: bytes) -> Wire:
        limits = self.limits
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=self._ext_hook,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_str_len,
            max_array_len=limits.max_collection_len,
            max_map_len=limits.max_collection_len,
            max_ext_len=limits.max_str_len,
        )

    def _ext_hook(self, code: int, data: bytes) -> tuple[Any, ...]:
        if code != TUPLE_EXT_CODE:
            raise DecodeError(f"unknown msgpack extension type {code}")
        self.copy_budget -= len(data)
        if self.copy_budget < 0:
            raise DecodeError("tuple extensions nested too deeply for their size")
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise DecodeError(f"tuples nested deeper than {self.limits.max_depth}")
            items = self.unpack(data)
        finally:
            self.depth -= 1
        if type(items) is not list:
            raise DecodeError("a tuple extension must hold an array")
        return tuple(items)


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


# =========================================================================================
# shape checks used by every decoder
# =========================================================================================


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


# =========================================================================================
# per-type bodies
# =========================================================================================


def _gcounter_body(counter: GCounter) -> Wire:
    """``[[replica, n], ...]`` sorted by replica, every ``n`` positive."""
    return [[replica, n] for replica, n in sorted(counter._counts.items())]


def _read_gcounter(wire: Wire, _: Limits) -> GCounter:
    pairs = _array(wire, "GCounter")
    counts: dict[str, int] = {}
    for pair in pairs:
        replica, n = _array(pair, "GCounter slot", 2)
        counts[_replica(replica)] = _positive(n, "a counter slot")
    _ascending([pair[0] for pair in pairs], "GCounter replicas")
    return GCounter._from_counts(counts)


def _pncounter_body(counter: PNCounter) -> Wire:
    """``[increments, decrements]``, each a G-Counter body."""
    return [_gcounter_body(counter._increments), _gcounter_body(counter._decrements)]


def _read_pncounter(wire: Wire, limits: Limits) -> PNCounter:
    up, down = _array(wire, "PNCounter", 2)
    return PNCounter._from_parts(_read_gcounter(up, limits), _read_gcounter(down, limits))


def _gset_body(gset: GSet[Any]) -> Wire:
    """``[element, ...]`` in the order of the elements' encodings."""
    return _sorted_by_encoding(_canonical(element) for element in gset._elements)


def _read_gset(wire: Wire, limits: Limits) -> GSet[Any]:
    elements = _array(wire, "GSet")
    members = {_check_value(element, limits, hashable=True) for element in elements}
    if len(members) != len(elements):
        raise DecodeError("GSet: duplicate elements")
    return GSet._from_elements(members)


def _context_body(context: CausalContext) -> Wire:
    """``[[replica, n, [cloud counters ascending]], ...]`` sorted by replica."""
    replicas = sorted(context.vector.keys() | context.cloud.keys())
    return [
        [replica, context.vector.get(replica, 0), sorted(context.cloud.get(replica, ()))]
        for replica in replicas
    ]


def _read_context(wire: Wire) -> CausalContext:
    rows = _array(wire, "causal context")
    vector: dict[str, int] = {}
    cloud: dict[str, set[int]] = {}
    for row in rows:
        replica, base, counters = _array(row, "causal context row", 3)
        _replica(replica)
        _non_negative(base, "a version vector entry")
        _array(counters, "a dot cloud")
        for counter in counters:
            # Canonical form: cloud counters lie above base + 1 (else they are folded in).
            if _positive(counter, "a dot counter") <= base + 1:
                raise DecodeError("causal context is not compacted")
        _ascending(counters, "dot cloud counters")
        if not base and not counters:
            raise DecodeError("causal context has an empty row")
        if base:
            vector[replica] = base
        if counters:
            cloud[replica] = set(counters)
    _ascending([row[0] for row in rows], "causal context replicas")
    return CausalContext(vector, cloud)


def _check_dot(dot: Dot, context: CausalContext) -> None:
    if dot not in context:
        raise DecodeError(f"dot {dot!r:.60} is live but outside the causal context")


def _ewflag_store(flag: EWFlag) -> Wire:
    """``[[replica, [counters ascending]], ...]`` sorted by replica."""
    by_replica: dict[str, list[int]] = {}
    for replica, counter in flag._dots:
        by_replica.setdefault(replica, []).append(counter)
    return [[replica, sorted(counters)] for replica, counters in sorted(by_replica.items())]


def _read_ewflag_store(flag: EWFlag, wire: Wire, context: CausalContext, _: Limits) -> None:
    rows = _array(wire, "EWFlag dots")
    for row in rows:
        replica, counters = _array(row, "EWFlag dots row", 2)
        _replica(replica)
        if not _array(counters, "EWFlag counters"):
            raise DecodeError("EWFlag: empty dots row")
        for counter in counters:
            dot = (replica, _positive(counter, "a dot counter"))
            _check_dot(dot, context)
            flag._dots.add(dot)
        _ascending(counters, "EWFlag counters")
    _ascending([row[0] for row in rows], "EWFlag replicas")


def _orset_store(orset: ORSet[Any]) -> Wire:
    """``[[replica, [counter, element, counter, element, ...]], ...]``, all ascending."""
    rows = []
    for replica in sorted(orset._dots):
        block = orset._dots[replica]
        flat: list[Any] = []
        for counter in sorted(block):
            flat.append(counter)
            flat.append(_canonical(block[counter]))
        rows.append([replica, flat])
    return rows


def _read_orset_store(
    orset: ORSet[Any], wire: Wire, context: CausalContext, limits: Limits
) -> None:
    rows = _array(wire, "ORSet dots")
    for row in rows:
        replica, flat = _array(row, "ORSet dots row", 2)
        _replica(replica)
        _array(flat, "ORSet block")
        if not flat or len(flat) % 2:
            raise DecodeError("ORSet: a block holds counter/element pairs")
        counters = flat[0::2]
        block: dict[int, Any] = {}
        for counter, element in zip(counters, flat[1::2], strict=True):
            _check_dot((replica, _positive(counter, "a dot counter")), context)
            block[counter] = _check_value(element, limits, hashable=True)
        _ascending(counters, "ORSet counters")
        orset._dots[replica] = block
    _ascending([row[0] for row in rows], "ORSet replicas")
    orset._reverse = {}
    orset._value = None


def _mvregister_store(register: MVRegister[Any]) -> Wire:
    """``[[replica, counter, value], ...]`` sorted by dot."""
    return [
        [replica, counter, _canonical(register._values[(replica, counter)])]
        for replica, counter in sorted(register._values)
    ]


def _read_mvregister_store(
    register: MVRegister[Any], wire: Wire, context: CausalContext, limits: Limits
) -> None:
    rows = _array(wire, "MVRegister values")
    dots = []
    for row in rows:
        replica, counter, value = _array(row, "MVRegister value", 3)
        dot = (_replica(replica), _positive(counter, "a dot counter"))
        _check_dot(dot, context)
        register._values[dot] = _check_value(value, limits, hashable=False)
        dots.append(dot)
    _ascending(dots, "MVRegister dots")


def _lwwregister_body(register: LWWRegister[Any]) -> Wire:
    """``[value, timestamp, replica]``; empty: ``[None, 0, ""]``."""
    return [_canonical(register._value), register._timestamp, register._replica]


def _read_lwwregister(wire: Wire, limits: Limits) -> LWWRegister[Any]:
    value, timestamp, replica = _array(wire, "LWWRegister", 3)
    _non_negative(timestamp, "a timestamp")
    if replica == "" and (timestamp or value is not None):
        raise DecodeError("LWWRegister: a write without a replica id")
    if replica != "":
        _replica(replica)
    return LWWRegister._from_parts(_check_value(value, limits, hashable=False), timestamp, replica)


def _lwwmap_body(lww_map: LWWMap[Any, Any]) -> Wire:
    """``[[key, timestamp, replica, present, value], ...]`` in the keys' encoding order."""
    return _sorted_by_encoding(
        [_canonical(key), entry.timestamp, entry.replica, entry.present, _canonical(entry.value)]
        for key, entry in lww_map._entries.items()
    )


def _read_lwwmap(wire: Wire, limits: Limits) -> LWWMap[Any, Any]:
    rows = _array(wire, "LWWMap")
    entries: dict[Any, LWWEntry] = {}
    for row in rows:
        key, timestamp, replica, present, value = _array(row, "LWWMap entry", 5)
        _check_value(key, limits, hashable=True)
        if type(present) is not bool or (not present and value is not None):
            raise DecodeError("LWWMap: a removal carries no value")
        entries[key] = LWWEntry(
            _non_negative(timestamp, "a timestamp"),
            _replica(replica),
            present,
            _check_value(value, limits, hashable=False),
        )
    if len(entries) != len(rows):
        raise DecodeError("LWWMap: duplicate keys")
    return LWWMap._from_entries(entries)


# ---- causal types: [context, store]; ORMap: [signature, context, entries] --------------

_CAUSAL_STORES: dict[type[Any], tuple[int, Callable[[Any], Wire]]] = {
    EWFlag: (TAG_EWFLAG, _ewflag_store),
    ORSet: (TAG_ORSET, _orset_store),
    MVRegister: (TAG_MVREGISTER, _mvregister_store),
}

_PLAIN_BODIES: dict[type[Any], tuple[int, Callable[[Any], Wire]]] = {
    GCounter: (TAG_GCOUNTER, _gcounter_body),
    PNCounter: (TAG_PNCOUNTER, _pncounter_body),
    GSet: (TAG_GSET, _gset_body),
    LWWRegister: (TAG_LWWREGISTER, _lwwregister_body),
    LWWMap: (TAG_LWWMAP, _lwwmap_body),
}

_PLAIN_READERS: dict[int, Callable[[Wire, Limits], Any]] = {
    TAG_GCOUNTER: _read_gcounter,
    TAG_PNCOUNTER: _read_pncounter,
    TAG_GSET: _read_gset,
    TAG_LWWREGISTER: _read_lwwregister,
    TAG_LWWMAP: _read_lwwmap,
}

_CAUSAL_READERS: dict[int, tuple[type[Any], Callable[[Any, Wire, CausalContext, Limits], None]]] = {
    TAG_EWFLAG: (EWFlag, _read_ewflag_store),
    TAG_ORSET: (ORSet, _read_orset_store),
    TAG_MVREGISTER: (MVRegister, _read_mvregister_store),
}


def _signature(prototype: object) -> Wire:
    """The nested type of an ORMap: ``[TAG]``, or ``[TAG_ORMAP, inner signature]``."""
    if isinstance(prototype, ORMap):
        return [TAG_ORMAP, _signature(prototype._prototype)]
    for table in (_CAUSAL_STORES, _PLAIN_BODIES):
        entry = table.get(type(prototype))
        if entry is not None:
            return [entry[0]]
    raise EncodeError(f"cannot encode an ORMap of {type(prototype).__name__}")


def _prototype_from(wire: Wire, depth: int, limits: Limits) -> Any:
    if depth > limits.max_depth:
        raise DecodeError(f"ORMaps nested deeper than {limits.max_depth}")
    items = _array(wire, "ORMap signature")
    if not items:
        raise DecodeError("ORMap signature: empty")
    tag = items[0]
    if tag == TAG_ORMAP and len(items) == 2:
        return ORMap(_prototype_from(items[1], depth + 1, limits))
    if len(items) == 1 and type(tag) is int:
        if tag in _CAUSAL_READERS:
            return _CAUSAL_READERS[tag][0]()
        if tag in _PLAIN_READERS:
            return _PLAIN_BODIES_BY_TAG[tag]()
    raise DecodeError(f"ORMap signature: unknown nested type {wire!r:.60}")


_PLAIN_BODIES_BY_TAG: dict[int, type[Any]] = {tag: kind for kind, (tag, _) in _PLAIN_BODIES.items()}


def _store_body(obj: CausalCRDT) -> Wire:
    """The store half of a causal object (its context is written by the caller)."""
    if isinstance(obj, ORMap):
        return _ormap_entries(obj)
    return _CAUSAL_STORES[type(obj)][1](obj)


def _ormap_entries(ormap: ORMap[Any]) -> Wire:
    """``[[key, [[replica, counter, contribution|None], ...], nested store|None], ...]``.

    Entries in the keys' encoding order, tags by dot. Causal nested values write their
    store (the map's context covers them); non-causal ones write one contribution per
    presence tag (a plain body).
    """
    plain = None if ormap._causal else _PLAIN_BODIES[type(ormap._prototype)][1]
    rows = []
    for key, entry in ormap._entries.items():
        tags = [
            [replica, counter, None if plain is None else plain(entry.tags[(replica, counter)])]
            for replica, counter in sorted(entry.tags)
        ]
        nested = None if entry.nested is None else _store_body(entry.nested)
        rows.append([_canonical(key), tags, nested])
    return _sorted_by_encoding(rows)


def _read_store_into(
    obj: CausalCRDT, wire: Wire, context: CausalContext, limits: Limits, depth: int
) -> None:
    if isinstance(obj, ORMap):
        _read_ormap_entries(obj, wire, context, limits, depth)
        return
    for kind, reader in _CAUSAL_READERS.values():
        if type(obj) is kind:
            reader(obj, wire, context, limits)
            return
    raise DecodeError(f"no store reader for {type(obj).__name__}")  # pragma: no cover


def _read_ormap_entries(
    ormap: ORMap[Any], wire: Wire, context: CausalContext, limits: Limits, depth: int
) -> None:
    rows = _array(wire, "ORMap entries")
    plain_reader = None
    if not ormap._causal:
        plain_reader = _PLAIN_READERS[_signature(ormap._prototype)[0]]
    for row in rows:
        key, tag_rows, nested_wire = _array(row, "ORMap entry", 3)
        _check_value(key, limits, hashable=True)
        if key in ormap._entries:
            raise DecodeError("ORMap: duplicate keys")
        tags: dict[Dot, Any] = {}
        dots = []
        for tag_row in _array(tag_rows, "ORMap tags"):
            replica, counter, contribution = _array(tag_row, "ORMap tag", 3)
            dot = (_replica(replica), _positive(counter, "a dot counter"))
            _check_dot(dot, context)
            if plain_reader is None:
                if contribution is not None:
                    raise DecodeError("ORMap: a causal nested value carries no contribution")
                tags[dot] = None
            else:
                tags[dot] = plain_reader(contribution, limits)
            dots.append(dot)
        _ascending(dots, "ORMap tags")
        nested = None
        if ormap._causal:
            nested = ormap._new_nested(context)
            _read_store_into(nested, nested_wire, context, limits, depth + 1)
        elif nested_wire is not None:
            raise DecodeError("ORMap: a non-causal nested value has no store")
        if not tags and (nested is None or nested._store_is_empty()):
            raise DecodeError("ORMap: an entry with no dots")
        ormap._entries[key] = _Entry(tags, nested)


# =========================================================================================
# the public entry points
# =========================================================================================


def _body(obj: object) -> tuple[int, Wire]:
    kind = type(obj)
    if kind in _PLAIN_BODIES:
        tag, writer = _PLAIN_BODIES[kind]
        return tag, writer(obj)
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
    raise EncodeError(f"cannot encode {kind.__name__}: not a crdtgossip data type")


def encode(obj: CRDT) -> bytes:
    """Encode a data type canonically: equal states give equal bytes.

    Raises:
        EncodeError: ``obj`` is not one of the nine data types, or holds an element or
            value of an unsupported kind (see :data:`crdtgossip.crdts.Value`).
    """
    tag, body = _body(obj)
    return _pack([FORMAT_VERSION, tag, body])


def _read_top(wire: Wire, limits: Limits) -> Any:
    version, tag, body = _array(wire, "encoding", 3)
    if version != FORMAT_VERSION or type(version) is not int:
        raise DecodeError(
            f"format version {version!r:.20} is not {FORMAT_VERSION}: written by an "
            "incompatible crdtgossip version"
        )
    if type(tag) is not int:
        raise DecodeError("type tag must be an integer")
    if tag in _PLAIN_READERS:
        return _PLAIN_READERS[tag](body, limits)
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


def _guarded(data: object, limits: Limits, build: Callable[[Wire, Limits], Any]) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"decode needs bytes, not {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise DecodeError(f"input of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    try:
        return build(_Reader(limits, len(data)).unpack(bytes(data)), limits)
    except DecodeError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # msgpack's ExtraData, FormatError and StackError are ValueErrors; shape errors
        # surface as TypeError/ValueError from unpacking. All mean "not a valid state".
        raise DecodeError(f"malformed input: {type(exc).__name__}: {exc!s:.200}") from None
    except MemoryError:
        raise DecodeError("input would not fit in memory") from None


def decode(data: bytes, *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Decode bytes written by :func:`encode` into a new state.

    Args:
        data: the encoding.
        limits: hard limits on size and nesting (:data:`DEFAULT_LIMITS` by default).

    Returns:
        The decoded data type (one of the nine).

    Raises:
        DecodeError: for anything malformed, truncated, oversized, too deeply nested, of
            another format version, or well-formed but not a valid state. Nothing else.
    """
    return _guarded(data, limits, _read_top)

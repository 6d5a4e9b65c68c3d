"""The type tag tables, and ORMap: its nested-type signature and its entries.

An ORMap's body is ``[signature, context, entries]``; its nested values write their own
store (causal types) or body (plain types) through the tables here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crdtgossip._codec.bodies import (
    _check_dot,
    _ewflag_store,
    _gcounter_body,
    _gset_body,
    _lwwmap_body,
    _lwwregister_body,
    _mvregister_store,
    _orset_store,
    _pncounter_body,
    _read_ewflag_store,
    _read_gcounter,
    _read_gset,
    _read_lwwmap,
    _read_lwwregister,
    _read_mvregister_store,
    _read_orset_store,
    _read_pncounter,
)
from crdtgossip._codec.checks import _check_element
from crdtgossip._codec.limits import (
    TAG_EWFLAG,
    TAG_GCOUNTER,
    TAG_GSET,
    TAG_LWWMAP,
    TAG_LWWREGISTER,
    TAG_MVREGISTER,
    TAG_ORMAP,
    TAG_ORSET,
    TAG_PNCOUNTER,
    Limits,
    Wire,
)
from crdtgossip._codec.registry import registration_for_tag, registration_of
from crdtgossip._codec.shapes import _array, _ascending, _positive, _replica
from crdtgossip._codec.user import read_versioned_body
from crdtgossip._codec.values import (
    _canonical,
    _canonical_element,
    _encode_depth_exceeded,
    _sorted_by_encoding,
    _user_body,
)
from crdtgossip.crdts._causal import CausalContext, CausalCRDT, Dot
from crdtgossip.crdts.ewflag import EWFlag
from crdtgossip.crdts.gcounter import GCounter
from crdtgossip.crdts.gset import GSet
from crdtgossip.crdts.lwwmap import LWWMap
from crdtgossip.crdts.lwwregister import LWWRegister
from crdtgossip.crdts.mvregister import MVRegister
from crdtgossip.crdts.ormap import ORMap, _Entry
from crdtgossip.crdts.orset import ORSet
from crdtgossip.crdts.pncounter import PNCounter
from crdtgossip.errors import DecodeError, EncodeError

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


def _signature(prototype: object, depth: int = 1) -> Wire:
    """The nested type of an ORMap: ``[TAG]``, or ``[TAG_ORMAP, inner signature]``."""
    limit = _encode_depth_exceeded(depth - 1)
    if limit is not None:
        # decode refuses deeper nesting: never write what cannot be read back.
        raise EncodeError(f"ORMaps nested deeper than {limit}")
    if isinstance(prototype, ORMap):
        return [TAG_ORMAP, _signature(prototype._prototype, depth + 1)]
    for table in (_CAUSAL_STORES, _PLAIN_BODIES):
        entry = table.get(type(prototype))
        if entry is not None:
            return [entry[0]]
    registration = registration_of(type(prototype))
    if registration is not None:
        return [registration.tag]
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
        registration = registration_for_tag(tag)
        if registration is not None:
            return registration.cls()
    raise DecodeError(f"ORMap signature: unknown nested type {wire!r:.60}")


_PLAIN_BODIES_BY_TAG: dict[int, type[Any]] = {tag: kind for kind, (tag, _) in _PLAIN_BODIES.items()}


def plain_body(obj: object) -> tuple[int, Wire] | None:
    """The tag and body of a non-causal state (built-in or registered), or None."""
    kind = type(obj)
    entry = _PLAIN_BODIES.get(kind)
    if entry is not None:
        return entry[0], entry[1](obj)
    registration = registration_of(kind)
    if registration is not None:
        body = _canonical(_user_body(registration.encode_body, obj), 1)
        return registration.tag, [registration.version, body]
    return None


def plain_reader(tag: int) -> Callable[[Wire, Limits], Any] | None:
    """How to read the body of the non-causal type of ``tag``, or None."""
    reader = _PLAIN_READERS.get(tag)
    if reader is not None:
        return reader
    registration = registration_for_tag(tag)
    if registration is None:
        return None
    return lambda wire, limits: read_versioned_body(registration, wire, limits)


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
    rows = []
    for key, entry in ormap._entries.items():
        tags = [
            [replica, counter, _contribution(ormap, entry.tags[(replica, counter)])]
            for replica, counter in sorted(entry.tags)
        ]
        nested = None if entry.nested is None else _store_body(entry.nested)
        rows.append([_canonical_element(key, keyed=True), tags, nested])
    return _sorted_by_encoding(rows)


def _contribution(ormap: ORMap[Any], contribution: object) -> Wire:
    if ormap._causal:
        return None
    written = plain_body(contribution)
    if written is None:
        raise EncodeError(f"cannot encode an ORMap of {type(contribution).__name__}")
    return written[1]


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
    read_plain = None
    if not ormap._causal:
        read_plain = plain_reader(_signature(ormap._prototype)[0])
        if read_plain is None:
            raise DecodeError(f"ORMap of {ormap.value_type.__name__}: no longer registered")
    for row in rows:
        key, tag_rows, nested_wire = _array(row, "ORMap entry", 3)
        _check_element(key, limits, keyed=True)
        if key in ormap._entries:
            raise DecodeError("ORMap: duplicate keys")
        tags: dict[Dot, Any] = {}
        dots = []
        for tag_row in _array(tag_rows, "ORMap tags"):
            replica, counter, contribution = _array(tag_row, "ORMap tag", 3)
            dot = (_replica(replica), _positive(counter, "a dot counter"))
            _check_dot(dot, context)
            if read_plain is None:
                if contribution is not None:
                    raise DecodeError("ORMap: a causal nested value carries no contribution")
                tags[dot] = None
            else:
                tags[dot] = read_plain(contribution, limits)
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

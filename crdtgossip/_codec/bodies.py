"""The body of each type but ORMap: how it is written, and how it is read back and checked.

Plain types (the counters, GSet, the LWW types) write one body; causal ones (EWFlag,
ORSet, MVRegister) write a store beside their causal context, so that an ORMap can
write the stores of its nested values under its own context.
"""

from __future__ import annotations

from typing import Any

from crdtgossip._codec.checks import _check_element, _check_value
from crdtgossip._codec.limits import Limits, Wire
from crdtgossip._codec.shapes import _array, _ascending, _non_negative, _positive, _replica
from crdtgossip._codec.values import _canonical, _canonical_element, _sorted_by_encoding
from crdtgossip.crdts._causal import CausalContext, Dot
from crdtgossip.crdts.ewflag import EWFlag
from crdtgossip.crdts.gcounter import GCounter
from crdtgossip.crdts.gset import GSet
from crdtgossip.crdts.lwwmap import LWWEntry, LWWMap
from crdtgossip.crdts.lwwregister import LWWRegister
from crdtgossip.crdts.mvregister import MVRegister
from crdtgossip.crdts.orset import ORSet
from crdtgossip.crdts.pncounter import PNCounter
from crdtgossip.errors import DecodeError


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
    return _sorted_by_encoding(
        _canonical_element(element, keyed=True) for element in gset._elements
    )


def _read_gset(wire: Wire, limits: Limits) -> GSet[Any]:
    elements = _array(wire, "GSet")
    members = {_check_element(element, limits, keyed=True) for element in elements}
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
            flat.append(_canonical_element(block[counter], keyed=False))
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
            block[counter] = _check_element(element, limits, keyed=False)
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
        [
            _canonical_element(key, keyed=True),
            entry.timestamp,
            entry.replica,
            entry.present,
            _canonical(entry.value),
        ]
        for key, entry in lww_map._entries.items()
    )


def _read_lwwmap(wire: Wire, limits: Limits) -> LWWMap[Any, Any]:
    rows = _array(wire, "LWWMap")
    entries: dict[Any, LWWEntry] = {}
    for row in rows:
        key, timestamp, replica, present, value = _array(row, "LWWMap entry", 5)
        _check_element(key, limits, keyed=True)
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

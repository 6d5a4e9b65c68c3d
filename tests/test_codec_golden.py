"""Golden vectors: the exact bytes of format 1, pinned.

Each state below is built deterministically (explicit replica ids and timestamps, no
clock, no randomness) and its encoding is stored in ``tests/data/format1/<name>.bin``.
The files were written once, by the codec before it was split into modules, and are
never regenerated: a test failing here means the wire format changed, which needs a new
:data:`~crdtgossip.codec.FORMAT_VERSION` and a new ``format2`` directory, never an edit
of these files. Replicas of different releases must read each other's bytes, and
digests of encodings compare replicas, so "the same state, other bytes" is a bug too.

The states cover every layout: all nine types, a causal context with a dot cloud, every
value kind (None, bool, ints at both ends of the msgpack range, floats including -0.0
and infinity, str, bytes, tuples, lists and str-keyed dicts), and ORMaps nesting an
ORMap of ORSets and PNCounters (a causal and a plain nested type).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import pytest

from crdtgossip import (
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
    decode,
    encode,
)
from crdtgossip.codec import FORMAT_VERSION
from crdtgossip.testing import strictly_equal

#: Where the vectors of format 1 live.
VECTORS = Path(__file__).parent / "data" / "format1"

#: The integer range msgpack carries: both ends appear in the vectors.
INT_MIN, INT_MAX = -(2**63), 2**64 - 1

#: A value of every kind, nested, as an LWW register or a map entry holds it.
RICH_VALUE: dict[str, object] = {
    "none": None,
    "bools": [True, False],
    "ints": [0, -1, 127, 128, -33, 2**32, INT_MIN, INT_MAX],
    "floats": (1.5, -0.0, math.inf, -math.inf),
    "text": "é😀",
    "bytes": b"\x00\xff",
    "nested": {"tuple": (1, (b"x", (None, True))), "list": [(), []], "": {}},
}


def _gcounter() -> GCounter:
    counter = GCounter()
    counter.increment("b", 2**40)
    counter.increment("a", 3)
    counter.increment("c", 1)
    return counter


def _pncounter() -> PNCounter:
    counter = PNCounter()
    counter.increment("a", 5)
    counter.decrement("b", 2)
    counter.increment("b", 300)
    return counter


def _gset() -> GSet[object]:
    gset: GSet[object] = GSet()
    for element in ("x", 7, -7, 2.5, None, False, b"raw", (1, b"y"), ((),), INT_MAX):
        gset.add(element)
    return gset


def _orset() -> ORSet[object]:
    # Replica "a" holds its own adds and a remove; of "b"'s three adds it has merged only
    # the third, so its causal context has a dot cloud for "b".
    orset: ORSet[object] = ORSet()
    orset.add("x", "a")
    orset.add(2.5, "a")
    orset.remove("x")
    orset.add((None, True), "a")
    other: ORSet[object] = ORSet()
    other.add("p", "b")
    other.add("q", "b")
    orset.merge(other.add(b"r", "b"))
    orset.add("x", "c")
    return orset


def _ewflag() -> EWFlag:
    flag = EWFlag()
    flag.enable("a")
    flag.enable("b")
    flag.disable()
    flag.enable("b")
    other = EWFlag()
    other.enable("c")
    flag.merge(other)
    return flag


def _lwwregister() -> LWWRegister[object]:
    register: LWWRegister[object] = LWWRegister()
    register.set(RICH_VALUE, "a", timestamp=1_700_000_000_123)
    return register


def _mvregister() -> MVRegister[object]:
    multi: MVRegister[object] = MVRegister()
    other: MVRegister[object] = MVRegister()
    multi.set("red", "a")
    multi.merge(other.set(["blue", (1, 2)], "b"))
    return multi


def _lwwmap() -> LWWMap[object, object]:
    lww_map: LWWMap[object, object] = LWWMap()
    lww_map.set("k", 1, "a", timestamp=3)
    lww_map.set((1, "t"), RICH_VALUE, "b", timestamp=5)
    lww_map.set(b"bin", [1.0, -0.0], "a", timestamp=6)
    lww_map.remove(("j",), "b", timestamp=4)
    return lww_map


def _ormap_ormap_orset() -> ORMap[str]:
    deep: ORMap[str] = ORMap(ORMap(ORSet))
    deep.update("k", "a", lambda inner: inner.update("j", "a", lambda s: s.add("x", "a")))
    deep.update("k", "b", lambda inner: inner.update("i", "b", lambda s: s.add((2,), "b")))
    deep.update("m", "a", lambda inner: inner.update("j", "a", lambda s: s.add(3, "a")))
    deep.remove("m")
    return deep


def _ormap_pncounter() -> ORMap[object]:
    stock: ORMap[object] = ORMap(PNCounter)
    stock.update("apples", "a", lambda counter: counter.increment("a", 10))
    stock.update("apples", "b", lambda counter: counter.decrement("b", 3))
    stock.update(("pears", 1), "a", lambda counter: counter.increment("a", 2**33))
    stock.update("plums", "b", lambda counter: counter.increment("b"))
    stock.remove("plums")
    return stock


#: The states pinned, by the name of their vector file.
STATES: dict[str, Callable[[], CRDT]] = {
    "gcounter": _gcounter,
    "pncounter": _pncounter,
    "gset": _gset,
    "orset": _orset,
    "ewflag": _ewflag,
    "lwwregister": _lwwregister,
    "mvregister": _mvregister,
    "lwwmap": _lwwmap,
    "ormap_ormap_orset": _ormap_ormap_orset,
    "ormap_pncounter": _ormap_pncounter,
}


def _vector(name: str) -> bytes:
    return (VECTORS / f"{name}.bin").read_bytes()


def test_every_vector_file_is_pinned_by_a_state() -> None:
    # A vector without a state (or a state without a vector) is a check that never runs.
    assert sorted(path.stem for path in VECTORS.glob("*.bin")) == sorted(STATES)
    assert FORMAT_VERSION == 1


@pytest.mark.parametrize("name", STATES)
def test_encode_gives_the_pinned_bytes(name: str) -> None:
    assert encode(STATES[name]()).hex() == _vector(name).hex()


@pytest.mark.parametrize("name", STATES)
def test_the_pinned_bytes_decode_to_the_state(name: str) -> None:
    expected = STATES[name]()
    decoded = decode(_vector(name))
    assert type(decoded) is type(expected)
    assert decoded == expected
    assert strictly_equal(decoded.value, expected.value)
    assert encode(decoded) == _vector(name)


def test_the_states_are_representative() -> None:
    # The pins are only worth what they cover: a dot cloud, a tombstoned ORMap key, a
    # disabled-then-enabled flag, concurrent register values, a removed LWW key.
    orset = _orset()
    assert orset.context.cloud == {"b": {3}}
    assert orset.value == frozenset({2.5, (None, True), b"r", "x"})
    assert _ewflag().value is True
    assert len(_mvregister().value) == 2
    assert ("j",) in _lwwmap().entries()
    assert ("j",) not in _lwwmap().value
    assert set(_ormap_ormap_orset().value) == {"k"}
    assert _ormap_pncounter().value == {"apples": 7, ("pears", 1): 2**33}
    assert len(_gset().value) == 10

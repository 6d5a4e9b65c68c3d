"""Golden vectors: the exact bytes of format 1, pinned.

Each state below is built deterministically (explicit replica ids and timestamps, no
clock, no randomness) and its encoding is stored in ``tests/data/format1/<name>.bin``.
The files were written once, by the codec before it was split into modules, and are
never regenerated: a test failing here means the wire format changed, which needs a new
:data:`~crdtgossip.codec.FORMAT_VERSION` and a new ``format2`` directory, never an edit
of these files. Replicas of different releases must read each other's bytes, and
digests of encodings compare replicas, so "the same state, other bytes" is a bug too.

The states cover every layout: all nine types and a registered user type
(``MaxRegister``, tag 1024), empty and not; a causal context with a dot cloud; every
value kind (None, bool, ints at both ends of the msgpack range, floats including -0.0
and infinity, str, bytes, tuples, lists and str-keyed dicts, a registered type inside a
value); an ORMap of every type but ORMap itself (each with a removed key and a tuple
key), and ORMaps of ORMaps of ORSets and of MaxRegisters. The first ten files were
written before the decoder became strict; the rest were added with it, by the same
encoder. What a reader of a later format must do with these bytes is written in
docs/stability.rst.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from crdtgossip import (
    CRDT,
    DecodeError,
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
from tests.maxregister import MaxRegister, registered

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


def _gset_elements() -> GSet[object]:
    # gset.bin holds False too, which G-Sets refuse since (see REFUSED).
    gset: GSet[object] = GSet()
    for element in ("x", 7, -7, 2.5, None, 0, b"raw", (1, b"y"), ((),), INT_MAX, -math.inf):
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


def _nested_in_ormap(value_type: type[Any], write: Callable[[Any, str], object]) -> ORMap[object]:
    """An ORMap of ``value_type``: two replicas write one key, one of them another key
    that the first replica then removes."""
    nested: ORMap[object] = ORMap(value_type)
    nested.update("k", "a", lambda value: write(value, "a"))
    nested.update(("k", 2), "b", lambda value: write(value, "b"))
    nested.update("k", "b", lambda value: write(value, "b"))
    nested.update("gone", "b", lambda value: write(value, "b"))
    nested.remove("gone")
    return nested


def _ormap_pncounter() -> ORMap[object]:
    stock: ORMap[object] = ORMap(PNCounter)
    stock.update("apples", "a", lambda counter: counter.increment("a", 10))
    stock.update("apples", "b", lambda counter: counter.decrement("b", 3))
    stock.update(("pears", 1), "a", lambda counter: counter.increment("a", 2**33))
    stock.update("plums", "b", lambda counter: counter.increment("b"))
    stock.remove("plums")
    return stock


def _maxregister() -> MaxRegister:
    register = MaxRegister()
    register.write(2**40)
    return register


def _lwwmap_maxregister() -> LWWMap[object, object]:
    lww_map: LWWMap[object, object] = LWWMap()
    lww_map.set("best", _maxregister(), "a", timestamp=1)
    lww_map.set("list", [MaxRegister(), (1, "t")], "b", timestamp=2)
    return lww_map


def _ormap_ormap_maxregister() -> ORMap[str]:
    deep: ORMap[str] = ORMap(ORMap(MaxRegister))
    deep.update("k", "a", lambda inner: inner.update("j", "a", lambda r: r.write(5)))
    deep.update("k", "b", lambda inner: inner.update("j", "b", lambda r: r.write(6)))
    return deep


_NESTED_WRITES: dict[str, tuple[type[Any], Callable[[Any, str], object]]] = {
    "gcounter": (GCounter, lambda value, replica: value.increment(replica, 3)),
    "gset": (GSet, lambda value, replica: value.add((replica, 1))),
    "orset": (ORSet, lambda value, replica: value.add(replica, replica)),
    "ewflag": (EWFlag, lambda value, replica: value.enable(replica)),
    "lwwregister": (
        LWWRegister,
        lambda value, replica: value.set([replica, 1.5], replica, timestamp=9),
    ),
    "mvregister": (MVRegister, lambda value, replica: value.set({"by": replica}, replica)),
    "lwwmap": (LWWMap, lambda value, replica: value.set(replica, None, replica, timestamp=4)),
    "maxregister": (MaxRegister, lambda value, replica: value.write(len(replica) * 10)),
}

_EMPTY: dict[str, Callable[[], CRDT]] = {
    "gcounter": GCounter,
    "pncounter": PNCounter,
    "gset": GSet,
    "orset": ORSet,
    "ewflag": EWFlag,
    "lwwregister": LWWRegister,
    "mvregister": MVRegister,
    "lwwmap": LWWMap,
    "ormap_orset": lambda: ORMap(ORSet),
    "maxregister": MaxRegister,
}


def _nested_factory(name: str) -> Callable[[], CRDT]:
    value_type, write = _NESTED_WRITES[name]
    return lambda: _nested_in_ormap(value_type, write)


#: The states pinned, by the name of their vector file.
STATES: dict[str, Callable[[], CRDT]] = {
    "gcounter": _gcounter,
    "pncounter": _pncounter,
    "gset_elements": _gset_elements,
    "orset": _orset,
    "ewflag": _ewflag,
    "lwwregister": _lwwregister,
    "mvregister": _mvregister,
    "lwwmap": _lwwmap,
    "ormap_ormap_orset": _ormap_ormap_orset,
    "ormap_pncounter": _ormap_pncounter,
    "maxregister": _maxregister,
    "lwwmap_maxregister": _lwwmap_maxregister,
    "ormap_ormap_maxregister": _ormap_ormap_maxregister,
    **{f"ormap_{name}_keys": _nested_factory(name) for name in _NESTED_WRITES},
    **{f"empty_{name}": factory for name, factory in _EMPTY.items()},
}

#: Vectors of format 1 that the decoder refuses since it became strict, with why: a
#: bool as a G-Set element (equal to an int, so replicas holding ``{0}`` and ``{False}``
#: had equal states but other bytes). Kept, byte for byte, so that the refusal is pinned
#: too.
REFUSED: dict[str, str] = {"gset": "a bool"}


@pytest.fixture(autouse=True)
def max_register() -> Iterator[None]:
    with registered():
        yield


def _vector(name: str) -> bytes:
    return (VECTORS / f"{name}.bin").read_bytes()


def test_every_vector_file_is_pinned_by_a_state() -> None:
    # A vector without a state (or a state without a vector) is a check that never runs.
    assert sorted(path.stem for path in VECTORS.glob("*.bin")) == sorted([*STATES, *REFUSED])
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


@pytest.mark.parametrize("name", REFUSED)
def test_the_refused_vectors_stay_refused(name: str) -> None:
    with pytest.raises(DecodeError, match=REFUSED[name]):
        decode(_vector(name))


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
    assert len(_gset_elements().value) == 11
    for name in _NESTED_WRITES:
        assert set(STATES[f"ormap_{name}_keys"]().value) == {"k", ("k", 2)}

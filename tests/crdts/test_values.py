"""The element and value rules: exactly what the codec encodes, checked before a change.

Every accepted value round-trips through the codec; every refused one is refused with
an OperationError by the validators and (where the codec checks scalars) with an
EncodeError by the codec, for the same reason.
"""

from __future__ import annotations

import enum
from typing import Any

import pytest
from hypothesis import given

from crdtgossip import (
    EncodeError,
    GSet,
    LWWMap,
    LWWRegister,
    MVRegister,
    OperationError,
    ORMap,
    ORSet,
    decode,
    encode,
)
from crdtgossip.codec import decode_value, encode_value
from crdtgossip.crdts._values import (
    INT_MAX,
    INT_MIN,
    MAX_COLLECTION_LEN,
    MAX_DEPTH,
    MAX_STR_BYTES,
    check_element,
    check_value,
    scalar_problem,
    value_problem,
)
from crdtgossip.testing import strategies


class _Colour(enum.IntEnum):
    RED = 1


class _Name(str):
    pass


def _nested_lists(levels: int) -> object:
    value: object = []
    for _ in range(levels - 1):
        value = [value]
    return value


ELEMENTS_ACCEPTED: list[Any] = [
    None,
    True,
    0,
    INT_MAX,
    INT_MIN,
    1.5,
    float("inf"),
    -0.0,
    "",
    "plain",
    "ünïcode ✓",
    "x" * MAX_STR_BYTES,
    b"",
    b"\x00" * MAX_STR_BYTES,
    (),
    (1, ("a", (b"b", None))),
]

ELEMENTS_REFUSED: list[Any] = [
    INT_MAX + 1,
    INT_MIN - 1,
    float("nan"),
    "\ud800",  # a lone surrogate: UTF-8 cannot encode it
    "é" * (MAX_STR_BYTES // 2 + 1),  # short in characters, too long in UTF-8 bytes
    "x" * (MAX_STR_BYTES + 1),
    b"\x00" * (MAX_STR_BYTES + 1),
    bytearray(b"x"),
    _Colour.RED,  # an int subclass: the codec refuses what is not exactly an int
    _Name("x"),
    frozenset({1}),
    [1],  # lists are values, not elements
    {"k": 1},
    (1, [2]),
    ("x" * (MAX_STR_BYTES // 2), "y" * (MAX_STR_BYTES // 2)),  # a tuple packs > 1 MiB
    object(),
    1j,
]

VALUES_ACCEPTED: list[Any] = [
    *ELEMENTS_ACCEPTED,
    [1, [2, {"k": (3, b"x")}]],
    {"a": None, "b": [True]},
    (1, [2]),
    _nested_lists(MAX_DEPTH),
]

VALUES_REFUSED: list[Any] = [
    INT_MAX + 1,
    float("nan"),
    "\udfff",
    [1, [2, {3}]],
    {1: "int key"},
    {"\ud800": 1},  # a str key that cannot be encoded
    {"k": [float("nan")]},
    _nested_lists(MAX_DEPTH + 1),
    [None] * (MAX_COLLECTION_LEN + 1),
    {1, 2},
    object(),
]


@pytest.mark.parametrize("element", ELEMENTS_ACCEPTED, ids=lambda v: repr(v)[:40])
def test_accepted_elements_round_trip_through_the_codec(element: Any) -> None:
    assert check_element(element) is element
    assert value_problem(element, hashable=True) is None
    back = decode_value(encode_value(element))
    assert back == element
    assert type(back) is type(element)


@pytest.mark.parametrize("element", ELEMENTS_REFUSED, ids=lambda v: repr(v)[:40])
def test_refused_elements_raise_operation_error(element: Any) -> None:
    problem = value_problem(element, hashable=True)
    assert problem is not None
    with pytest.raises(OperationError, match="an element cannot be"):
        check_element(element)


@pytest.mark.parametrize("value", VALUES_ACCEPTED, ids=lambda v: repr(v)[:40])
def test_accepted_values_round_trip_through_the_codec(value: Any) -> None:
    assert check_value(value) is value
    back = decode_value(encode_value(value))
    assert back == value


@pytest.mark.parametrize("value", VALUES_REFUSED, ids=lambda v: repr(v)[:40])
def test_refused_values_raise_operation_error(value: Any) -> None:
    with pytest.raises(OperationError, match="a value cannot be"):
        check_value(value)


@pytest.mark.parametrize(
    "scalar", [INT_MAX + 1, INT_MIN - 1, float("nan"), "\ud800", b"x" * (MAX_STR_BYTES + 1)]
)
def test_the_codec_refuses_the_same_scalars_for_the_same_reason(scalar: object) -> None:
    problem = scalar_problem(scalar)
    assert problem is not None
    with pytest.raises(EncodeError) as refused:
        encode_value(scalar)
    assert str(refused.value) == problem


def test_the_messages_say_what_is_wrong() -> None:
    with pytest.raises(OperationError, match="lone surrogate"):
        check_element("a\ud800")
    with pytest.raises(OperationError, match="does not fit in 64 bits"):
        check_element(2**64)
    with pytest.raises(OperationError, match="nested deeper than 32"):
        check_value(_nested_lists(MAX_DEPTH + 1))
    with pytest.raises(OperationError, match="str keys"):
        check_value({1: 1})
    with pytest.raises(OperationError, match="an ORMap key cannot be"):
        check_element([1], "an ORMap key")


@given(strategies.elements())
def test_every_drawn_element_is_accepted(element: Any) -> None:
    assert check_element(element) is element


@given(strategies.values())
def test_every_drawn_value_is_accepted(value: Any) -> None:
    assert check_value(value) is value


# ---- every mutator that takes an element or value checks it before changing anything --


def test_mutators_refuse_before_changing_anything() -> None:
    bad_element, bad_value = "\ud800", [float("nan")]
    orset: ORSet[Any] = ORSet()
    orset.add("kept", "r")
    before = orset.copy()
    with pytest.raises(OperationError):
        orset.add(bad_element, "r")
    with pytest.raises(OperationError):
        orset.remove([1])
    assert orset == before

    gset: GSet[Any] = GSet()
    with pytest.raises(OperationError):
        gset.add(bad_element)
    assert gset == GSet()

    register: LWWRegister[Any] = LWWRegister()
    with pytest.raises(OperationError):
        register.set(bad_value, "r")
    assert register == LWWRegister()

    multi: MVRegister[Any] = MVRegister()
    with pytest.raises(OperationError):
        multi.set(bad_value, "r")
    assert multi == MVRegister()

    lww_map: LWWMap[Any, Any] = LWWMap()
    with pytest.raises(OperationError):
        lww_map.set(bad_element, 1, "r")
    with pytest.raises(OperationError):
        lww_map.set("k", bad_value, "r")
    with pytest.raises(OperationError):
        lww_map.remove(bad_element, "r")
    assert lww_map == LWWMap()

    ormap: ORMap[Any] = ORMap(ORSet)
    calls: list[object] = []
    with pytest.raises(OperationError):
        ormap.update(bad_element, "r", calls.append)
    with pytest.raises(OperationError):
        ormap.update("k", "r", lambda s: s.add(bad_element, "r"))
    with pytest.raises(OperationError):
        ormap.remove([1])
    assert calls == []  # fn never ran for a bad key
    assert ormap == ORMap(ORSet)


def test_replica_ids_the_codec_cannot_encode_are_refused() -> None:
    for replica in ["\ud800", _Name("r"), "r" * (MAX_STR_BYTES + 1)]:
        with pytest.raises(OperationError, match="replica id"):
            ORSet[str]().add("x", replica)
    state: ORSet[str] = ORSet()
    state.add("x", "ünïcode-replica")
    assert decode(encode(state)) == state

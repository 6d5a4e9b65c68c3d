"""The strategies draw what they promise: consistent elements, encodable values, pools."""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import find, given, settings
from hypothesis import strategies as st

from crdtgossip import (
    EWFlag,
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
)
from crdtgossip.codec import decode_value, encode_value
from crdtgossip.testing import Operation, strictly_equal
from crdtgossip.testing import strategies as ops

SCALAR_TYPES = (type(None), bool, int, float, str, bytes)


def is_element(value: object) -> bool:
    if isinstance(value, tuple):
        return all(is_element(item) for item in value)
    return isinstance(value, SCALAR_TYPES)


def is_value(value: object) -> bool:
    if isinstance(value, list):
        return all(is_value(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(key, str) and is_value(item) for key, item in value.items())
    return is_element(value)


def floats_in(value: object) -> list[float]:
    if isinstance(value, float):
        return [value]
    if isinstance(value, tuple | list):
        return [number for item in value for number in floats_in(item)]
    if isinstance(value, dict):
        return [number for item in value.values() for number in floats_in(item)]
    return []


@given(st.lists(ops.elements(), max_size=20))
def test_equal_elements_of_one_example_have_equal_types(drawn: list[Any]) -> None:
    for left in drawn:
        assert is_element(left)
        for right in drawn:
            if left == right:
                assert strictly_equal(left, right), (left, right)


@given(ops.elements())
def test_elements_hold_no_nan_and_no_integral_float(element: Any) -> None:
    for number in floats_in(element):
        assert not math.isnan(number)
        assert not number.is_integer()


def test_elements_reach_both_bools_and_the_ints_zero_and_one() -> None:
    # The per-example choice must not rule either out for good.
    assert find(ops.elements(), lambda element: element is True) is True
    assert find(ops.elements(), lambda element: type(element) is int and element in (0, 1)) in (
        0,
        1,
    )


@given(st.lists(ops.values(), max_size=5))
def test_values_are_values_and_keep_the_element_rule(drawn: list[Any]) -> None:
    assert all(is_value(value) for value in drawn)
    numbers = [number for value in drawn for number in floats_in(value)]
    assert not any(math.isnan(number) or number.is_integer() for number in numbers)


@settings(max_examples=50)
@given(ops.values())
def test_values_survive_the_codec_with_their_exact_types(value: Any) -> None:
    assert strictly_equal(decode_value(encode_value(value)), value)


def test_values_reach_lists_and_dicts() -> None:
    assert find(ops.values(), lambda value: isinstance(value, list) and len(value) > 0)
    assert find(ops.values(), lambda value: isinstance(value, dict) and len(value) > 0)


@given(ops.replica_ids(), ops.timestamps())
def test_replica_ids_and_timestamps(replica: str, timestamp: int) -> None:
    assert isinstance(replica, str)
    assert replica
    assert 0 <= timestamp <= ops.MAX_SMALL_TIMESTAMP


@given(st.lists(ops.orset_ops(), min_size=10, max_size=30))
def test_set_operations_draw_from_a_small_pool(drawn: list[Operation[Any]]) -> None:
    elements = {repr(op.args[0]) for op in drawn if op.args}
    assert len(elements) <= ops.POOL_SIZE


@given(st.lists(ops.lwwmap_ops(), min_size=10, max_size=30))
def test_map_operations_draw_keys_from_a_small_pool(drawn: list[Operation[Any]]) -> None:
    assert len({repr(op.args[0]) for op in drawn}) <= ops.POOL_SIZE


def test_removes_hit_added_elements() -> None:
    # The point of the pool: some example removes an element it also adds.
    def removes_an_added_element(drawn: list[Operation[Any]]) -> bool:
        added = {repr(op.args) for op in drawn if op.name == "add"}
        return any(op.name == "remove" and repr(op.args) in added for op in drawn)

    find(st.lists(ops.orset_ops(), max_size=10), removes_an_added_element)


def test_lww_operations_use_explicit_timestamps_and_the_clock() -> None:
    find(ops.lwwregister_ops(), lambda op: "timestamp=None" in repr(op))
    find(ops.lwwregister_ops(), lambda op: "timestamp=2" in repr(op))


CASES: list[tuple[Any, type]] = [
    (GCounter, GCounter),
    (PNCounter, PNCounter),
    (GSet, GSet),
    (ORSet, ORSet),
    (EWFlag, EWFlag),
    (LWWRegister, LWWRegister),
    (MVRegister, MVRegister),
    (LWWMap, LWWMap),
    (lambda: ORMap(ORSet), ORMap),
    (ORMap(ORMap(PNCounter)), ORMap),
]


@pytest.mark.parametrize(("factory_or_type", "kind"), CASES)
def test_operations_for_gives_operations_that_apply(factory_or_type: Any, kind: type) -> None:
    def make() -> Any:
        if isinstance(factory_or_type, type):
            return factory_or_type()
        if isinstance(factory_or_type, ORMap):
            return factory_or_type.copy()
        return factory_or_type()

    @settings(max_examples=30)
    @given(st.lists(ops.operations_for(factory_or_type), min_size=1, max_size=5))
    def apply_all(drawn: list[Operation[Any]]) -> None:
        state = make()
        assert type(state) is kind
        for operation in drawn:
            delta = operation(state, "r1")
            assert type(delta) is kind

    apply_all()


def test_operations_for_refuses_what_it_cannot_know() -> None:
    with pytest.raises(TypeError, match="value type"):
        ops.operations_for(ORMap)
    with pytest.raises(TypeError, match="no operations strategy"):
        ops.operations_for(int)  # type: ignore[arg-type]


@settings(max_examples=50)
@given(ops.ormap_ops(ops.orset_ops()))
def test_operation_reprs_read_like_calls(operation: Operation[Any]) -> None:
    if operation.name == "update":
        key, nested = operation.args
        assert repr(operation) == f"update({key!r}, {nested!r})"
        assert repr(nested).startswith(("add(", "remove(", "clear("))
    else:
        assert operation.name == "remove"
        assert repr(operation) == f"remove({operation.args[0]!r})"

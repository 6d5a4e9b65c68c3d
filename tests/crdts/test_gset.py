"""GSet: adds from every replica union; elements keep their exact types."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import GSet, MergeError, ORSet

REPLICAS = ("a", "b", "c")

adds = st.lists(st.tuples(st.sampled_from(REPLICAS), st.integers(0, 20)), max_size=30)


def test_concurrent_adds_union() -> None:
    a: GSet[str] = GSet()
    b: GSet[str] = GSet()
    from_a = a.add("x")
    from_b = b.add("y")
    a.merge(from_b)
    b.merge(from_a)
    assert a.value == b.value == frozenset({"x", "y"})
    assert a == b


def test_delta_is_the_one_element() -> None:
    gset: GSet[int] = GSet()
    for element in range(100):
        gset.add(element)
    delta = gset.add(1_000)
    assert delta.value == frozenset({1_000})


def test_adding_twice_is_adding_once() -> None:
    gset: GSet[str] = GSet()
    gset.add("x")
    gset.add("x")
    assert len(gset) == 1
    assert "x" in gset
    assert list(gset) == ["x"]


def test_tuple_and_bytes_elements() -> None:
    gset: GSet[object] = GSet()
    gset.add((1, "a"))
    gset.add(b"\x00")
    assert gset.value == frozenset({(1, "a"), b"\x00"})


@given(adds, st.randoms(use_true_random=False))
def test_every_replica_reaches_the_union(ops: list[tuple[str, int]], rng: random.Random) -> None:
    replicas: dict[str, GSet[int]] = {name: GSet() for name in REPLICAS}
    deltas = [replicas[name].add(element) for name, element in ops]
    for gset in replicas.values():
        delivery = deltas + rng.sample(deltas, len(deltas) // 2)
        rng.shuffle(delivery)
        for delta in delivery:
            gset.merge(delta)
    expected = frozenset(element for _, element in ops)
    assert all(gset.value == expected for gset in replicas.values())


def test_merge_of_another_type_is_refused() -> None:
    with pytest.raises(MergeError):
        GSet().merge(ORSet())  # type: ignore[arg-type]


def test_value_is_cached_between_changes_and_follows_them() -> None:
    a: GSet[int] = GSet()
    a.add(1)
    first = a.value
    assert a.value is first  # no rebuild without a change
    a.add(1)
    assert a.value is first  # adding a present element changes nothing
    b: GSet[int] = GSet()
    b.add(2)
    a.merge(b)
    assert a.value == frozenset({1, 2})
    assert 2 in a
    assert len(a) == 2
    a.merge(b)
    assert a.copy().value == frozenset({1, 2})


def test_an_element_the_codec_cannot_encode_is_refused() -> None:
    from crdtgossip import OperationError

    a: GSet[object] = GSet()
    with pytest.raises(OperationError, match="a G-Set element cannot be"):
        a.add(2**64)
    with pytest.raises(OperationError, match="bool"):
        a.add(True)
    with pytest.raises(OperationError, match=r"-0\.0 equals 0\.0"):
        a.add((1, -0.0))
    assert a == GSet()

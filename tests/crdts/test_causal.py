"""The causal kernel: :class:`CausalContext` (version vector plus dot cloud).

Examples pin the compaction rules; the properties check that the compressed form is
exactly the set of dots it was built from, and canonical (equal sets, equal contexts).
"""

from __future__ import annotations

import random
from collections.abc import Iterable

from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.crdts import CausalContext, Dot

REPLICAS = ("a", "b", "c")
# Counters stay small so that draws often fill gaps and trigger compaction.
MAX_COUNTER = 12

dots = st.tuples(st.sampled_from(REPLICAS), st.integers(min_value=1, max_value=MAX_COUNTER))
dot_lists = st.lists(dots, max_size=40)


def dot_set(context: CausalContext) -> set[Dot]:
    """Every dot ``context`` holds, enumerated."""
    replicas = set(context.vector) | set(context.cloud)
    return {(replica, counter) for replica in replicas for counter in context.dots_of(replica)}


def assert_invariants(context: CausalContext) -> None:
    """The canonical-form invariants stated in CausalContext's docstring."""
    for replica, top in context.vector.items():
        assert top >= 1, (replica, top)
    for replica, counters in context.cloud.items():
        assert counters, f"empty cloud set kept for {replica!r}"
        floor = context.vector.get(replica, 0) + 1
        assert all(counter > floor for counter in counters), (replica, floor, counters)


def built(dot_iterable: Iterable[Dot]) -> CausalContext:
    context = CausalContext.from_dots(dot_iterable)
    assert_invariants(context)
    return context


# ---- examples -----------------------------------------------------------------------------


def test_empty_context() -> None:
    context = CausalContext()
    assert context.is_empty()
    assert context.vector == {}
    assert context.cloud == {}
    assert ("a", 1) not in context
    assert not context.knows("a")
    assert context.max_counter("a") == 0


def test_contiguous_dots_become_a_vector_entry() -> None:
    context = built([("a", 1), ("a", 2), ("a", 3), ("b", 1)])
    assert context.vector == {"a": 3, "b": 1}
    assert context.cloud == {}


def test_out_of_order_dots_compact_when_the_gap_fills() -> None:
    context = built([("a", 3), ("a", 1), ("a", 5)])
    assert context.vector == {"a": 1}
    assert context.cloud == {"a": {3, 5}}
    context.add("a", 2)
    assert context.vector == {"a": 3}
    assert context.cloud == {"a": {5}}
    context.add("a", 4)
    assert context.vector == {"a": 5}
    assert context.cloud == {}


def test_cloud_without_a_vector_entry() -> None:
    context = built([("a", 2), ("a", 3)])
    assert context.vector == {}
    assert context.cloud == {"a": {2, 3}}
    assert context.knows("a")
    assert ("a", 1) not in context
    assert ("a", 2) in context
    assert context.max_counter("a") == 3


def test_duplicates_and_order_do_not_matter() -> None:
    assert built([("a", 2), ("a", 1), ("a", 2)]) == built([("a", 1), ("a", 2)])


def test_covers_matches_membership() -> None:
    context = built([("a", 1), ("a", 2), ("a", 4), ("b", 3)])
    for replica, counter in [("a", 1), ("a", 2), ("a", 4), ("b", 3)]:
        assert context.covers(replica, counter)
        assert (replica, counter) in context
    for replica, counter in [("a", 3), ("a", 5), ("b", 1), ("b", 2), ("c", 1)]:
        assert not context.covers(replica, counter)
        assert (replica, counter) not in context


def test_next_dot_extends_the_vector() -> None:
    context = CausalContext()
    assert context.next_dot("a") == ("a", 1)
    assert context.next_dot("a") == ("a", 2)
    assert context.next_dot("b") == ("b", 1)
    assert context.vector == {"a": 2, "b": 1}
    assert context.cloud == {}


def test_next_dot_after_a_gap_goes_past_every_seen_dot() -> None:
    # A replica that saw ("a", 5) out of order must never reissue a dot <= 5.
    context = built([("a", 1), ("a", 5)])
    assert context.next_dot("a") == ("a", 6)
    assert context.vector == {"a": 1}
    assert context.cloud == {"a": {5, 6}}
    assert_invariants(context)
    context.add("a", 2)
    context.add("a", 3)
    context.add("a", 4)
    assert context.vector == {"a": 6}
    assert context.cloud == {}


def test_merge_is_union_and_compacts() -> None:
    left = built([("a", 1), ("a", 3), ("b", 2)])
    right = built([("a", 2), ("b", 1), ("c", 4)])
    right_before = right.copy()
    left.merge(right)
    assert_invariants(left)
    assert left.vector == {"a": 3, "b": 2}
    assert left.cloud == {"c": {4}}
    assert right == right_before


def test_merge_vector_over_cloud_drops_covered_cloud_entries() -> None:
    left = built([("a", 3), ("a", 7)])
    left.merge(built([("a", n) for n in range(1, 6)]))
    assert left.vector == {"a": 5}
    assert left.cloud == {"a": {7}}
    assert_invariants(left)


def test_copy_is_independent() -> None:
    original = built([("a", 1), ("a", 3)])
    duplicate = original.copy()
    duplicate.add("a", 2)
    duplicate.next_dot("b")
    assert original == built([("a", 1), ("a", 3)])
    assert duplicate != original


def test_dots_of_enumerates_vector_and_cloud() -> None:
    context = built([("a", 1), ("a", 2), ("a", 6)])
    assert sorted(context.dots_of("a")) == [1, 2, 6]
    assert list(context.dots_of("z")) == []


# ---- properties ---------------------------------------------------------------------------


@given(dot_lists)
def test_compacted_context_holds_exactly_its_dots(dot_list: list[Dot]) -> None:
    context = built(dot_list)
    assert dot_set(context) == set(dot_list)
    for replica in REPLICAS:
        for counter in range(1, MAX_COUNTER + 2):
            expected = (replica, counter) in set(dot_list)
            assert ((replica, counter) in context) is expected
            assert context.covers(replica, counter) is expected


@given(dot_lists, st.randoms(use_true_random=False))
def test_equal_dot_sets_give_equal_contexts(dot_list: list[Dot], rng: random.Random) -> None:
    shuffled = dot_list + rng.sample(dot_list, len(dot_list) // 2)  # with duplicates
    rng.shuffle(shuffled)
    first, second = built(dot_list), built(shuffled)
    assert first == second
    assert first.vector == second.vector
    assert first.cloud == second.cloud


@given(dot_lists)
def test_adding_one_by_one_equals_building_at_once(dot_list: list[Dot]) -> None:
    context = CausalContext()
    for replica, counter in dot_list:
        context.add(replica, counter)
        assert_invariants(context)
    assert context == built(dot_list)


@given(dot_lists, dot_lists)
def test_merge_equals_the_context_of_the_union(left: list[Dot], right: list[Dot]) -> None:
    merged = built(left)
    merged.merge(built(right))
    assert_invariants(merged)
    assert merged == built(left + right)


@given(dot_lists, st.sampled_from(REPLICAS))
def test_next_dot_is_new_and_recorded(dot_list: list[Dot], replica: str) -> None:
    context = built(dot_list)
    seen = set(dot_list)
    dot = context.next_dot(replica)
    assert dot not in seen
    assert dot[0] == replica
    assert all(dot[1] > counter for r, counter in seen if r == replica)
    assert dot in context
    assert_invariants(context)
    assert context == built([*dot_list, dot])


def test_next_dot_past_64_bits_is_refused_and_changes_nothing() -> None:
    import pytest

    from crdtgossip import OperationError

    context = CausalContext.from_dots([("a", 2**64 - 1), ("b", 1)])
    before = context.copy()
    assert not context.has_room("a", 1)
    assert context.has_room("b", 10)
    with pytest.raises(OperationError, match="every dot counter"):
        context.next_dot("a")
    assert context == before
    assert context.next_dot("b") == ("b", 2)


@given(st.lists(st.tuples(st.sampled_from(REPLICAS), st.integers(1, MAX_COUNTER))))
def test_dots_lists_every_dot_once(dots: list[Dot]) -> None:
    context = CausalContext.from_dots(dots)
    listed = list(context.dots())
    assert len(listed) == len(set(listed))
    assert set(listed) == set(dots)

"""ORMap: observed-remove map of nested CRDTs.

Examples name each rule of ormap.py's docstring: an update concurrent with a remove
survives with only its own effect (for ORSet, PNCounter, LWWRegister and ORMap nested);
a removed counter is reset; deltas carry the nested delta; nested types must agree.
The model-based properties check the observed-remove rule in general for
``ORMap(ORSet)`` and ``ORMap(ORMap(ORSet))``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import (
    EWFlag,
    GCounter,
    GSet,
    LWWRegister,
    MergeError,
    MVRegister,
    OperationError,
    ORMap,
    ORSet,
    PNCounter,
    decode,
    encode,
)
from crdtgossip.crdts import CausalContext


def exchange(a: ORMap[Any], b: ORMap[Any], from_a: ORMap[Any], from_b: ORMap[Any]) -> None:
    """Deliver each side's delta to the other, and check that they converged."""
    a.merge(from_b)
    b.merge(from_a)
    assert a == b
    assert a.value == b.value


def dot_count(context: CausalContext) -> int:
    return sum(
        len(list(context.dots_of(replica))) for replica in set(context.vector) | set(context.cloud)
    )


# ---- an update concurrent with a remove -------------------------------------------------


def test_orset_nested_update_concurrent_with_remove_keeps_only_that_update() -> None:
    a: ORMap[str] = ORMap(ORSet)
    a.update("k", "a", lambda s: s.add("x", "a"))
    b = a.copy()
    removed = b.remove("k")
    updated = a.update("k", "c", lambda s: s.add("y", "c"))
    assert "k" not in b
    exchange(a, b, updated, removed)
    assert a.value == {"k": frozenset({"y"})}


def test_orset_nested_re_add_concurrent_with_remove_survives() -> None:
    a: ORMap[str] = ORMap(ORSet)
    a.update("k", "a", lambda s: s.add("x", "a"))
    a.update("k", "a", lambda s: s.add("gone", "a"))
    b = a.copy()
    removed = b.remove("k")
    updated = a.update("k", "a", lambda s: s.add("x", "a"))
    exchange(a, b, updated, removed)
    assert a.value == {"k": frozenset({"x"})}


def test_pncounter_nested_concurrent_increment_survives_alone() -> None:
    # "A removed counter is reset": the remove discards the 10 it saw; the concurrent
    # increment by another replica survives by itself.
    a: ORMap[str] = ORMap(PNCounter)
    a.update("k", "a", lambda c: c.increment("a", 10))
    b = a.copy()
    removed = b.remove("k")
    updated = a.update("k", "c", lambda c: c.increment("c", 1))
    exchange(a, b, updated, removed)
    assert a.value == {"k": 1}


def test_pncounter_nested_concurrent_updates_by_two_replicas_both_count() -> None:
    a: ORMap[str] = ORMap(PNCounter)
    a.update("k", "a", lambda c: c.increment("a", 10))
    b, c = a.copy(), a.copy()
    removed = a.remove("k")
    from_b = b.update("k", "b", lambda n: n.increment("b", 2))
    from_c = c.update("k", "c", lambda n: n.decrement("c", 5))
    for replica in (a, b, c):
        for delta in (removed, from_b, from_c):
            replica.merge(delta)
    assert a == b == c
    assert a.value == {"k": -3}


def test_pncounter_nested_update_by_the_earlier_writer_keeps_its_own_count() -> None:
    # What ormap.py's own example shows (10 - 3 = 7): a replica's update carries its
    # whole contribution to the key (a counter slot is a running total), so when the
    # replica that made the observed increments updates concurrently with the remove,
    # its earlier increments come back with the update. Only other replicas' observed
    # increments are reset.
    a: ORMap[str] = ORMap(PNCounter)
    a.update("k", "a", lambda c: c.increment("a", 10))
    a.update("k", "b", lambda c: c.increment("b", 100))
    b = a.copy()
    removed = b.remove("k")
    updated = a.update("k", "a", lambda c: c.decrement("a", 3))
    exchange(a, b, updated, removed)
    assert a.value == {"k": 7}


def test_removed_counter_starts_again_from_zero() -> None:
    a: ORMap[str] = ORMap(PNCounter)
    first = a.update("k", "a", lambda c: c.increment("a", 10))
    b: ORMap[str] = ORMap(PNCounter)
    b.merge(first)
    removed = b.remove("k")
    a.merge(removed)
    assert a.value == b.value == {}
    again = a.update("k", "a", lambda c: c.increment("a", 1))
    b.merge(again)
    assert a.value == b.value == {"k": 1}
    b.merge(first)  # a late duplicate of the removed update changes nothing
    assert b.value == {"k": 1}


def test_lwwregister_nested_concurrent_write_survives_even_with_a_lower_timestamp() -> None:
    a: ORMap[str] = ORMap(LWWRegister)
    a.update("k", "a", lambda r: r.set("seen", "a", timestamp=10))
    b = a.copy()
    removed = b.remove("k")
    # Another replica's write, concurrent with the remove: it is all that is left, even
    # though the removed write had a higher timestamp.
    updated = a.update("k", "c", lambda r: r.set("concurrent", "c", timestamp=5))
    assert a["k"].value == "seen"  # before the remove arrives, 10 beats 5
    exchange(a, b, updated, removed)
    assert a.value == {"k": "concurrent"}
    assert a["k"].timestamp == 5


def test_ormap_nested_concurrent_update_keeps_only_its_inner_key() -> None:
    a: ORMap[str] = ORMap(ORMap(ORSet))
    a.update("k", "a", lambda m: m.update("seen", "a", lambda s: s.add("x", "a")))
    b = a.copy()
    removed = b.remove("k")
    updated = a.update("k", "c", lambda m: m.update("new", "c", lambda s: s.add("y", "c")))
    exchange(a, b, updated, removed)
    assert a.value == {"k": {"new": frozenset({"y"})}}


def test_ormap_nested_concurrent_update_of_the_same_inner_key() -> None:
    a: ORMap[str] = ORMap(ORMap(ORSet))
    a.update("k", "a", lambda m: m.update("j", "a", lambda s: s.add("x", "a")))
    b = a.copy()
    removed = b.remove("k")
    updated = a.update("k", "c", lambda m: m.update("j", "c", lambda s: s.add("y", "c")))
    exchange(a, b, updated, removed)
    assert a.value == {"k": {"j": frozenset({"y"})}}


def test_observed_remove_removes_everywhere() -> None:
    a: ORMap[str] = ORMap(ORSet)
    added = a.update("k", "a", lambda s: s.add("x", "a"))
    b: ORMap[str] = ORMap(ORSet)
    b.merge(added)
    removed = b.remove("k")
    a.merge(removed)
    assert a.value == b.value == {}
    a.merge(added)
    assert a.value == {}
    assert a == b


def test_remove_of_an_absent_key_changes_nothing() -> None:
    a: ORMap[str] = ORMap(ORSet)
    a.update("k", "a", lambda s: s.add("x", "a"))
    before = a.copy()
    delta = a.remove("absent")
    assert delta == ORMap(ORSet)
    assert a == before


def test_remove_of_an_unobserved_key_does_not_remove_it() -> None:
    a: ORMap[str] = ORMap(GCounter)
    b: ORMap[str] = ORMap(GCounter)
    added = a.update("k", "a", lambda c: c.increment("a"))
    removed = b.remove("k")
    a.merge(removed)
    b.merge(added)
    assert a.value == b.value == {"k": 1}


@pytest.mark.parametrize(
    ("value_type", "first", "second", "expected"),
    [
        (ORSet, lambda s: s.add("x", "a"), lambda s: s.remove("x"), frozenset()),
        (EWFlag, lambda f: f.enable("a"), lambda f: f.disable(), False),
    ],
)
def test_key_stays_after_an_update_that_empties_the_nested_value(
    value_type: type[Any],
    first: Callable[[Any], Any],
    second: Callable[[Any], Any],
    expected: object,
) -> None:
    a: ORMap[str] = ORMap(value_type)
    a.update("k", "a", first)
    emptied = a.update("k", "a", second)
    assert a.value == {"k": expected}
    b: ORMap[str] = ORMap(value_type)
    b.merge(emptied)
    assert b.value == {"k": expected}


def test_concurrent_updates_to_one_key_merge_their_nested_values() -> None:
    a: ORMap[str] = ORMap(ORSet)
    b: ORMap[str] = ORMap(ORSet)
    from_a = a.update("k", "a", lambda s: s.add("x", "a"))
    from_b = b.update("k", "b", lambda s: s.add("y", "b"))
    exchange(a, b, from_a, from_b)
    assert a.value == {"k": frozenset({"x", "y"})}


# ---- deltas carry the nested delta ------------------------------------------------------

NESTED_SIZE = 1_000


def adding(element: object, replica: str) -> Callable[[Any], Any]:
    """An update function adding ``element`` to a nested ORSet."""
    return lambda nested: nested.add(element, replica)


def updating(key: object, fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """An update function applying ``fn`` to ``key`` of a nested ORMap, as replica "a"."""
    return lambda nested: nested.update(key, "a", fn)


def incrementing(replica: str) -> Callable[[Any], Any]:
    """An update function incrementing a nested counter by one."""
    return lambda nested: nested.increment(replica)


def test_delta_carries_the_nested_orset_delta_not_the_set() -> None:
    m: ORMap[str] = ORMap(ORSet)
    for element in range(NESTED_SIZE):
        m.update("k", "a", adding(element, "a"))
    delta = m.update("k", "a", lambda s: s.add("new", "a"))
    assert len(m["k"]) == NESTED_SIZE + 1
    assert len(delta["k"]) == 1
    assert delta["k"].value == frozenset({"new"})
    # The element's dot, the key's new tag, and the tag it replaced.
    assert dot_count(delta.context) == 3


def test_delta_carries_the_nested_ormap_delta_not_the_map() -> None:
    m: ORMap[str] = ORMap(ORMap(ORSet))
    for inner in range(NESTED_SIZE):
        m.update("k", "a", updating(inner, adding("x", "a")))
    delta = m.update("k", "a", lambda n: n.update(7, "a", lambda s: s.add("y", "a")))
    assert len(m["k"]) == NESTED_SIZE
    assert len(delta["k"]) == 1
    assert delta.value == {"k": {7: frozenset({"y"})}}
    target = m.copy()
    target.merge(delta)
    assert target == m


# Replicas that each incremented one nested counter (each update of a non-causal nested
# value joins every replica's contribution, so this stays well below NESTED_SIZE).
COUNTER_WRITERS = 100


def test_delta_carries_one_counter_slot() -> None:
    m: ORMap[str] = ORMap(PNCounter)
    for n in range(COUNTER_WRITERS):
        replica = f"r{n}"
        m.update("k", replica, incrementing(replica))
    delta = m.update("k", "r5", lambda c: c.increment("r5", 4))
    assert m["k"].value == COUNTER_WRITERS + 4
    assert delta["k"].increments.counts == {"r5": 5}
    assert delta["k"].decrements.counts == {}


# ---- nesting and types -------------------------------------------------------------------


def test_nested_prototype() -> None:
    m: ORMap[str] = ORMap(ORMap(ORSet))
    assert m.value_type is ORMap
    m.update("team", "a", lambda inner: inner.update("alice", "a", lambda s: s.add("ops", "a")))
    m.update("team", "a", lambda inner: inner.update("bob", "a", lambda s: s.add("dev", "a")))
    inner = m["team"]
    assert isinstance(inner, ORMap)
    assert inner.value_type is ORSet
    assert isinstance(inner["alice"], ORSet)
    assert m.value == {"team": {"alice": frozenset({"ops"}), "bob": frozenset({"dev"})}}


def test_three_levels_of_nesting() -> None:
    m: ORMap[str] = ORMap(ORMap(ORMap(PNCounter)))
    m.update(
        "x",
        "a",
        lambda y: y.update("y", "a", lambda z: z.update("z", "a", lambda c: c.increment("a"))),
    )
    assert m.value == {"x": {"y": {"z": 1}}}


def test_getitem_is_a_detached_copy() -> None:
    m: ORMap[str] = ORMap(ORSet)
    m.update("k", "a", lambda s: s.add("x", "a"))
    nested = m["k"]
    nested.add("y", "a")
    nested.remove("x")
    assert m.value == {"k": frozenset({"x"})}


def test_mapping_reads() -> None:
    m: ORMap[str] = ORMap(GSet)
    m.update("k", "a", lambda s: s.add(1))
    assert "k" in m
    assert "z" not in m
    assert len(m) == 1
    assert list(m) == ["k"]
    assert m.keys() == ["k"]
    assert m.get("z") is None
    assert m.get("z", 0) == 0
    with pytest.raises(KeyError):
        m["z"]


@pytest.mark.parametrize(
    ("left", "right"),
    [
        (lambda: ORMap(ORSet), lambda: ORMap(PNCounter)),
        (lambda: ORMap(ORMap(ORSet)), lambda: ORMap(ORMap(GSet))),
        (lambda: ORMap(ORMap(ORSet)), lambda: ORMap(ORSet)),
        (lambda: ORMap(ORMap(ORMap(ORSet))), lambda: ORMap(ORMap(ORMap(EWFlag)))),
        (lambda: ORMap(ORSet), ORSet),
    ],
)
def test_merging_different_nested_types_is_refused(
    left: Callable[[], Any], right: Callable[[], Any]
) -> None:
    a, b = left(), right()
    with pytest.raises(MergeError):
        a.merge(b)
    with pytest.raises(MergeError):
        b.merge(a)


def test_refused_merge_changes_nothing() -> None:
    a: ORMap[str] = ORMap(ORSet)
    a.update("k", "a", lambda s: s.add("x", "a"))
    before = a.copy()
    other: ORMap[str] = ORMap(MVRegister)
    other.update("k", "b", lambda r: r.set(1, "b"))
    with pytest.raises(MergeError):
        a.merge(other)
    assert a == before


# ---- misuse ------------------------------------------------------------------------------


def test_empty_replica_is_refused() -> None:
    m: ORMap[str] = ORMap(ORSet)
    with pytest.raises(OperationError):
        m.update("k", "", lambda s: s.add("x", "a"))
    assert m == ORMap(ORSet)


@pytest.mark.parametrize(
    "fn",
    [
        lambda s: None,
        lambda s: ORSet(),  # the wrong type for an ORMap(GCounter)
        lambda s: PNCounter().increment("a"),
    ],
)
def test_update_function_must_return_the_nested_delta(fn: Callable[[Any], Any]) -> None:
    m: ORMap[str] = ORMap(GCounter)
    with pytest.raises(OperationError):
        m.update("k", "a", fn)


def test_nested_map_update_function_must_return_a_map_of_the_same_type() -> None:
    m: ORMap[str] = ORMap(ORMap(ORSet))
    with pytest.raises(OperationError):
        m.update("k", "a", lambda inner: ORMap(GSet))


@pytest.mark.parametrize("value_type", [int, dict, 3, None])
def test_value_type_must_be_a_crdt(value_type: object) -> None:
    with pytest.raises(OperationError):
        ORMap(value_type)


def test_prototype_must_be_empty() -> None:
    counter = GCounter()
    counter.increment("a")
    with pytest.raises(OperationError):
        ORMap(counter)
    inner: ORMap[str] = ORMap(ORSet)
    inner.update("k", "a", lambda s: s.add("x", "a"))
    with pytest.raises(OperationError):
        ORMap(inner)


# ---- observed remove, in general ---------------------------------------------------------

Path = tuple[int, ...]


@dataclass(frozen=True)
class Event:
    """One operation in the model.

    ``touches``: the paths it keeps alive (the keys it updates and the element it adds);
    ``kills``: the path it removes (a key, an inner key or an element), if any;
    ``seen``: the events its replica knew when it ran.
    """

    touches: frozenset[Path]
    kills: Path | None
    seen: frozenset[int]


def alive(path: Path, events: list[Event], known: set[int]) -> bool:
    """An update of ``path`` that no known removal of ``path`` or of a prefix saw."""

    def killed(update: int) -> bool:
        for other in known:
            kills = events[other].kills
            if kills is not None and path[: len(kills)] == kills and update in events[other].seen:
                return True
        return False

    return any(path in events[u].touches and not killed(u) for u in known)


REPLICAS = ("a", "b", "c")
KEYS = (0, 1)
ELEMENTS = (0, 1)

replica_index = st.integers(0, len(REPLICAS) - 1)
keys = st.sampled_from(KEYS)
items = st.sampled_from(ELEMENTS)


def run_model(
    ops: list[tuple[Any, ...]],
    make: Callable[[], ORMap[int]],
    apply: Callable[[ORMap[int], str, tuple[Any, ...]], tuple[Event, ORMap[int]]],
    expected: Callable[[list[Event], set[int]], dict[int, Any]],
) -> None:
    """Run ``ops`` on three replicas, checking every replica against the model."""
    maps = [make() for _ in REPLICAS]
    seen: list[set[int]] = [set() for _ in REPLICAS]
    events: list[Event] = []
    deltas: list[ORMap[int]] = []
    for op in ops:
        if op[0] == "sync":
            _, source, target = op
            maps[target].merge(maps[source])
            seen[target] |= seen[source]
        else:
            target = op[1]
            event, delta = apply(maps[target], REPLICAS[target], op)
            deltas.append(delta)
            events.append(Event(event.touches, event.kills, frozenset(seen[target])))
            seen[target].add(len(events) - 1)
        assert maps[target].value == expected(events, seen[target]), op

    everything = make()
    for replica_map in maps:
        everything.merge(replica_map)
    assert everything.value == expected(events, set(range(len(events))))
    # The deltas alone carry every effect, removals included.
    from_deltas = make()
    for delta in reversed(deltas):
        from_deltas.merge(delta)
    assert from_deltas == everything


flat_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), replica_index, keys, items),
        st.tuples(st.just("discard"), replica_index, keys, items),
        st.tuples(st.just("remove"), replica_index, keys),
        st.tuples(st.just("sync"), replica_index, replica_index),
    ),
    max_size=30,
)


def apply_flat(m: ORMap[int], replica: str, op: tuple[Any, ...]) -> tuple[Event, ORMap[int]]:
    kind, _, key, *rest = op
    none: frozenset[int] = frozenset()
    if kind == "add":
        delta = m.update(key, replica, lambda s: s.add(rest[0], replica))
        return Event(frozenset({(key,), (key, rest[0])}), None, none), delta
    if kind == "discard":
        delta = m.update(key, replica, lambda s: s.remove(rest[0]))
        return Event(frozenset({(key,)}), (key, rest[0]), none), delta
    return Event(frozenset(), (key,), none), m.remove(key)


def expected_flat(events: list[Event], known: set[int]) -> dict[int, Any]:
    return {
        key: frozenset(e for e in ELEMENTS if alive((key, e), events, known))
        for key in KEYS
        if alive((key,), events, known)
    }


@given(flat_ops)
def test_ormap_of_orset_is_observed_remove_for_any_history(ops: list[tuple[Any, ...]]) -> None:
    run_model(ops, lambda: ORMap(ORSet), apply_flat, expected_flat)


nested_ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), replica_index, keys, keys, items),
        st.tuples(st.just("discard"), replica_index, keys, keys, items),
        st.tuples(st.just("remove_inner"), replica_index, keys, keys),
        st.tuples(st.just("remove"), replica_index, keys),
        st.tuples(st.just("sync"), replica_index, replica_index),
    ),
    max_size=30,
)


def apply_nested(m: ORMap[int], replica: str, op: tuple[Any, ...]) -> tuple[Event, ORMap[int]]:
    kind, _, key, *rest = op
    none: frozenset[int] = frozenset()
    if kind == "add":
        inner, element = rest
        delta = m.update(
            key, replica, lambda n: n.update(inner, replica, lambda s: s.add(element, replica))
        )
        touched = frozenset({(key,), (key, inner), (key, inner, element)})
        return Event(touched, None, none), delta
    if kind == "discard":
        inner, element = rest
        delta = m.update(
            key, replica, lambda n: n.update(inner, replica, lambda s: s.remove(element))
        )
        return Event(frozenset({(key,), (key, inner)}), (key, inner, element), none), delta
    if kind == "remove_inner":
        inner = rest[0]
        delta = m.update(key, replica, lambda n: n.remove(inner))
        return Event(frozenset({(key,)}), (key, inner), none), delta
    return Event(frozenset(), (key,), none), m.remove(key)


def expected_nested(events: list[Event], known: set[int]) -> dict[int, Any]:
    return {
        key: {
            inner: frozenset(e for e in ELEMENTS if alive((key, inner, e), events, known))
            for inner in KEYS
            if alive((key, inner), events, known)
        }
        for key in KEYS
        if alive((key,), events, known)
    }


@given(nested_ops)
def test_ormap_of_ormap_is_observed_remove_for_any_history(ops: list[tuple[Any, ...]]) -> None:
    run_model(ops, lambda: ORMap(ORMap(ORSet)), apply_nested, expected_nested)


# ---- reading without a copy ---------------------------------------------------------------


def test_view_is_the_live_nested_value_and_getitem_a_copy() -> None:
    m: ORMap[str] = ORMap(ORSet)
    m.update("k", "a", lambda s: s.add("x", "a"))
    view = m.view("k")
    assert view is m.view("k")
    assert view.value == frozenset({"x"})
    m.update("k", "a", lambda s: s.add("y", "a"))
    assert view.value == frozenset({"x", "y"})  # live: follows the map
    assert m["k"] is not view
    assert m.get_view("absent") is None
    assert m.get_view("absent", 0) == 0
    assert m.get_view("k") is view
    with pytest.raises(KeyError):
        m.view("absent")


def test_view_of_a_non_causal_value_is_the_join_of_the_contributions() -> None:
    m: ORMap[str] = ORMap(GCounter)
    m.update("k", "a", lambda c: c.increment("a", 2))
    assert m.view("k").value == 2
    assert m.view("k") is m.view("k")  # one writer: its contribution, no new object
    other = m.copy()
    other.update("k", "b", lambda c: c.increment("b", 3))
    m.merge(other)
    assert m.view("k").value == 5
    assert m.value == {"k": 5}


def test_update_refuses_a_function_returning_the_nested_state() -> None:
    m: ORMap[str] = ORMap(ORSet)
    with pytest.raises(OperationError, match="nested state itself"):
        m.update("k", "a", lambda s: (s.add("x", "a"), s)[1])


def test_a_decoded_map_builds_its_index_and_merges_deltas() -> None:
    a: ORMap[int] = ORMap(ORSet)
    for n in range(20):
        a.update(n, "a", lambda s, n=n: s.add(n, "a"))
    b = decode(encode(a))
    assert b._index is None  # built on first use
    b.merge(a.remove(4))
    b.merge(a.update(5, "a", lambda s: s.add("more", "a")))
    assert b == a


# ---- integer edges -------------------------------------------------------------------------


@pytest.mark.parametrize("prototype", [ORSet, GCounter, ORMap(ORSet)], ids=repr)
def test_an_exhausted_replica_is_refused_before_fn_runs(prototype: Any) -> None:
    m: ORMap[str] = ORMap(prototype)
    peer: ORMap[str] = ORMap(prototype)
    peer._context = CausalContext.from_dots([("a", 2**64 - 1)])
    m.merge(peer)
    before = m.copy()
    ran: list[object] = []
    with pytest.raises(OperationError, match="every dot counter"):
        m.update("k", "a", ran.append)
    assert ran == []
    assert m == before
    m.update("k", "b", write_as_b)
    assert "k" in m  # another replica id still writes


def write_as_b(nested: Any) -> Any:
    if isinstance(nested, GCounter):
        return nested.increment("b")
    if isinstance(nested, ORMap):
        return nested.update("i", "b", lambda s: s.add(1, "b"))
    return nested.add(1, "b")

"""The ORMap dot index: a merge visits only the keys a delta touches, and stays exact.

The spies count how often the nested values are joined, never how long anything takes:
merging one key's delta into a map of many keys must join that key's nested value
alone. The properties check that the index holds exactly the live dots of the map after
any history of updates, removes and merges, for causal and non-causal nested types and
for maps of maps.
"""

from __future__ import annotations

from typing import Any, Self

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip import (
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    ORMap,
    ORSet,
    PNCounter,
    decode,
    encode,
)
from crdtgossip.crdts import CausalContext
from crdtgossip.crdts._causal import CausalContext as _Context
from crdtgossip.crdts._dotindex import covered_dots, index_add, index_discard
from crdtgossip.testing import strategies

KEYS = 100


class SpySet(ORSet[Any]):
    """An ORSet that counts the joins of its store (class-wide)."""

    joins = 0

    def _join_store(self, other: Self, my_context: _Context, their_context: _Context) -> None:
        type(self).joins += 1
        super()._join_store(other, my_context, their_context)


@pytest.fixture(autouse=True)
def _reset_spy() -> None:
    SpySet.joins = 0


def filled(prototype: Any, keys: int = KEYS) -> ORMap[Any]:
    m: ORMap[Any] = ORMap(prototype)
    for n in range(keys):
        if isinstance(m.prototype, ORMap):
            m.update(n, "a", lambda inner, n=n: inner.update(n, "a", lambda s: s.add(n, "a")))
        else:
            m.update(n, "a", lambda s, n=n: s.add(n, "a"))
    return m


def test_merging_an_add_joins_only_that_keys_nested_set() -> None:
    a = filled(SpySet)
    b = a.copy()
    delta = a.update(7, "a", lambda s: s.add("more", "a"))
    SpySet.joins = 0
    b.merge(delta)
    assert SpySet.joins == 1
    assert b == a


def test_merging_a_re_add_and_a_remove_joins_only_those_keys() -> None:
    a = filled(SpySet)
    b = a.copy()
    readded = a.update(3, "a", lambda s: s.add(3, "a"))  # covers the old dot of 3
    removed = a.remove(5)  # no entries: the key is found through its dots alone
    SpySet.joins = 0
    b.merge(readded)
    b.merge(removed)
    assert SpySet.joins == 2
    assert b == a
    assert 5 not in b


def test_merging_into_a_map_of_maps_joins_only_the_touched_inner_key() -> None:
    a: ORMap[Any] = ORMap(ORMap(SpySet))
    for outer in range(10):
        for inner in range(10):
            a.update(
                outer,
                "a",
                lambda m, i=inner: m.update(i, "a", lambda s, i=i: s.add(i, "a")),
            )
    b = a.copy()
    delta = a.update(4, "b", lambda m: m.update(6, "b", lambda s: s.add("x", "b")))
    gone = a.update(2, "a", lambda m: m.remove(9))
    SpySet.joins = 0
    b.merge(delta)
    b.merge(gone)
    assert SpySet.joins == 2  # inner key 6 of outer 4, inner key 9 of outer 2
    assert b == a


@pytest.mark.parametrize(
    ("prototype", "fn"),
    [
        (GCounter, lambda c: c.increment("a")),
        (PNCounter, lambda c: c.decrement("a")),
        (GSet, lambda s: s.add("x")),
        (LWWRegister, lambda r: r.set("v", "a")),
        (LWWMap, lambda m: m.set("f", 1, "a")),
    ],
    ids=["GCounter", "PNCounter", "GSet", "LWWRegister", "LWWMap"],
)
def test_merging_into_a_map_of_non_causal_values_joins_only_that_keys_tags(
    prototype: type[Any], fn: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    a: ORMap[Any] = ORMap(prototype)
    for n in range(KEYS):
        a.update(n, "a", fn)
    b = a.copy()
    updated = a.update(11, "a", fn)  # replaces a's tag of key 11
    removed = a.remove(12)
    joined: list[object] = []
    original = ORMap._join_tags

    def spy(mine: Any, my_context: Any, theirs: Any, their_context: Any) -> None:
        joined.append(theirs)
        original(mine, my_context, theirs, their_context)

    monkeypatch.setattr(ORMap, "_join_tags", staticmethod(spy))
    b.merge(updated)
    b.merge(removed)
    assert len(joined) == 2
    assert b == a


def test_a_full_state_merge_still_applies_every_remove() -> None:
    a = filled(ORSet)
    b = a.copy()
    for n in range(0, KEYS, 2):
        a.remove(n)
    b.merge(a)  # a's context is large: the index is walked, not the context
    assert b == a
    assert sorted(b.keys()) == list(range(1, KEYS, 2))


# ---- the index is exact ---------------------------------------------------------------


def assert_index_exact(m: ORMap[Any], *, maintained: bool = True) -> None:
    """The index holds every live dot of ``m`` with its key, and nothing else.

    ``maintained``: the index must already exist (kept up to date, not rebuilt here);
    False for a decoded map, which builds it on first use.
    """
    if maintained and m._entries:
        assert m._index is not None, "the index was not kept up to date"
    indexed = {(r, c): key for r, block in m._index_of().items() for c, key in block.items()}
    live = {dot: key for key, entry in m._entries.items() for dot in m._entry_dots(entry)}
    assert indexed == live
    assert all(m._index_of().values()), "an empty block is kept"
    for entry in m._entries.values():
        if isinstance(entry.nested, ORMap):
            assert_index_exact(entry.nested, maintained=maintained)


FACTORIES: list[Any] = [
    pytest.param(lambda: ORMap(ORSet), id="ORMap(ORSet)"),
    pytest.param(lambda: ORMap(GCounter), id="ORMap(GCounter)"),
    pytest.param(lambda: ORMap(GSet), id="ORMap(GSet)"),
    pytest.param(lambda: ORMap(LWWMap), id="ORMap(LWWMap)"),
    pytest.param(lambda: ORMap(ORMap(ORSet)), id="ORMap(ORMap(ORSet))"),
    pytest.param(lambda: ORMap(ORMap(PNCounter)), id="ORMap(ORMap(PNCounter))"),
]


@pytest.mark.parametrize("factory", FACTORIES)
def test_the_index_is_exact_after_any_history(factory: Any) -> None:
    operations = strategies.operations_for(factory)
    step = st.one_of(
        st.tuples(st.just("op"), st.integers(0, 2), operations),
        st.tuples(st.just("merge"), st.integers(0, 2), st.integers(0, 2)),
        st.tuples(st.just("delta"), st.integers(0, 2), st.integers(0, 2)),
    )

    @settings(max_examples=150, deadline=None)
    @given(st.lists(step, max_size=25))
    def run(steps: list[tuple[Any, ...]]) -> None:
        replicas = [factory() for _ in range(3)]
        deltas: list[Any] = [None] * 3
        for kind, target, arg in steps:
            if kind == "op":
                deltas[target] = arg(replicas[target], "abc"[target])
            elif kind == "merge":
                replicas[target].merge(replicas[arg])
            elif deltas[arg] is not None:
                replicas[target].merge(deltas[arg])
            assert_index_exact(replicas[target])
        for replica in replicas:
            assert_index_exact(decode(encode(replica)), maintained=False)

    run()


# ---- the index functions ------------------------------------------------------------------


def test_covered_dots_walks_either_side_and_finds_the_same_dots() -> None:
    index: dict[str, dict[int, Any]] = {}
    for counter in range(1, 51):
        index_add(index, ("a", counter), f"k{counter}")
    index_add(index, ("b", 1), None)  # None is a key like any other
    small = CausalContext.from_dots([("a", 3), ("a", 40), ("b", 1), ("c", 9)])
    assert sorted(covered_dots(index, small), key=repr) == sorted(
        [("a", 3, "k3"), ("a", 40, "k40"), ("b", 1, None)], key=repr
    )
    large = CausalContext({"a": 1000})  # more dots than the index holds: walks the index
    assert len(covered_dots(index, large)) == 50
    assert covered_dots({}, large) == []


def test_index_discard_drops_empty_blocks_and_ignores_absent_dots() -> None:
    index: dict[str, dict[int, Any]] = {}
    index_add(index, ("a", 1), "k")
    index_discard(index, ("a", 2), "k")
    index_discard(index, ("z", 1), "k")
    assert index == {"a": {1: "k"}}
    index_discard(index, ("a", 1), "k")
    assert index == {}

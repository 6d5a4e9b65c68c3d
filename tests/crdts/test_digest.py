"""Digests: canonical, and kept up to date by every path that changes a state."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
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
from crdtgossip.codec import decode, encode
from crdtgossip.crdts._digest import (
    DIGEST_BYTES,
    DotHashes,
    dot_hash,
    element_hash,
    value_hash,
)
from crdtgossip.testing import Operation
from crdtgossip.testing import strategies as ops

from .histories import Step, replay, steps

CASES: list[tuple[str, Callable[[], Any], st.SearchStrategy[Operation[Any]]]] = [
    ("GCounter", GCounter, ops.gcounter_ops()),
    ("PNCounter", PNCounter, ops.pncounter_ops()),
    ("GSet", GSet, ops.gset_ops()),
    ("ORSet", ORSet, ops.orset_ops()),
    ("EWFlag", EWFlag, ops.ewflag_ops()),
    ("LWWRegister", LWWRegister, ops.lwwregister_ops()),
    ("MVRegister", MVRegister, ops.mvregister_ops()),
    ("LWWMap", LWWMap, ops.lwwmap_ops()),
    ("ORMap(ORSet)", lambda: ORMap(ORSet), ops.ormap_ops(ops.orset_ops())),
    ("ORMap(PNCounter)", lambda: ORMap(PNCounter), ops.ormap_ops(ops.pncounter_ops())),
    ("ORMap(LWWRegister)", lambda: ORMap(LWWRegister), ops.ormap_ops(ops.lwwregister_ops())),
    (
        "ORMap(ORMap(ORSet))",
        lambda: ORMap(ORMap(ORSet)),
        ops.ormap_ops(ops.ormap_ops(ops.orset_ops())),
    ),
]

PARAMS = [pytest.param(factory, operations, id=name) for name, factory, operations in CASES]


def _fresh_digest(state: Any) -> bytes:
    """The digest of a state rebuilt by the codec: computed from scratch."""
    digest: bytes = decode(encode(state))._digest()
    return digest


def _track(state: Any) -> None:
    state._digest()  # from now on the state keeps its digest up to date


@pytest.mark.parametrize(("factory", "operations"), PARAMS)
@settings(max_examples=60)
@given(data=st.data())
def test_a_digest_kept_up_to_date_equals_one_computed_from_scratch(
    factory: Callable[[], Any],
    operations: st.SearchStrategy[Operation[Any]],
    data: st.DataObject,
) -> None:
    history: list[Step] = data.draw(steps(operations))
    for state in replay(factory, history, each=_track):
        assert len(state._digest()) == DIGEST_BYTES
        assert state._digest() == _fresh_digest(state)
        assert state.copy()._digest() == state._digest()
        dot_hashes = getattr(state, "_dot_hashes", None)
        if dot_hashes is not None:
            kept = dot_hashes()
            rebuilt = DotHashes.of(state._store_dots())
            assert (kept.total, kept.buckets) == (rebuilt.total, rebuilt.buckets)


@pytest.mark.parametrize(("factory", "operations"), PARAMS)
@settings(max_examples=60)
@given(data=st.data())
def test_equal_states_have_equal_digests_and_different_ones_differ(
    factory: Callable[[], Any],
    operations: st.SearchStrategy[Operation[Any]],
    data: st.DataObject,
) -> None:
    first, second, _ = replay(factory, data.draw(steps(operations)))
    assert (first._digest() == second._digest()) == (first == second)
    joined, other_way = first.copy(), second.copy()
    joined.merge(second)
    other_way.merge(first)
    assert joined._digest() == other_way._digest()


def test_elements_equal_in_python_have_equal_digests() -> None:
    # G-Sets refuse bools and integral floats (equal states must have equal bytes), but
    # the element hash follows Python's equality all the same, for the ORSet elements
    # and the decoded states that may hold them.
    assert element_hash(1) == element_hash(True) == element_hash(1.0)
    assert element_hash(0) == element_hash(-0.0) == element_hash(0.0)
    assert element_hash((1, "a")) == element_hash((True, "a")) != element_hash((2, "a"))


def test_values_hash_as_lww_compares_them() -> None:
    assert value_hash(0.0) == value_hash(-0.0)
    assert value_hash(1) != value_hash(1.0) != value_hash(True)
    assert value_hash([1, "a"]) != value_hash((1, "a"))
    assert value_hash({"b": 1, "a": 2}) == value_hash({"a": 2, "b": 1})
    assert value_hash(b"a") != value_hash("a")


def test_digests_are_fixed_values_not_per_process_hashes() -> None:
    # Fixed values: a digest must be the same in every process (no hash() of a str).
    assert dot_hash("a", 1) == 0x8CDC93A804DD1B3DFE6ADAFDF3BB41C7
    assert element_hash(("x", 1)) == 0xCE5217E99DE438FDFD81E4780E939FDE
    state: ORSet[str] = ORSet()
    state.add("x", "a")
    assert state._digest().hex() == "7c0a23b15868b05ae0f4bd680f135c51"
    assert dot_hash("a", 1) != dot_hash("a", 2) != dot_hash("b", 1)


def test_types_of_the_same_content_have_different_digests() -> None:
    assert GCounter()._digest() != PNCounter()._digest()
    assert ORSet()._digest() != EWFlag()._digest()
    assert ORMap(ORSet)._digest() != ORMap(EWFlag)._digest()


def test_bucket_sums_empty_to_exactly_zero() -> None:
    table = DotHashes()
    for counter in range(1, 200):
        table.add("a", counter)
    for counter in range(1, 200):
        table.discard("a", counter)
    assert table.total == 0
    assert table.buckets == {}

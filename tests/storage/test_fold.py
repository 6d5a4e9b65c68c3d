"""Folding a delta log (crdtgossip/storage/_fold.py): when it is due, and that the fold
of a state and its log is the join of everything, for any history of deltas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip import CRDT, GCounter, ORSet, StorageError, decode, encode
from crdtgossip.storage._fold import (
    FOLD_MIN_BYTES,
    RECORD_WEIGHT,
    fold_due,
    fold_states,
    record_weight,
)
from crdtgossip.testing import strategies
from crdtgossip.testing.laws import Operation

from .conftest import counter_state

REPLICAS = ("a", "b", "c")


def test_a_log_is_due_once_it_weighs_as_much_as_its_state() -> None:
    assert not fold_due(0, 0)
    assert not fold_due(0, FOLD_MIN_BYTES - 1)
    assert fold_due(0, FOLD_MIN_BYTES)
    big = 10 * FOLD_MIN_BYTES
    assert not fold_due(big, big - 1)
    assert fold_due(big, big)
    assert fold_due(5, 5, minimum=0)
    assert not fold_due(5, 0, minimum=0)  # an empty log is never folded
    assert record_weight(b"abc") == 3 + RECORD_WEIGHT


def test_the_geometric_rule_keeps_folding_linear_in_what_is_appended() -> None:
    # The cost model the rule rests on: each fold costs the key's size; appending N
    # bytes of deltas to a state that grows with them costs O(N) in folds overall.
    state, appended, folded = 1_000_000, 0, 0
    log = 0
    for _ in range(100_000):
        log += record_weight(bytes(20))
        appended += record_weight(bytes(20))
        if fold_due(state, log):
            folded += state + log
            state, log = state + log // 4, 0  # deltas grow the state by a quarter
    assert appended > 0
    assert folded <= 4 * appended + 2 * 1_000_000


History = list[tuple[str, int, Any]]


def histories(operations: st.SearchStrategy[Operation[Any]]) -> st.SearchStrategy[History]:
    """Steps of three replicas: ("op", replica, operation) makes a delta there, ("sync",
    i, j) merges replica j's state into replica i's (no delta: what it learns is made of
    deltas already logged)."""
    return st.lists(
        st.one_of(
            st.tuples(st.just("op"), st.integers(0, 2), operations),
            st.tuples(st.just("sync"), st.integers(0, 2), st.integers(0, 2)),
        ),
        min_size=1,
        max_size=40,
    )


def play(make: Callable[[], CRDT], history: History) -> tuple[CRDT, list[bytes]]:
    """Run a history; return the join of every replica's state and every delta made."""
    replicas = [make() for _ in REPLICAS]
    log: list[bytes] = []
    for kind, first, second in history:
        if kind == "op":
            log.append(encode(second.apply(replicas[first], REPLICAS[first])))
        else:
            replicas[first].merge(replicas[second])
    truth = make()
    for replica in replicas:
        truth.merge(replica)
    return truth, log


OPERATIONS: dict[str, tuple[Callable[[], CRDT], st.SearchStrategy[Operation[Any]]]] = {
    "GCounter": (GCounter, strategies.gcounter_ops()),
    "ORSet": (ORSet, strategies.orset_ops()),
}


@pytest.mark.parametrize("kind", OPERATIONS)
@settings(max_examples=150)
@given(data=st.data())
def test_a_fold_is_the_join_of_its_state_and_every_record(kind: str, data: st.DataObject) -> None:
    make, operations = OPERATIONS[kind]
    truth, log = play(make, data.draw(histories(operations)))
    if not log:
        assert fold_states("k", None, []) is None
        return
    assert decode(fold_states("k", None, log)) == truth  # type: ignore[arg-type]
    # Any prefix folded into a state first, the rest as records: the same join.
    cut = data.draw(st.integers(0, len(log)))
    state = make()
    for delta in log[:cut]:
        state.merge(decode(delta))
    folded = fold_states("k", encode(state), log[cut:])
    assert folded is not None
    assert decode(folded) == truth
    assert folded == encode(truth)  # canonical: equal states, equal bytes


def test_a_fold_stops_when_cancelled() -> None:
    records = [counter_state("a", n) for n in range(1, 5)]
    assert fold_states("k", None, records, cancelled=lambda: True) is None


FOLD_FAILURES: dict[str, tuple[bytes | None, list[bytes], str]] = {
    "a state that does not decode": (b"\xc1", [counter_state("a", 1)], "its state"),
    "a record that does not decode": (
        counter_state("a", 1),
        [counter_state("a", 2), b"\xc1"],
        "its log record 2",
    ),
    "records of two types": (
        counter_state("a", 1),
        [encode(ORSet())],
        "its log record 1",
    ),
}


@pytest.mark.parametrize(
    ("state", "records", "message"), FOLD_FAILURES.values(), ids=FOLD_FAILURES.keys()
)
def test_a_fold_that_cannot_join_raises_a_storage_error_naming_the_key(
    state: bytes | None, records: list[bytes], message: str
) -> None:
    with pytest.raises(StorageError, match=f"key 'the key'.*{message}"):
        fold_states("the key", state, records)


def test_a_fold_larger_than_a_state_may_be_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # Records that each fit, whose join does not (with the limit lowered to keep the
    # test small: at 16 MiB it would need 16 MiB of elements).
    records = [counter_state(f"replica-{n}", n + 1) for n in range(10)]
    limit = max(map(len, records))
    monkeypatch.setattr("crdtgossip.storage._fold.MAX_STATE_BYTES", limit)
    assert fold_states("k", None, records[:1]) == records[0]
    with pytest.raises(StorageError, match=f"more than the {limit}"):
        fold_states("k", None, records)

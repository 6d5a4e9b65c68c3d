"""The Storage contract, checked on every implementation (memory, SQLite in both modes).

Each "restart" closes the storage and opens a new object over the same store (the same
object for memory), so what is checked is what a restarted node would load.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtgossip import GCounter, StorageError, decode, encode
from crdtgossip.storage import MAX_INCARNATION, MAX_STATE_BYTES, Storage, StoredState

from .conftest import counter_state, joined, sample_states, stored_value

Factory = Callable[[], Storage]


def restart(storage: Storage, make_storage: Factory) -> tuple[Storage, StoredState]:
    storage.close()
    reopened = make_storage()
    return reopened, reopened.open()


def contents(stored: StoredState) -> StoredState:
    """What a StoredState holds, without the commit counter (which counts bookkeeping
    commits too: the batched mode's open and close write the meta row)."""
    return replace(stored, commit_seq=0)


def test_a_new_store_is_empty(make_storage: Factory) -> None:
    assert make_storage().open() == StoredState(None, 0, {})


def test_identity_and_states_of_every_type_survive_a_restart(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    states = sample_states()
    storage.save_identity("replica-7", 42)
    for key, state in states.items():
        storage.put(key, encode(state))
    _, stored = restart(storage, make_storage)
    assert stored.replica_id == "replica-7"
    assert stored.incarnation == 42
    assert set(stored.states) == set(states)
    for key, state in states.items():
        assert stored.states[key] == encode(state)
        assert decode(stored.states[key]) == state


def test_later_writes_replace_earlier_ones(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    storage.save_identity("first", 1)
    storage.save_identity("second", 2)
    storage.put("k", counter_state("a", 1))
    storage.put("k", counter_state("a", 2))
    _, stored = restart(storage, make_storage)
    assert (stored.replica_id, stored.incarnation) == ("second", 2)
    assert stored.states == {"k": counter_state("a", 2)}


def test_delete_removes_a_key_and_ignores_a_missing_one(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    storage.put("kept", counter_state("a", 1))
    storage.put("gone", counter_state("a", 2))
    storage.delete("gone")
    storage.delete("never-stored")
    _, stored = restart(storage, make_storage)
    assert stored.states == {"kept": counter_state("a", 1)}


def test_put_many_stores_every_item_and_the_last_of_a_repeated_key(
    make_storage: Factory,
) -> None:
    storage = make_storage()
    storage.open()
    storage.put_many([("a", counter_state("r", 1)), ("b", counter_state("r", 2))])
    storage.put_many({"c": counter_state("r", 3)}.items())
    storage.put_many([("d", counter_state("r", 4)), ("d", counter_state("r", 5))])
    storage.put_many([])
    _, stored = restart(storage, make_storage)
    assert stored.states == {
        "a": counter_state("r", 1),
        "b": counter_state("r", 2),
        "c": counter_state("r", 3),
        "d": counter_state("r", 5),
    }


def test_keys_may_be_any_text(make_storage: Factory) -> None:
    keys = ["", "with space", "ünïcødé", "emoji \U0001f600", "nul\x00inside", "x" * 10_000]
    storage = make_storage()
    storage.open()
    for number, key in enumerate(keys, start=1):
        storage.put(key, counter_state("a", number))
    _, stored = restart(storage, make_storage)
    assert stored.states == {key: counter_state("a", n) for n, key in enumerate(keys, 1)}


INVALID_CALLS: list[tuple[str, Callable[[Storage], None], str]] = [
    ("key not str", lambda s: s.put(b"k", b"\x01"), "must be a str"),  # type: ignore[arg-type]
    ("lone surrogate key", lambda s: s.put("\ud800", b"\x01"), "not valid text"),
    ("data not bytes", lambda s: s.put("k", "text"), "must be bytes"),  # type: ignore[arg-type]
    ("bytearray data", lambda s: s.put("k", bytearray(b"\x01")), "must be bytes"),  # type: ignore[arg-type]
    ("empty data", lambda s: s.put("k", b""), "empty"),
    ("oversized data", lambda s: s.put("k", bytes(MAX_STATE_BYTES + 1)), "crdtgossip.decode"),
    ("item not a pair", lambda s: s.put_many([("k",)]), "pairs"),  # type: ignore[list-item]
    (
        "one bad item",
        lambda s: s.put_many([("ok", counter_state("a", 1)), ("bad", b"")]),
        "empty",
    ),
    ("delete key not str", lambda s: s.delete(1), "must be a str"),  # type: ignore[arg-type]
    ("append item not a pair", lambda s: s.append([("k",)]), "pairs"),  # type: ignore[list-item]
    ("append empty data", lambda s: s.append([("k", b"")]), "empty"),
    (
        "append one bad item",
        lambda s: s.append([("ok", counter_state("a", 1)), ("bad", "text")]),  # type: ignore[list-item]
        "must be bytes",
    ),
    ("load key not str", lambda s: s.load(3), "must be a str"),  # type: ignore[arg-type]
    ("empty replica id", lambda s: s.save_identity("", 1), "must not be empty"),
    ("replica id not str", lambda s: s.save_identity(7, 1), "must be a str"),  # type: ignore[arg-type]
    ("negative incarnation", lambda s: s.save_identity("r", -1), "incarnation"),
    ("huge incarnation", lambda s: s.save_identity("r", MAX_INCARNATION + 1), "incarnation"),
    ("bool incarnation", lambda s: s.save_identity("r", True), "incarnation"),
]


@pytest.mark.parametrize(
    ("call", "message"),
    [(call, message) for _, call, message in INVALID_CALLS],
    ids=[name for name, _, _ in INVALID_CALLS],
)
def test_invalid_arguments_raise_and_store_nothing(
    make_storage: Factory, call: Callable[[Storage], None], message: str
) -> None:
    storage = make_storage()
    storage.open()
    with pytest.raises(StorageError, match=message):
        call(storage)
    assert contents(restart(storage, make_storage)[1]) == StoredState(None, 0, {})


WRITES: list[tuple[str, Callable[[Storage], None]]] = [
    ("put", lambda s: s.put("k", counter_state("a", 1))),
    ("put_many", lambda s: s.put_many([("k", counter_state("a", 1))])),
    ("delete", lambda s: s.delete("k")),
    ("append", lambda s: s.append([("k", counter_state("a", 1))])),
    ("load", lambda s: s.load("k")),
    ("save_identity", lambda s: s.save_identity("r", 1)),
    ("flush", lambda s: s.flush()),
]


@pytest.mark.parametrize("write", [w for _, w in WRITES], ids=[name for name, _ in WRITES])
def test_writes_need_an_open_storage(
    make_storage: Factory, write: Callable[[Storage], None]
) -> None:
    storage = make_storage()
    with pytest.raises(StorageError, match="not open"):
        write(storage)
    storage.open()
    storage.close()
    with pytest.raises(StorageError, match="not open"):
        write(storage)


def test_open_twice_raises_and_close_is_idempotent(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    with pytest.raises(StorageError, match="already open"):
        storage.open()
    storage.close()
    storage.close()


def test_the_same_object_opens_again_after_close(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    storage.put("k", counter_state("a", 1))
    storage.close()
    assert storage.open().states == {"k": counter_state("a", 1)}
    storage.put("k", counter_state("a", 2))
    storage.close()
    assert storage.open().states == {"k": counter_state("a", 2)}


def test_the_loaded_states_are_the_callers_to_change(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    storage.put("k", counter_state("a", 1))
    storage.close()
    storage.open().states.clear()
    storage.close()
    assert storage.open().states == {"k": counter_state("a", 1)}


THREADS = 8
WRITES_PER_THREAD = 40


def test_writes_from_many_threads_at_once_are_all_kept(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    barrier = threading.Barrier(THREADS)
    errors: list[BaseException] = []
    shared = GCounter()  # every thread grows one shared counter; the last write wins
    shared_lock = threading.Lock()

    def writer(number: int) -> None:
        try:
            barrier.wait(timeout=30)
            for i in range(WRITES_PER_THREAD):
                storage.put(f"t{number}-{i}", counter_state(f"t{number}", i + 1))
                if i % 10 == 0:
                    storage.put_many(
                        [(f"many{number}-{i}-{j}", counter_state("m", j + 1)) for j in range(3)]
                    )
                    storage.delete(f"t{number}-{i}")
                with shared_lock:  # puts of one key are ordered by the caller, as a node does
                    shared.increment(f"t{number}")
                    storage.put("shared", encode(shared))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    assert not any(thread.is_alive() for thread in threads)
    _, stored = restart(storage, make_storage)
    expected = {"shared": encode(shared)}
    for number in range(THREADS):
        for i in range(WRITES_PER_THREAD):
            if i % 10 == 0:
                expected.update(
                    {f"many{number}-{i}-{j}": counter_state("m", j + 1) for j in range(3)}
                )
            else:
                expected[f"t{number}-{i}"] = counter_state(f"t{number}", i + 1)
    assert stored.states == expected
    assert decode(stored.states["shared"]).value == THREADS * WRITES_PER_THREAD


# A model-based check: any sequence of writes and restarts gives back what a dict would.
OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abcd"), st.integers(1, 50)),
        st.tuples(st.just("delete"), st.sampled_from("abcd"), st.just(0)),
        st.tuples(
            st.just("put_many"),
            st.lists(st.sampled_from("abcd"), max_size=3),
            st.integers(1, 50),
        ),
        st.tuples(st.just("identity"), st.sampled_from(["r1", "r2"]), st.integers(0, 9)),
        st.tuples(st.just("restart"), st.just(""), st.just(0)),
    ),
    max_size=25,
)


# Each example creates, writes and reopens real files: fewer examples than the profile's
# default keep this test to a second or two; the sequences are short and the space small.
@settings(max_examples=30, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=OPERATIONS)
def test_any_sequence_of_writes_and_restarts_matches_a_dict(
    make_storage: Factory, operations: list[tuple[str, Any, int]]
) -> None:
    storage = make_storage()
    # The store is shared by the examples of one test run: start each from what is there.
    model = dict(storage.open().states)
    identity: tuple[str | None, int] | None = None
    try:
        for operation, target, value in operations:
            if operation == "put":
                storage.put(target, counter_state("a", value))
                model[target] = counter_state("a", value)
            elif operation == "delete":
                storage.delete(target)
                model.pop(target, None)
            elif operation == "put_many":
                storage.put_many([(key, counter_state("b", value)) for key in target])
                model.update({key: counter_state("b", value) for key in target})
            elif operation == "identity":
                storage.save_identity(target, value)
                identity = (target, value)
            else:
                storage, stored = restart(storage, make_storage)
                assert stored.states == model
                if identity is not None:
                    assert (stored.replica_id, stored.incarnation) == identity
        storage, stored = restart(storage, make_storage)
        assert stored.states == model
    finally:
        storage.close()  # the next example opens the same store


# =========================================================================================
# the delta log: append, load, and what open() gives back
# =========================================================================================


def increments(replica: str, count: int) -> tuple[GCounter, list[bytes]]:
    """A counter incremented ``count`` times by ``replica``, and each increment's delta."""
    counter = GCounter()
    return counter, [encode(counter.increment(replica, n + 1)) for n in range(count)]


def test_appended_deltas_come_back_in_order_with_nothing_folded(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    _, first = increments("a", 5)
    _, second = increments("b", 3)
    storage.append([("x", first[0]), ("y", second[0]), ("x", first[1])])
    storage.append([("y", data) for data in second[1:]])
    storage.append([("x", data) for data in first[2:]])
    _, stored = restart(storage, make_storage)
    assert stored.states == {}
    assert stored.deltas == {"x": first, "y": second}


def test_deltas_appended_after_a_state_follow_it(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    storage.put("k", counter_state("a", 1))
    _, deltas = increments("b", 3)
    storage.append([("k", data) for data in deltas])
    _, stored = restart(storage, make_storage)
    assert stored.states == {"k": counter_state("a", 1)}
    assert stored.deltas == {"k": deltas}
    assert decode(stored.states["k"]).value + 1 + 2 + 3 == stored_value(stored, "k").value  # type: ignore[union-attr]


def test_append_then_restart_gives_the_join_of_everything(make_log_storage: Factory) -> None:
    storage = make_log_storage()
    storage.open()
    truth, deltas = increments("a", 40)
    other, more = increments("b", 40)
    for mine, theirs in zip(deltas, more, strict=True):
        storage.append([("k", mine), ("k", theirs)])
    truth.merge(other)
    storage, stored = restart(storage, make_log_storage)
    assert stored_value(stored, "k") == truth
    assert joined(*storage.load("k")) == truth


def test_put_replaces_the_log_and_delete_removes_state_and_log(make_log_storage: Factory) -> None:
    storage = make_log_storage()
    storage.open()
    _, deltas = increments("a", 10)
    storage.append([("replaced", data) for data in deltas])
    storage.append([("deleted", data) for data in deltas])
    storage.put("replaced", counter_state("z", 7))
    storage.delete("deleted")
    _, after = increments("b", 2)
    storage.append([("replaced", data) for data in after])
    storage, stored = restart(storage, make_log_storage)
    assert set(stored.states) | set(stored.deltas) == {"replaced"}
    expected = decode(counter_state("z", 7))
    expected.merge(decode(after[-1]))
    assert stored_value(stored, "replaced") == expected
    assert storage.load("deleted") == (None, [])


def test_load_gives_what_open_gives_for_one_key(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    assert storage.load("k") == (None, [])
    storage.put("k", counter_state("a", 1))
    _, deltas = increments("b", 3)
    storage.append([("k", data) for data in deltas])
    storage.flush()
    assert storage.load("k") == (counter_state("a", 1), deltas)
    _, stored = restart(storage, make_storage)
    assert (stored.states["k"], stored.deltas["k"]) == (counter_state("a", 1), deltas)


def test_append_of_nothing_writes_nothing(make_storage: Factory) -> None:
    storage = make_storage()
    storage.open()
    storage.append([])
    assert contents(restart(storage, make_storage)[1]) == StoredState(None, 0, {})


def test_every_commit_raises_the_commit_counter(make_storage: Factory) -> None:
    storage = make_storage()
    before = storage.open().commit_seq
    storage.put("k", counter_state("a", 1))
    storage.flush()
    storage, stored = restart(storage, make_storage)
    assert stored.commit_seq > before
    storage.append([("k", counter_state("a", 2))])
    storage.flush()
    _, again = restart(storage, make_storage)
    assert again.commit_seq > stored.commit_seq


# A model-based check of the log: puts, appends, deletes and restarts give back, per
# key, the join a dict of counters would hold.
LOG_OPERATIONS = st.lists(
    st.one_of(
        st.tuples(st.just("put"), st.sampled_from("abc"), st.integers(1, 50)),
        st.tuples(st.just("append"), st.sampled_from("abc"), st.integers(1, 50)),
        st.tuples(st.just("delete"), st.sampled_from("abc"), st.just(0)),
        st.tuples(st.just("restart"), st.just(""), st.just(0)),
    ),
    max_size=30,
)


@settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(operations=LOG_OPERATIONS)
def test_any_sequence_of_puts_appends_and_restarts_matches_a_join(
    make_log_storage: Factory, operations: list[tuple[str, str, int]]
) -> None:
    storage = make_log_storage()
    stored = storage.open()
    model = {key: stored_value(stored, key) for key in set(stored.states) | set(stored.deltas)}
    try:
        for step, (operation, key, value) in enumerate(operations):
            if operation == "put":
                storage.put(key, counter_state("p", value))
                model[key] = decode(counter_state("p", value))
            elif operation == "append":
                delta = GCounter()
                delta.increment(f"r{step % 3}", value)
                storage.append([(key, encode(delta))])
                current = model.get(key)
                if current is None:
                    model[key] = delta
                else:
                    current.merge(delta)
            elif operation == "delete":
                storage.delete(key)
                model.pop(key, None)
            else:
                storage, stored = restart(storage, make_log_storage)
                assert {k: stored_value(stored, k) for k in model} == model
                assert set(stored.states) | set(stored.deltas) == set(model)
        storage, stored = restart(storage, make_log_storage)
        assert {k: stored_value(stored, k) for k in model} == model
        assert set(stored.states) | set(stored.deltas) == set(model)
    finally:
        storage.close()

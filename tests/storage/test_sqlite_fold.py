"""Folding in the background on real SQLite files (crdtgossip/storage/_sqlite_fold.py):
folds happen, keep the value, lose no record appended meanwhile, give way to a put, and
leave damaged records alone for open() to refuse."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crdtgossip import GCounter, ORSet, StorageError, encode
from crdtgossip.storage import SQLiteStorage, _fold

from .conftest import counter_state, joined, reopen, stored_value, wait_until


def added(count: int, replica: str = "a") -> tuple[ORSet[int], list[bytes]]:
    """An ORSet with elements 0 .. count-1 added by ``replica``, and each add's delta."""
    elements: ORSet[int] = ORSet()
    return elements, [encode(elements.add(n, replica)) for n in range(count)]


def settled(storage: SQLiteStorage) -> None:
    wait_until(lambda: storage.pending_folds == 0, "the fold thread caught up")


@pytest.mark.parametrize("mode", ["durable", "batched"])
def test_a_log_as_heavy_as_its_state_is_folded_away(tmp_path: Path, mode: str) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, sync_mode=mode, fold_min_bytes=1024)  # type: ignore[arg-type]
    storage.open()
    truth, deltas = added(300)
    for delta in deltas:
        storage.append([("k", delta)])
    storage.flush()
    settled(storage)
    assert storage.folds >= 1
    assert storage.fold_errors == 0
    state, log = storage.load("k")
    assert state is not None
    assert len(log) < len(deltas)  # folded: fewer records than appended
    assert joined(state, log) == truth
    storage.close()
    stored = reopen(path)
    assert stored_value(stored, "k") == truth
    with sqlite3.connect(path) as db:  # the folded records are gone from the file
        (records,) = db.execute("SELECT count(*) FROM log").fetchone()
    assert records == len(stored.deltas.get("k", []))


def test_a_log_below_the_threshold_is_left_alone(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "state.db")  # the default: 64 KiB before a fold
    storage.open()
    storage.put("k", encode(added(50)[0]))
    _, deltas = added(20, "b")
    storage.append([("k", delta) for delta in deltas])
    assert storage.pending_folds == 0
    assert storage.load("k")[1] == deltas
    storage.close()
    assert storage.folds == 0


class Gate:
    """Holds the fold thread inside fold_states (after it read the key, before it
    writes the fold) until released: a fold running while writers go on."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        real = _fold.fold_states

        def held(*args: Any, **kwargs: Any) -> bytes | None:
            self.entered.set()
            assert self.release.wait(timeout=30)
            return real(*args, **kwargs)

        monkeypatch.setattr(_fold, "fold_states", held)


@pytest.fixture
def gate(monkeypatch: pytest.MonkeyPatch) -> Iterator[Gate]:
    held = Gate(monkeypatch)
    yield held
    held.release.set()


@pytest.mark.parametrize("mode", ["durable", "batched"])
def test_records_appended_during_a_fold_are_kept(tmp_path: Path, gate: Gate, mode: str) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, sync_mode=mode, fold_min_bytes=0)  # type: ignore[arg-type]
    storage.open()
    truth, deltas = added(30)
    storage.append([("k", deltas[0])])
    storage.flush()
    assert gate.entered.wait(timeout=30)  # the fold of record 1 is under way
    for delta in deltas[1:]:
        storage.append([("k", delta)])  # not held up by the fold
    storage.flush()
    gate.release.set()
    settled(storage)
    assert joined(*storage.load("k")) == truth
    storage.close()
    assert stored_value(reopen(path), "k") == truth


def test_a_put_during_a_fold_wins_over_it(tmp_path: Path, gate: Gate) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, fold_min_bytes=0)
    storage.open()
    _, deltas = added(5)
    storage.append([("k", delta) for delta in deltas])
    assert gate.entered.wait(timeout=30)
    storage.put("k", counter_state("z", 9))  # replaces the key the fold read
    gate.release.set()
    settled(storage)
    storage.close()
    assert reopen(path).states == {"k": counter_state("z", 9)}
    assert reopen(path).deltas == {}


def test_a_delete_during_a_fold_wins_over_it(tmp_path: Path, gate: Gate) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, fold_min_bytes=0)
    storage.open()
    storage.append([("k", counter_state("a", 1))])
    assert gate.entered.wait(timeout=30)
    storage.delete("k")
    storage.append([("k", counter_state("b", 2))])  # a new life of the key
    gate.release.set()
    settled(storage)
    storage.close()
    stored = reopen(path)
    assert stored_value(stored, "k") == joined(counter_state("b", 2), [])


def test_close_during_a_fold_abandons_it_and_loses_nothing(tmp_path: Path, gate: Gate) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, fold_min_bytes=0)
    storage.open()
    truth, deltas = added(10)
    storage.append([("k", delta) for delta in deltas])
    assert gate.entered.wait(timeout=30)
    storage.close()
    gate.release.set()
    stored = reopen(path)
    assert stored.deltas == {"k": deltas}  # nothing folded, nothing lost
    assert stored_value(stored, "k") == truth


def test_a_record_that_does_not_decode_stops_its_fold_and_then_the_open(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, fold_min_bytes=0)
    storage.open()
    storage.put("k", counter_state("a", 1))
    storage.append([("k", b"\xc1not an encoding")])  # storage does not decode on write
    wait_until(lambda: storage.fold_errors == 1, "the fold failed")
    storage.append([("k", counter_state("a", 2))])  # not retried: the key is marked
    settled(storage)
    assert storage.fold_errors == 1
    assert storage.load("k") == (
        counter_state("a", 1),
        [b"\xc1not an encoding", counter_state("a", 2)],
    )
    assert "cannot fold the log of key 'k'" in caplog.text
    storage.close()
    with pytest.raises(StorageError, match=r"log record 1 of key 'k' does not decode"):
        reopen(path)


def test_a_put_clears_a_failed_fold(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, fold_min_bytes=0)
    storage.open()
    storage.append([("k", b"\xc1")])
    wait_until(lambda: storage.fold_errors == 1, "the fold failed")
    storage.put("k", counter_state("a", 1))
    storage.append([("k", counter_state("a", 2))])
    settled(storage)
    assert storage.folds >= 1
    storage.close()
    assert stored_value(reopen(path), "k") == joined(counter_state("a", 2), [])


def test_a_log_left_due_is_folded_after_the_next_open(tmp_path: Path, gate: Gate) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, fold_min_bytes=0)
    storage.open()
    truth, deltas = added(8)
    storage.append([("k", delta) for delta in deltas])
    assert gate.entered.wait(timeout=30)
    storage.close()  # abandons the fold
    gate.release.set()
    again = SQLiteStorage(path, fold_min_bytes=0)
    assert again.open().deltas == {"k": deltas}
    settled(again)
    assert again.folds == 1
    assert again.load("k")[1] == []
    again.close()
    assert reopen(path).states == {"k": encode(truth)}


# The fold on a real file, against the join of everything appended: deltas of several
# replicas (with merges between them, so removes see others' adds), appended in random
# groups, with folds as often as possible.
STEPS = st.lists(
    st.tuples(
        st.sampled_from(["add", "remove", "increment", "sync"]),
        st.integers(0, 2),
        st.integers(0, 5),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=20, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=STEPS, group=st.integers(1, 4))
def test_state_after_folds_is_the_join_of_every_delta(
    tmp_path_factory: pytest.TempPathFactory, steps: list[tuple[str, int, int]], group: int
) -> None:
    path = tmp_path_factory.mktemp("fold") / "state.db"
    sets: list[ORSet[int]] = [ORSet() for _ in range(3)]
    counters = [GCounter() for _ in range(3)]
    storage = SQLiteStorage(path, fold_min_bytes=0)
    storage.open()
    pending: list[tuple[str, bytes]] = []
    for kind, replica, number in steps:
        if kind == "add":
            pending.append(("set", encode(sets[replica].add(number, f"r{replica}"))))
        elif kind == "remove":
            pending.append(("set", encode(sets[replica].remove(number))))
        elif kind == "increment":
            delta = counters[replica].increment(f"r{replica}", number + 1)
            pending.append(("counter", encode(delta)))
        else:
            sets[replica].merge(sets[(replica + 1) % 3])
        if len(pending) >= group:
            storage.append(pending)
            pending = []
    storage.append(pending)
    settled(storage)
    storage.close()
    stored = reopen(path)
    truth_set: ORSet[int] = ORSet()
    truth_counter = GCounter()
    for replica in range(3):
        truth_set.merge(sets[replica])
        truth_counter.merge(counters[replica])
    if "set" in stored.states or "set" in stored.deltas:
        assert stored_value(stored, "set") == truth_set
    else:
        assert truth_set == ORSet()
    if "counter" in stored.states or "counter" in stored.deltas:
        assert stored_value(stored, "counter") == truth_counter
    else:
        assert truth_counter == GCounter()

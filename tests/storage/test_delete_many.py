"""delete_many (MemoryStorage and SQLiteStorage): several keys and their logs in one
commit, all or none."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from crdtgossip import StorageError
from crdtgossip.storage import SQLiteStorage, Storage

from .conftest import counter_state

Factory = Callable[[], Storage]


def test_delete_many_removes_states_and_logs(make_log_storage: Factory) -> None:
    storage: Any = make_log_storage()
    storage.open()
    for index in range(10):
        storage.put(f"k{index}", counter_state("a", index + 1))
        storage.append([(f"k{index}", counter_state("b", 1))])
    storage.flush()
    storage.close()
    storage = make_log_storage()
    storage.open()
    storage.delete_many([f"k{index}" for index in range(0, 10, 2)] + ["never-stored"])
    storage.flush()
    storage.close()
    storage = make_log_storage()
    stored = storage.open()
    assert sorted({*stored.states, *stored.deltas}) == [f"k{index}" for index in range(1, 10, 2)]


def test_an_invalid_key_deletes_nothing(make_storage: Factory) -> None:
    storage: Any = make_storage()
    storage.open()
    storage.put("a", counter_state("a", 1))
    with pytest.raises(StorageError):
        storage.delete_many(["a", 7])
    storage.flush()
    assert storage.load("a")[0] == counter_state("a", 1)


def test_delete_many_needs_an_open_storage(make_storage: Factory) -> None:
    storage: Any = make_storage()
    with pytest.raises(StorageError):
        storage.delete_many(["a"])


def test_a_durable_delete_many_is_one_commit(tmp_path: Path) -> None:
    storage = SQLiteStorage(tmp_path / "s.db")
    storage.open()
    storage.put_many((f"k{index}", counter_state("a", 1)) for index in range(100))
    storage.close()
    storage = SQLiteStorage(tmp_path / "s.db")
    seq = storage.open().commit_seq
    storage.delete_many(f"k{index}" for index in range(100))
    storage.close()
    storage = SQLiteStorage(tmp_path / "s.db")
    stored = storage.open()
    storage.close()
    assert stored.states == {}
    assert stored.commit_seq == seq + 1  # one fsync for all of them, not 100

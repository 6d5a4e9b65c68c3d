"""MemoryStorage: what is particular to it (the shared contract is in test_base.py)."""

from __future__ import annotations

import pytest

from crdtgossip import ConfigError, StorageError, decode, encode
from crdtgossip.storage import MemoryStorage, StoredState

from .conftest import counter_state


def test_memory_is_never_durable() -> None:
    assert MemoryStorage().durable is False


def test_each_new_object_starts_empty_as_a_new_process_would() -> None:
    first = MemoryStorage()
    first.open()
    first.save_identity("r", 3)
    first.put("k", counter_state("r", 1))
    first.close()
    assert MemoryStorage().open() == StoredState(None, 0, {})


def test_close_keeps_the_data_for_the_next_open_of_the_same_object() -> None:
    storage = MemoryStorage()
    storage.open()
    storage.save_identity("r", 3)
    storage.put("k", counter_state("r", 1))
    storage.close()
    assert storage.open() == StoredState("r", 3, {"k": counter_state("r", 1)}, commit_seq=2)


def test_a_bad_fold_threshold_raises_config_error() -> None:
    with pytest.raises(ConfigError, match="fold_min_bytes"):
        MemoryStorage(fold_min_bytes=-1)


def test_a_log_is_folded_inline_once_due() -> None:
    storage = MemoryStorage(fold_min_bytes=100)
    storage.open()
    storage.put("k", counter_state("a", 1))
    storage.append([("k", counter_state("b", 1))])  # 64 + 12 bytes: not due
    assert storage.folds == 0
    storage.append([("k", counter_state("b", 2))])  # past 100: folded before returning
    assert storage.folds == 1
    joined = decode(counter_state("a", 1))
    joined.merge(decode(counter_state("b", 2)))
    assert storage.load("k") == (encode(joined), [])


def test_a_fold_that_fails_keeps_the_records_and_refuses_the_next_open() -> None:
    storage = MemoryStorage(fold_min_bytes=0)
    storage.open()
    storage.put("k", counter_state("a", 1))
    storage.append([("k", b"\xc1")])
    assert storage.fold_errors == 1
    assert storage.load("k") == (counter_state("a", 1), [b"\xc1"])
    storage.close()
    with pytest.raises(StorageError, match="damaged log for key 'k'"):
        storage.open()

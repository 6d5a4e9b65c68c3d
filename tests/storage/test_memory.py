"""MemoryStorage: what is particular to it (the shared contract is in test_base.py)."""

from __future__ import annotations

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

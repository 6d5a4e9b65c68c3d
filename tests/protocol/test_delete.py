"""Engine.delete: every trace of a key in the engine goes, and nothing else does."""

from __future__ import annotations

import random

import pytest

from crdtgossip import GCounter, OperationError
from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.keylife import unwrap
from crdtgossip.protocol import Engine, KeyChanged
from crdtgossip.protocol.antientropy import HashTree, key_digest
from crdtgossip.protocol.messages import Delta, encode_frame, encode_message


def _engine() -> Engine:
    return Engine("a", "127.0.0.1:7001", GossipConfig.local(), random.Random(1), "a-1")


def _write(engine: Engine, key: str, n: int = 1) -> None:
    engine.update(key, GCounter().increment("a-1", n), now=1.0)


def test_delete_drops_state_and_size_and_keeps_a_tombstone_for_its_time() -> None:
    engine = _engine()
    _write(engine, "k", 3)
    _write(engine, "other")
    engine.take_events()
    digest_before = engine._tree.digest("k")
    deletion = engine.deletion("k")
    assert deletion is not None
    assert unwrap(deletion) == ({"a-1": (1, 1)}, b"")
    assert engine.delete("k", now=2.0) is True
    assert engine.get("k") is None
    assert engine.keys() == ["other"]
    assert engine.is_tombstone("k")
    tombstone = engine._tree.digest("k")
    assert tombstone is not None
    assert tombstone != digest_before  # the record's alone
    assert engine._sizes.estimate("k") == 0
    assert engine.stats()["keys_deleted"] == 1
    assert engine.take_events() == [KeyChanged("k", None, deletion, local=True, deleted=True)]
    assert engine.delete("k", now=3.0) is False
    assert engine.take_events() == []
    engine.tick(2.0 + engine.config.deleted_keys_kept - 1.0)
    assert engine.is_tombstone("k")
    engine.tick(2.0 + engine.config.deleted_keys_kept + 1.0)
    assert not engine.is_tombstone("k")
    assert engine.life("k") is None
    assert engine._tree.digest("k") is None
    assert KeyChanged("k", deleted=True, expired=True, life=True) in engine.take_events()


def test_the_root_hash_once_tombstones_go_is_that_of_a_tree_never_holding_the_key() -> None:
    engine = _engine()
    _write(engine, "other")
    without = engine._tree.node_hash(0, 0)
    for index in range(40):  # enough keys to fill cached inner nodes
        _write(engine, f"k{index}")
    for index in range(40):
        engine.delete(f"k{index}", now=2.0)
    assert len(engine._tree) == 41  # the tombstones, for deleted_keys_kept
    engine.tick(3.0 + engine.config.deleted_keys_kept)
    assert engine._tree.node_hash(0, 0) == without
    assert len(engine._tree) == 1


def test_a_relayed_delta_queued_for_the_key_is_dropped() -> None:
    engine = _engine()
    payload = GCounter().increment("b-1", 2)
    frame = encode_frame("b", [encode_message(Delta("k", encode(payload)))])
    engine.receive(frame, "127.0.0.1:7002", now=1.0)
    assert engine.get("k") is not None
    assert len(engine._queue) == 1  # queued for relay
    engine.delete("k", now=2.0)
    assert len(engine._queue) == 0


def test_a_key_held_by_a_write_being_persisted_is_not_deleted() -> None:
    engine = _engine()
    _write(engine, "k")
    engine.begin_local("k")
    with pytest.raises(OperationError, match="being persisted"):
        engine.delete("k", now=2.0)
    assert engine.get("k") is not None


@pytest.mark.parametrize("key", ["", 7, "x" * 2000])
def test_an_invalid_key_is_refused(key: object) -> None:
    with pytest.raises(OperationError):
        _engine().delete(key, now=1.0)  # type: ignore[arg-type]


def test_hash_tree_remove_of_an_unknown_or_dirty_key() -> None:
    states = {"a": GCounter().increment("r", 1)}
    tree = HashTree(lambda key: key_digest(states[key]))
    tree.remove("nothing")  # harmless
    tree.touch("a")
    del states["a"]
    tree.remove("a")  # dirty, never refreshed: forgotten without reading the state
    assert len(tree) == 0

"""The rows of the SQLite file (crdtgossip/storage/_sqlite_log.py): log records and
their checks, batches of changes, and appends as one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from crdtgossip import ORSet, StorageError, encode
from crdtgossip.storage import SQLiteStorage
from crdtgossip.storage._sqlite_log import Batch, KeyChange, record_checksum

from .conftest import counter_state, raw, reopen


def write_log(path: Path) -> None:
    """A state and log records under keys 'counter' and 'other'."""
    storage = SQLiteStorage(path)
    storage.open()
    storage.save_identity("r", 1)
    storage.put("counter", counter_state("a", 1))
    storage.append([("counter", counter_state("b", n)) for n in range(1, 4)])
    storage.append([("other", counter_state("c", 1))])
    storage.close()


def seq_of(db: sqlite3.Connection, key: str, position: int = 0) -> int:
    rows = db.execute("SELECT seq FROM log WHERE key = ? ORDER BY seq", (key,)).fetchall()
    return int(rows[position][0])


def swap_records(db: sqlite3.Connection, first: int, second: int) -> None:
    """Exchange the places of two log records (each keeping its checksum)."""
    db.execute("UPDATE log SET seq = -1 WHERE seq = ?", (first,))
    db.execute("UPDATE log SET seq = ? WHERE seq = ?", (first, second))
    db.execute("UPDATE log SET seq = ? WHERE seq = -1", (second,))


LOG_DAMAGE: dict[str, tuple[Callable[[sqlite3.Connection], object], str]] = {
    "flipped data": (
        lambda db: db.execute(
            "UPDATE log SET data = ? WHERE seq = ?",
            (counter_state("b", 9), seq_of(db, "counter", 1)),
        ),
        r"log record \d+ of key 'counter' does not match its checksum",
    ),
    "garbage with a matching checksum": (
        lambda db: db.execute(
            "UPDATE log SET data = x'c1', checksum = ? WHERE seq = ?",
            (record_checksum(seq_of(db, "counter"), "counter", b"\xc1"), seq_of(db, "counter")),
        ),
        r"log record \d+ of key 'counter' does not decode",
    ),
    "a record moved to another key": (
        lambda db: db.execute("UPDATE log SET key = 'counter' WHERE key = 'other'"),
        r"log record \d+ of key 'counter' does not match its checksum",
    ),
    "two records swapped": (
        lambda db: swap_records(db, seq_of(db, "counter", 0), seq_of(db, "counter", 1)),
        r"log record \d+ of key 'counter' does not match its checksum",
    ),
    "text instead of a blob": (
        lambda db: db.execute("UPDATE log SET data = 'text' WHERE key = 'other'"),
        r"log record \d+ of key 'other' is not a blob",
    ),
    "a record of another type than its state": (
        lambda db: db.execute(
            "UPDATE log SET data = ?, checksum = ? WHERE seq = ?",
            (
                encode(ORSet()),
                record_checksum(seq_of(db, "counter"), "counter", encode(ORSet())),
                seq_of(db, "counter"),
            ),
        ),
        r"log record \d+ of key 'counter' holds a ORSet, its state a GCounter",
    ),
}


@pytest.mark.parametrize(("damage", "message"), LOG_DAMAGE.values(), ids=LOG_DAMAGE.keys())
def test_a_damaged_log_record_is_refused_naming_its_key(
    tmp_path: Path, damage: Callable[[sqlite3.Connection], object], message: str
) -> None:
    path = tmp_path / "state.db"
    write_log(path)
    backup = path.read_bytes()
    with raw(path) as db:
        damage(db)
    with pytest.raises(StorageError, match=message):
        reopen(path)
    path.write_bytes(backup)  # the failed open let go of the file
    assert reopen(path).replica_id == "r"


def test_load_refuses_a_damaged_record_naming_its_key(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    write_log(path)
    storage = SQLiteStorage(path)
    storage.open()
    with storage._db_lock:  # white box: damage under an open storage's lock
        assert storage._connection is not None
        storage._connection.execute("UPDATE log SET data = x'00' WHERE key = 'other'")
    assert storage.load("counter")[0] == counter_state("a", 1)
    with pytest.raises(StorageError, match="key 'other' does not match its checksum"):
        storage.load("other")
    storage.close()


def test_record_numbers_only_grow_even_after_folds(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    storage.append([("k", counter_state("a", 1)), ("k", counter_state("a", 2))])
    storage.put("k", counter_state("a", 3))  # drops the two newest records
    storage.close()
    storage.open()
    storage.append([("k", counter_state("a", 4))])
    storage.close()
    with raw(path) as db:
        assert db.execute("SELECT seq FROM log").fetchall() == [(3,)]


def install_failing_log_trigger(path: Path) -> None:
    with raw(path) as db:
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON log WHEN NEW.key = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )


def test_append_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    reopen(path)
    install_failing_log_trigger(path)
    storage = SQLiteStorage(path)
    storage.open()
    storage.append([("k", counter_state("a", 1))])
    with pytest.raises(StorageError, match="injected failure"):
        storage.append(
            [("k", counter_state("a", 2)), ("poison", counter_state("a", 1)), ("j", b"\x01")]
        )
    storage.append([("k", counter_state("a", 3))])  # still usable, numbers still in order
    storage.close()
    assert reopen(path).deltas == {"k": [counter_state("a", 1), counter_state("a", 3)]}


def test_a_failed_batched_append_is_retried_in_order(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    reopen(path)
    install_failing_log_trigger(path)
    storage = SQLiteStorage(path, sync_mode="batched", batch_interval=3600.0)
    storage.open()
    storage.append([("poison", counter_state("a", 1))])
    storage.append([("k", counter_state("a", 1))])
    with pytest.raises(StorageError, match="injected failure"):
        storage.flush()
    with pytest.raises(StorageError, match="injected failure"):  # writers hear of it
        storage.append([("poison", counter_state("a", 2)), ("k", counter_state("a", 2))])
    assert storage.pending_writes == 4
    with storage._db_lock:  # white box: heal the "disk"
        assert storage._connection is not None
        storage._connection.execute("DROP TRIGGER refuse")
    storage.flush()
    assert storage.pending_writes == 0
    storage.close()
    assert reopen(path).deltas == {
        "poison": [counter_state("a", 1), counter_state("a", 2)],
        "k": [counter_state("a", 1), counter_state("a", 2)],
    }


def test_batched_appends_count_each_delta_and_load_shows_only_what_is_committed(
    tmp_path: Path,
) -> None:
    storage = SQLiteStorage(
        tmp_path / "state.db", sync_mode="batched", batch_interval=3600.0, batch_size=4
    )
    storage.open()
    storage.append([("k", counter_state("a", 1)), ("k", counter_state("a", 2))])
    storage.put("j", counter_state("a", 1))
    assert storage.pending_writes == 3
    assert storage.load("k") == (None, [])  # pending, not committed
    storage.append([("k", counter_state("a", 3))])  # the fourth write commits the batch
    assert storage.pending_writes == 0
    assert storage.load("k") == (None, [counter_state("a", n) for n in (1, 2, 3)])
    storage.close()


def test_a_batch_keeps_per_key_order_and_a_replace_drops_what_came_before() -> None:
    batch = Batch()
    batch.append("k", b"1")
    batch.append("k", b"2")
    batch.replace("k", b"S")
    batch.append("k", b"3")
    batch.replace("gone", None)
    assert batch.changes == {
        "k": KeyChange(replace=True, state=b"S", deltas=[b"3"]),
        "gone": KeyChange(replace=True, state=None),
    }
    assert batch.writes == 3


def test_a_failed_batch_taken_back_goes_before_the_newer_writes() -> None:
    failed = Batch()
    failed.append("a", b"old")
    failed.replace("b", b"old state")
    failed.append("c", b"old")
    newer = Batch()
    newer.append("a", b"new")
    newer.replace("c", b"new state")
    newer.take_back(failed)
    assert newer.changes == {
        "a": KeyChange(replace=False, deltas=[b"old", b"new"]),
        "b": KeyChange(replace=True, state=b"old state"),
        "c": KeyChange(replace=True, state=b"new state"),
    }
    assert newer.writes == sum(change.writes for change in newer.changes.values()) == 4

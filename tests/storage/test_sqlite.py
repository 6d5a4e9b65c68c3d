"""SQLiteStorage on real files: durability across kills, refusal of damaged or foreign
files, transactions, batching and locking (the shared contract is in test_base.py).

The crash tests run a writer in a child process and kill it with SIGKILL, so nothing
of Python's or SQLite's shutdown runs: what is found afterwards is what was on disk.
A kill does not lose the operating system's page cache, so these tests prove that a
write is committed before put() returns; that the commit is also fsynced (power loss)
rests on ``synchronous=FULL``, checked separately.
"""

from __future__ import annotations

import os
import random
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from crdtgossip import ConfigError, StorageError, encode
from crdtgossip.storage import APPLICATION_ID, SCHEMA_VERSION, SQLiteStorage, StoredState
from crdtgossip.storage._sqlite_log import row_checksum

from .conftest import CHILD_TIMEOUT, child_env, counter_state, raw, reopen, sample_states


def write_samples(path: Path, **options: object) -> dict[str, bytes]:
    """Store every sample type plus enough keys to span many pages; return them."""
    encoded = {key: encode(state) for key, state in sample_states().items()}
    encoded.update({f"bulk{i}": counter_state(f"replica-{i:04d}", i + 1) for i in range(300)})
    storage = SQLiteStorage(path, **options)  # type: ignore[arg-type]
    storage.open()
    storage.save_identity("r", 1)
    storage.put_many(encoded.items())
    storage.close()
    return encoded


# =========================================================================================
# creation and settings
# =========================================================================================


def test_a_new_file_is_created_complete_and_marked_as_ours(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    assert storage.open() == StoredState(None, 0, {})
    storage.close()
    assert sorted(os.listdir(tmp_path)) == ["state.db", "state.db.hwm"]  # no temporary, no WAL
    with raw(path) as db:
        assert db.execute("PRAGMA application_id").fetchone() == (APPLICATION_ID,)
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("wal",)


def test_durable_settings_are_in_force_on_the_connection(tmp_path: Path) -> None:
    # White box: no test short of cutting the power can tell FULL from NORMAL.
    storage = SQLiteStorage(tmp_path / "state.db")
    storage.open()
    connection = storage._connection
    assert connection is not None
    assert connection.execute("PRAGMA synchronous").fetchone() == (2,)  # FULL
    assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    assert connection.execute("PRAGMA locking_mode").fetchone() == ("exclusive",)
    assert storage.durable
    assert storage.sync_mode == "durable"
    storage.close()
    assert not SQLiteStorage(tmp_path / "b.db", sync_mode="batched").durable


@pytest.mark.parametrize(
    "options",
    [
        {"sync_mode": "fast"},
        {"batch_interval": 0},
        {"batch_interval": -1.0},
        {"batch_interval": float("nan")},
        {"batch_interval": float("inf")},
        {"batch_interval": "1"},
        {"batch_size": 0},
        {"batch_size": 1.5},
        {"fold_min_bytes": -1},
        {"fold_min_bytes": 1.0},
    ],
)
def test_bad_options_raise_config_error(tmp_path: Path, options: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        SQLiteStorage(tmp_path / "state.db", **options)  # type: ignore[arg-type]


# =========================================================================================
# refusing damaged, foreign and unusable files
# =========================================================================================

DAMAGED_FILES: dict[str, Callable[[], bytes]] = {
    "random bytes": lambda: random.Random(1).randbytes(8192),
    "sqlite magic then garbage": lambda: b"SQLite format 3\x00" + random.Random(2).randbytes(8176),
    "text": lambda: b"replica_id = a\n" * 100,
    "empty": lambda: b"",
}


@pytest.mark.parametrize("content", DAMAGED_FILES.values(), ids=DAMAGED_FILES.keys())
def test_a_file_that_is_not_sqlite_is_refused(tmp_path: Path, content: Callable[[], bytes]) -> None:
    path = tmp_path / "state.db"
    data = content()
    path.write_bytes(data)
    with pytest.raises(StorageError, match=r"not a SQLite database|empty"):
        reopen(path)
    assert path.read_bytes() == data  # refused, not repaired or replaced


TRUNCATIONS: dict[str, Callable[[int, int], int]] = {
    "by one byte": lambda size, page: size - 1,
    "by one page": lambda size, page: size - page,
    "to half, on a page boundary": lambda size, page: size // 2 // page * page,
    "to half, inside a page": lambda size, page: size // 2 // page * page + 100,
    "inside the header": lambda size, page: 50,
    "to the first page": lambda size, page: page,
}


@pytest.mark.parametrize("cut", TRUNCATIONS.values(), ids=TRUNCATIONS.keys())
def test_a_truncated_file_is_refused(tmp_path: Path, cut: Callable[[int, int], int]) -> None:
    path = tmp_path / "state.db"
    write_samples(path)
    with raw(path) as db:
        (page,) = db.execute("PRAGMA page_size").fetchone()
    size = path.stat().st_size
    assert size >= 8 * page  # the cuts below land where they are meant to
    os.truncate(path, cut(size, page))
    with pytest.raises(StorageError, match=str(path)):
        reopen(path)


def test_a_flipped_byte_inside_a_state_is_caught_by_its_checksum(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    write_samples(path)
    image = path.read_bytes()
    assert image.count(b"10.0.0.1") == 1  # an element of the ORMap sample
    # Still a valid encoding, of a different state: only the checksum can tell.
    path.write_bytes(image.replace(b"10.0.0.1", b"10.0.0.9"))
    with pytest.raises(StorageError, match="'ormap' does not match its checksum"):
        reopen(path)


def test_a_damaged_index_is_caught_by_the_integrity_check(tmp_path: Path) -> None:
    # Loading scans the table, never the key index: only PRAGMA quick_check sees this,
    # and a damaged index would later misplace or duplicate keys on write.
    path = tmp_path / "state.db"
    write_samples(path)
    with raw(path) as db:
        (page,) = db.execute("PRAGMA page_size").fetchone()
        (root,) = db.execute(
            "SELECT rootpage FROM sqlite_master WHERE type = 'index' AND tbl_name = 'states'"
        ).fetchone()
    with path.open("r+b") as file:
        file.seek((root - 1) * page)
        file.write(random.Random(3).randbytes(page))
    with pytest.raises(StorageError, match="quick_check"):
        reopen(path)


ROW_DAMAGE: dict[str, tuple[Callable[[sqlite3.Connection], object], str]] = {
    "garbage data": (
        lambda db: db.execute("UPDATE states SET data = x'c1c1c1' WHERE key = 'orset'"),
        "'orset' does not match its checksum",
    ),
    "garbage data with a matching checksum": (
        lambda db: db.execute(
            "UPDATE states SET data = x'c1c1c1', checksum = ? WHERE key = 'orset'",
            (row_checksum("orset", b"\xc1\xc1\xc1"),),
        ),
        "'orset' does not decode",
    ),
    "text instead of a blob": (
        lambda db: db.execute("UPDATE states SET data = 'text' WHERE key = 'orset'"),
        "'orset' is not a blob",
    ),
    "two rows' data and checksums swapped": (
        lambda db: db.executescript(
            "UPDATE states SET key = 'swap' WHERE key = 'gcounter';"
            "UPDATE states SET key = 'gcounter' WHERE key = 'pncounter';"
            "UPDATE states SET key = 'pncounter' WHERE key = 'swap';"
        ),
        "does not match its checksum",
    ),
    "replica id changed": (
        lambda db: db.execute("UPDATE meta SET replica_id = 'someone-else'"),
        "meta row",
    ),
    "meta row deleted": (lambda db: db.execute("DELETE FROM meta"), "0 meta rows"),
    "meta table dropped": (lambda db: db.execute("DROP TABLE meta"), "no such table"),
}


@pytest.mark.parametrize(("damage", "message"), ROW_DAMAGE.values(), ids=ROW_DAMAGE.keys())
def test_a_damaged_row_is_refused_and_the_file_left_usable(
    tmp_path: Path, damage: Callable[[sqlite3.Connection], object], message: str
) -> None:
    path = tmp_path / "state.db"
    write_samples(path)
    backup = path.read_bytes()
    with raw(path) as db:
        damage(db)
    with pytest.raises(StorageError, match=message):
        reopen(path)
    # The failed open let go of the file: it can be repaired and then opened.
    path.write_bytes(backup)
    assert reopen(path).replica_id == "r"


def test_a_sqlite_database_of_another_program_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with raw(path) as db:
        db.execute("CREATE TABLE users (name TEXT, email TEXT)")
        db.execute("INSERT INTO users VALUES ('a', 'a@example.org')")
    with pytest.raises(StorageError, match="another program"):
        reopen(path)


def test_a_file_of_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    write_samples(path)
    with raw(path) as db:
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    with pytest.raises(StorageError, match="newer crdtgossip"):
        reopen(path)


def test_a_file_marked_as_ours_without_our_tables_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with raw(path) as db:
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        db.execute("CREATE TABLE other (x)")
    with pytest.raises(StorageError, match="no such table"):
        reopen(path)


def test_a_write_ahead_log_without_its_database_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    Path(f"{path}-wal").write_bytes(b"\x37\x7f\x06\x82" + bytes(28))
    with pytest.raises(StorageError, match="without its write-ahead log"):
        reopen(path)
    assert not path.exists()  # no empty store made in its place


def test_a_directory_or_a_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(StorageError, match="not a regular file"):
        reopen(tmp_path)
    with pytest.raises(StorageError, match="does not exist"):
        reopen(tmp_path / "missing" / "state.db")


def test_a_file_open_in_this_process_is_refused_until_closed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    first = SQLiteStorage(path)
    first.open()
    with pytest.raises(StorageError, match="in use"):
        SQLiteStorage(path).open()
    first.put("k", counter_state("a", 1))
    first.close()
    assert reopen(path).states == {"k": counter_state("a", 1)}


HOLD_OPEN = """
import sys
from crdtgossip.storage import SQLiteStorage
storage = SQLiteStorage(sys.argv[1])
storage.open()
print("open", flush=True)
sys.stdin.read()
storage.close()
"""


def test_a_file_open_in_another_process_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_OPEN, str(path)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=child_env(),
    )
    watchdog = threading.Timer(CHILD_TIMEOUT, holder.kill)
    watchdog.start()
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == b"open\n"
        with pytest.raises(StorageError, match="in use by another process"):
            reopen(path)
        holder.stdin.close()
        assert holder.wait(timeout=CHILD_TIMEOUT) == 0
    finally:
        watchdog.cancel()
        holder.kill()
        holder.wait(timeout=CHILD_TIMEOUT)
        if holder.stdout is not None:
            holder.stdout.close()
    assert reopen(path) == StoredState(None, 0, {})


# =========================================================================================
# transactions and failures
# =========================================================================================


def install_failing_trigger(path: Path) -> None:
    """Make every insert of key 'poison' fail inside SQLite while table ``fail`` names
    it: a commit that fails part way, as a full disk would."""
    with raw(path) as db:
        db.execute("CREATE TABLE fail (on_key TEXT)")
        db.execute("INSERT INTO fail VALUES ('poison')")
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON states "
            "WHEN NEW.key IN (SELECT on_key FROM fail) "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )


def stop_failing(storage: SQLiteStorage) -> None:
    # White box: the file is locked by the storage, so go through its connection.
    with storage._db_lock:
        assert storage._connection is not None
        storage._connection.execute("DELETE FROM fail")


def test_put_many_is_all_or_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    reopen(path)
    install_failing_trigger(path)
    storage = SQLiteStorage(path)
    storage.open()
    storage.put("before", counter_state("a", 1))
    batch = [(f"k{i}", counter_state("a", i + 1)) for i in range(50)]
    with pytest.raises(StorageError, match="injected failure"):
        storage.put_many([*batch[:25], ("poison", counter_state("a", 1)), *batch[25:]])
    assert storage.pending_writes == 0  # in durable mode a failed write is dropped, not retried
    storage.put("after", counter_state("a", 2))  # still usable
    storage.close()
    assert reopen(path).states == {"before": counter_state("a", 1), "after": counter_state("a", 2)}


def test_batched_put_many_is_all_or_nothing_too(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    reopen(path)
    install_failing_trigger(path)
    storage = SQLiteStorage(path, sync_mode="batched", batch_interval=3600.0)
    storage.open()
    storage.put_many([("a", counter_state("a", 1)), ("poison", counter_state("a", 1))])
    with pytest.raises(StorageError, match=r"final commit .* failed"):
        storage.close()
    assert reopen(path).states == {}


def test_a_failed_batched_commit_is_reported_and_retried(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    reopen(path)
    install_failing_trigger(path)
    storage = SQLiteStorage(path, sync_mode="batched", batch_interval=3600.0)
    storage.open()
    storage.put("a", counter_state("a", 1))
    storage.put("poison", counter_state("a", 2))
    with pytest.raises(StorageError, match="injected failure"):
        storage.flush()
    assert storage.pending_writes == 2  # kept for the next commit
    with pytest.raises(StorageError, match="injected failure"):
        storage.put("b", counter_state("a", 3))  # writers hear of the failure
    assert storage.pending_writes == 3
    stop_failing(storage)
    storage.flush()
    assert storage.pending_writes == 0
    storage.close()
    assert reopen(path).states == {
        "a": counter_state("a", 1),
        "poison": counter_state("a", 2),
        "b": counter_state("a", 3),
    }


# =========================================================================================
# batched mode
# =========================================================================================


def test_writes_of_a_commit_under_way_are_still_pending(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash during a commit loses its batch: pending_writes must say so (it read 0
    from the moment the batch was taken, and a crash test that waited for 0 lost it)."""
    storage = SQLiteStorage(tmp_path / "state.db", sync_mode="batched", batch_interval=3600.0)
    storage.open()
    started, release = threading.Event(), threading.Event()
    commit = storage._commit

    def slow_commit(changes: object) -> None:
        started.set()
        assert release.wait(30)
        commit(changes)  # type: ignore[arg-type]

    monkeypatch.setattr(storage, "_commit", slow_commit)
    for i in range(3):
        storage.put(f"k{i}", counter_state("a", i + 1))
    flushing = threading.Thread(target=storage.flush)
    flushing.start()
    assert started.wait(30)
    storage.put("later", counter_state("a", 9))
    try:
        assert storage.pending_writes == 4  # three in the commit under way, one waiting
    finally:
        release.set()
        flushing.join(30)
    assert storage.pending_writes == 1
    storage.close()
    assert storage.pending_writes == 0


def test_batched_writes_wait_until_close_commits_them(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, sync_mode="batched", batch_interval=3600.0)
    storage.open()
    storage.save_identity("r", 1)
    for i in range(10):
        storage.put(f"k{i}", counter_state("a", i + 1))
    storage.delete("k0")
    assert storage.pending_writes == 10
    storage.close()
    stored = reopen(path)
    assert stored.states == {f"k{i}": counter_state("a", i + 1) for i in range(1, 10)}
    assert stored.replica_id == "r"  # a clean close keeps the id


def test_a_full_batch_is_committed_at_once(tmp_path: Path) -> None:
    storage = SQLiteStorage(
        tmp_path / "state.db", sync_mode="batched", batch_interval=3600.0, batch_size=5
    )
    storage.open()
    for i in range(4):
        storage.put(f"k{i}", counter_state("a", 1))
    assert storage.pending_writes == 4
    storage.put("k4", counter_state("a", 1))
    assert storage.pending_writes == 0
    storage.put("k0", counter_state("a", 2))  # a rewrite counts once
    storage.put("k0", counter_state("a", 3))
    assert storage.pending_writes == 1
    storage.close()


def test_batched_writers_in_many_threads_with_commits_running_lose_nothing(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path, sync_mode="batched", batch_interval=0.001, batch_size=3)
    storage.open()
    errors: list[BaseException] = []

    def writer(number: int) -> None:
        try:
            for i in range(100):
                storage.put(f"t{number}-{i}", counter_state("a", i + 1))
                if i % 25 == 0:
                    storage.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    storage.close()
    assert reopen(path).states == {
        f"t{n}-{i}": counter_state("a", i + 1) for n in range(8) for i in range(100)
    }


@pytest.mark.parametrize("table", [b"CREATE TABLE meta", b"CREATE TABLE log"])
def test_a_byte_of_the_schema_text_that_is_not_utf8_is_a_storage_error(
    tmp_path: Path, table: bytes
) -> None:
    # Issue 18 item 5: one bad byte in the stored schema text made open() raise the
    # UnicodeDecodeError of the sqlite3 module, not one of ours.
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    storage.save_identity("r.1", 0)
    storage.close()
    data = bytearray(path.read_bytes())
    at = data.find(table)
    assert at >= 0
    data[at + 3] = 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(StorageError, match="not UTF-8"):
        SQLiteStorage(path).open()

"""The SQLite file's schema (crdtgossip/storage/_sqlite_schema.py): version 2's tables,
the commit counter, and the migration of a real version-1 file."""

from __future__ import annotations

import zlib
from pathlib import Path

import pytest

from crdtgossip import StorageError, encode
from crdtgossip.storage import APPLICATION_ID, SCHEMA_VERSION, SQLiteStorage, StoredState
from crdtgossip.storage._sqlite_log import row_checksum

from .conftest import counter_state, raw, reopen, sample_states

# The schema of crdtgossip 0.1.0 (SCHEMA_VERSION 1), as it created files: kept here
# verbatim, so the migration is tested on what old files really hold.
V1_SCHEMA = """
CREATE TABLE meta (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    schema_version INTEGER NOT NULL,
    replica_id TEXT,
    incarnation INTEGER NOT NULL,
    created INTEGER NOT NULL,
    writes_at_risk INTEGER NOT NULL,
    checksum INTEGER NOT NULL
);
CREATE TABLE states (
    key TEXT PRIMARY KEY NOT NULL,
    data BLOB NOT NULL,
    checksum INTEGER NOT NULL,
    updated INTEGER NOT NULL
);
"""


def v1_meta_checksum(replica_id: str | None, incarnation: int, created: int, at_risk: bool) -> int:
    """The meta row checksum of version 1, computed as 0.1.0 did."""
    replica = "" if replica_id is None else "=" + replica_id
    fields = (1, replica, incarnation, created, at_risk)
    return zlib.crc32("\0".join(map(str, fields)).encode("utf-8"))


def build_v1_file(path: Path, states: dict[str, bytes], checksum: int | None = None) -> None:
    """A version-1 state file holding replica id "old", incarnation 4 and ``states``."""
    created = 1_700_000_000_000
    with raw(path) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        db.execute("PRAGMA user_version = 1")
        db.executescript(V1_SCHEMA)
        db.execute(
            "INSERT INTO meta VALUES (1, 1, 'old', 4, ?, 0, ?)",
            (created, v1_meta_checksum("old", 4, created, False) if checksum is None else checksum),
        )
        db.executemany(
            "INSERT INTO states VALUES (?, ?, ?, ?)",
            [(key, data, row_checksum(key, data), created) for key, data in states.items()],
        )


def test_a_new_file_has_the_log_table_and_a_zero_commit_counter(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    assert reopen(path) == StoredState(None, 0, {}, {}, 0)
    with raw(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        assert SCHEMA_VERSION == 2
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
        assert {"meta", "states", "log", "log_by_key"} <= tables
        assert db.execute("SELECT schema_version, commit_seq FROM meta").fetchone() == (2, 0)


def test_a_version_1_file_is_migrated_with_everything_it_held(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    states = {key: encode(state) for key, state in sample_states().items()}
    build_v1_file(path, states)
    storage = SQLiteStorage(path)
    stored = storage.open()
    assert (stored.replica_id, stored.incarnation, stored.states) == ("old", 4, states)
    assert stored.deltas == {}
    assert stored.commit_seq == 1  # the migration is a commit
    storage.append([("gcounter", counter_state("new", 5))])
    storage.close()
    with raw(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (2,)
        assert db.execute("SELECT schema_version FROM meta").fetchone() == (2,)
    again = reopen(path)
    assert again.replica_id == "old"
    assert again.deltas == {"gcounter": [counter_state("new", 5)]}
    assert again.commit_seq == 2


def test_a_damaged_version_1_file_is_refused_and_left_as_it_was(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    build_v1_file(path, {"k": counter_state("a", 1)}, checksum=12345)
    image = path.read_bytes()
    with pytest.raises(StorageError, match="meta row"):
        reopen(path)
    with raw(path) as db:
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
    assert path.read_bytes() == image


def test_a_migration_that_fails_leaves_the_version_1_file_whole(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    build_v1_file(path, {"k": counter_state("a", 1)})
    with raw(path) as db:
        db.execute("CREATE TABLE log (other TEXT)")  # in the way of the migration
    with pytest.raises(StorageError, match="already exists"):
        reopen(path)
    with raw(path) as db:  # rolled back as one transaction
        assert db.execute("PRAGMA user_version").fetchone() == (1,)
        columns = [row[1] for row in db.execute("PRAGMA table_info(meta)")]
        assert "commit_seq" not in columns
        db.execute("DROP TABLE log")
    stored = reopen(path)  # once the obstacle is gone, it migrates
    assert (stored.replica_id, stored.states) == ("old", {"k": counter_state("a", 1)})


def test_each_commit_raises_the_counter_by_one_and_a_failed_one_does_not(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    reopen(path)
    with raw(path) as db:  # a commit that fails inside SQLite, as a full disk would
        db.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON log WHEN NEW.key = 'poison' "
            "BEGIN SELECT RAISE(ABORT, 'injected failure'); END"
        )
    storage = SQLiteStorage(path)
    storage.open()
    storage.save_identity("r", 1)
    storage.put("a", counter_state("a", 1))
    storage.put_many([("b", counter_state("a", 2)), ("c", counter_state("a", 3))])
    storage.append([("a", counter_state("b", 1)), ("d", counter_state("b", 2))])
    storage.delete("c")
    with pytest.raises(StorageError, match="injected failure"):
        storage.append([("a", counter_state("c", 1)), ("poison", counter_state("c", 1))])
    storage.close()
    assert reopen(path).commit_seq == 5
    with raw(path) as db:
        assert db.execute("SELECT commit_seq FROM meta").fetchone() == (5,)


def test_a_changed_commit_counter_fails_the_meta_checksum(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    storage.put("k", counter_state("a", 1))
    storage.close()
    with raw(path) as db:
        db.execute("UPDATE meta SET commit_seq = commit_seq + 1")
    with pytest.raises(StorageError, match="meta row"):
        reopen(path)

"""The high-water mark beside a SQLite file (crdtgossip/storage/_sqlite_hwm.py): a file
that lost commits (its write-ahead log damaged, cut short or deleted after a crash, or
the file replaced by an older copy) is found out at open, on real files: the replica id
is retired and the states it still holds are kept."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from crdtgossip.storage import SQLiteStorage
from crdtgossip.storage._sqlite_hwm import mark_path

from .conftest import CHILD_TIMEOUT, child_env, counter_state, posix_only, reopen, stored_value

WRITE_THEN_DIE = """
import os, signal, sys
from crdtgossip import GCounter, encode
from crdtgossip.storage import SQLiteStorage
storage = SQLiteStorage(sys.argv[1])
storage.open()
storage.save_identity("child", 1)
counter = GCounter()
for i in range(int(sys.argv[2])):
    storage.append([("counter", encode(counter.increment("child")))])
os.kill(os.getpid(), signal.SIGKILL)
"""

WRITES = 100


def write_then_die(path: Path) -> None:
    """A durable writer appending WRITES increments, killed after the last returned: its
    write-ahead log holds every commit (too few pages for a checkpoint)."""
    child = subprocess.run(
        [sys.executable, "-c", WRITE_THEN_DIE, str(path), str(WRITES)],
        env=child_env(),
        capture_output=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


def counted(path: Path) -> tuple[int, object, bool]:
    """The counter's value, the replica id, and whether the open found a rollback."""
    stored = reopen(path)
    counter = stored_value(stored, "counter")
    return (0 if counter is None else counter.value), stored.replica_id, stored.rolled_back


def flip_middle_byte(wal: Path) -> None:
    data = bytearray(wal.read_bytes())
    data[len(data) // 2] ^= 0xFF
    wal.write_bytes(bytes(data))


WAL_DAMAGE = {
    "one byte flipped": flip_middle_byte,
    "cut to half": lambda wal: wal.write_bytes(wal.read_bytes()[: wal.stat().st_size // 2]),
    "deleted": lambda wal: wal.unlink(),
}


@posix_only
def test_a_crash_with_its_log_intact_loses_nothing_and_keeps_the_id(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    write_then_die(path)
    assert counted(path) == (WRITES, "child", False)


@posix_only
@pytest.mark.parametrize("damage", WAL_DAMAGE.values(), ids=WAL_DAMAGE.keys())
def test_a_damaged_write_ahead_log_is_found_out(tmp_path: Path, damage: object) -> None:
    path = tmp_path / "state.db"
    write_then_die(path)
    wal = Path(f"{path}-wal")
    assert wal.exists()
    damage(wal)  # type: ignore[operator]
    value, replica_id, rolled_back = counted(path)
    assert value < WRITES  # SQLite dropped commits without an error ...
    assert rolled_back  # ... and the mark tells
    assert replica_id is None  # so the id that made the lost writes is not reused
    # The retirement is on disk: the next open, whole again, still gives no id.
    assert counted(path) == (value, None, False)


def test_a_file_replaced_by_an_older_copy_is_found_out(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    storage.save_identity("r", 1)
    storage.put("k", counter_state("r", 1))
    storage.close()
    shutil.copy(path, tmp_path / "backup.db")  # a backup taken while stopped
    storage.open()
    storage.put("k", counter_state("r", 2))
    storage.close()
    shutil.copy(tmp_path / "backup.db", path)  # restored
    stored = reopen(path)
    assert stored.states == {"k": counter_state("r", 1)}  # the backup's state, kept
    assert (stored.replica_id, stored.rolled_back) == (None, True)


def test_a_copy_as_new_as_the_mark_keeps_its_id(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    storage.save_identity("r", 1)
    storage.append([("counter", counter_state("r", 1))])
    storage.close()
    shutil.copy(path, tmp_path / "backup.db")
    shutil.copy(tmp_path / "backup.db", path)
    stored = reopen(path)
    assert (stored.replica_id, stored.rolled_back) == ("r", False)


def test_a_missing_mark_proves_nothing_and_retires_nothing(tmp_path: Path) -> None:
    # A file from before the mark existed (or whose mark was lost): nothing to compare.
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    storage.save_identity("r", 1)
    storage.close()
    mark_path(path).unlink()
    stored = reopen(path)
    assert (stored.replica_id, stored.rolled_back) == ("r", False)
    assert mark_path(path).exists()  # written again at open


def test_a_damaged_mark_retires_the_id(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    storage.save_identity("r", 1)
    storage.close()
    mark = bytearray(mark_path(path).read_bytes())
    mark[-1] ^= 0x01
    mark_path(path).write_bytes(bytes(mark))
    stored = reopen(path)
    assert (stored.replica_id, stored.rolled_back) == (None, True)


def test_the_mark_of_another_store_is_ignored(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    storage.open()
    for n in range(1, 20):
        storage.put("k", counter_state("r", n))
    storage.close()
    path.unlink()  # the file deleted, its mark left behind: a new store is made
    stored = reopen(path)
    assert (stored.replica_id, stored.rolled_back, stored.states) == (None, False, {})


def marked(path: Path) -> int:
    """The commit counter the mark beside ``path`` holds."""
    return int.from_bytes(mark_path(path).read_bytes()[-24:-16], "big")


def test_every_commit_moves_the_mark(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    storage = SQLiteStorage(path)
    start = storage.open().commit_seq
    assert marked(path) == start
    storage.save_identity("r", 1)
    for n in range(1, 6):
        storage.append([("counter", counter_state("r", n))])
        assert marked(path) == start + 1 + n  # written with the commit, before returning
    storage.close()
    assert marked(path) == reopen(path).commit_seq == start + 6

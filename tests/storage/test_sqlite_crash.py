"""SQLiteStorage across kills: a writer in a child process killed with SIGKILL, so
nothing of Python's or SQLite's shutdown runs, and what is found afterwards is what was
on disk. A kill does not lose the operating system's page cache, so these tests prove
that a write is committed before it returns; that the commit is also fsynced (power
loss) rests on ``synchronous=FULL``, checked in test_sqlite.py.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from crdtgossip import decode
from crdtgossip.storage import SQLiteStorage

from .conftest import CHILD_TIMEOUT, child_env, counter_state, posix_only, reopen, stored_value

WRITE_THEN_DIE = """
import os, signal, sys, time
from crdtgossip import GCounter, encode
from crdtgossip.storage import SQLiteStorage
path, mode, count, then, interval = sys.argv[1:]
storage = SQLiteStorage(path, sync_mode=mode, batch_interval=float(interval), batch_size=10**6)
storage.open()
storage.save_identity("child", 1)
for i in range(int(count)):
    counter = GCounter()
    counter.increment("child", i + 1)
    storage.put(f"k{i}", encode(counter))
if then == "wait-for-commit":
    deadline = time.monotonic() + 30
    while storage.pending_writes and time.monotonic() < deadline:
        time.sleep(0.005)
os.kill(os.getpid(), signal.SIGKILL)
"""

KILLED_WRITES = 100


def write_then_die(path: Path, mode: str, then: str = "die", interval: float = 3600.0) -> None:
    """Run a child that writes KILLED_WRITES keys and kills itself right after the last
    put() returns (or once its batches are committed)."""
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            WRITE_THEN_DIE,
            str(path),
            mode,
            str(KILLED_WRITES),
            then,
            str(interval),
        ],
        env=child_env(),
        capture_output=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


@posix_only
def test_every_durable_write_survives_a_kill_right_after_it_returns(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    write_then_die(path, "durable")
    assert Path(f"{path}-wal").exists()  # no clean close: the log must be recovered
    stored = reopen(path)
    assert stored.replica_id == "child"
    assert stored.states == {f"k{i}": counter_state("child", i + 1) for i in range(KILLED_WRITES)}


@posix_only
def test_batched_writes_not_yet_committed_are_lost_by_a_kill(tmp_path: Path) -> None:
    # The documented risk, and proof that the test above can fail.
    path = tmp_path / "state.db"
    write_then_die(path, "batched")
    stored = reopen(path)
    assert stored.states == {}
    # Writes made under the saved id are lost: the id is retired, the incarnation kept.
    assert (stored.replica_id, stored.incarnation) == (None, 1)


@posix_only
def test_batched_writes_survive_a_kill_once_committed_in_the_background(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    write_then_die(path, "batched", then="wait-for-commit", interval=0.01)
    stored = reopen(path)
    assert stored.states == {f"k{i}": counter_state("child", i + 1) for i in range(KILLED_WRITES)}
    assert stored.replica_id is None  # nothing on disk says no write was lost


@posix_only
def test_the_id_retired_after_a_batched_crash_stays_retired(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    write_then_die(path, "batched")
    assert reopen(path).replica_id is None  # a durable session that saves no new id ...
    assert reopen(path).replica_id is None  # ... does not bring the old one back
    storage = SQLiteStorage(path, sync_mode="batched")
    storage.open()
    storage.save_identity("fresh", 2)
    storage.close()
    assert (reopen(path).replica_id, reopen(path).incarnation) == ("fresh", 2)


WRITE_AND_ACKNOWLEDGE = """
import sys
from crdtgossip import GCounter, decode, encode
from crdtgossip.storage import SQLiteStorage
storage = SQLiteStorage(sys.argv[1])
stored = storage.open()
storage.save_identity("writer", 1)
counter = decode(stored.states["counter"]) if "counter" in stored.states else GCounter()
for _ in range(1_000_000):
    counter.increment("writer")
    value = counter.value
    storage.put_many([("counter", encode(counter)), (f"k{value}", encode(counter))])
    print(value, flush=True)  # acknowledged: put_many returned
"""

KILL_ROUNDS = 5


@posix_only
def test_acknowledged_writes_survive_kills_at_random_moments(tmp_path: Path) -> None:
    """Kill the writer at random points (mid-commit included), restart it each time from
    what it stored: every acknowledged write is there, the file always opens, and the
    counter never goes back."""
    path = tmp_path / "state.db"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    highest_seen = 0
    for round_number in range(KILL_ROUNDS):
        kill_after = rng.randint(1, 80)
        acknowledged: list[int] = []
        with (tmp_path / f"stderr{round_number}").open("w+b") as stderr:
            writer = subprocess.Popen(
                [sys.executable, "-c", WRITE_AND_ACKNOWLEDGE, str(path)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=child_env(),
            )
            watchdog = threading.Timer(CHILD_TIMEOUT, writer.kill)
            watchdog.start()
            try:
                assert writer.stdout is not None
                for line in writer.stdout:  # ends early if the writer dies on its own
                    acknowledged.append(int(line))
                    if len(acknowledged) == kill_after:
                        writer.send_signal(signal.SIGKILL)
                        break
            finally:
                watchdog.cancel()
                writer.kill()
                writer.wait(timeout=CHILD_TIMEOUT)
                if writer.stdout is not None:
                    writer.stdout.close()
            stderr.seek(0)
            assert len(acknowledged) == kill_after, (seed, stderr.read().decode())
        stored = reopen(path)
        value = decode(stored.states["counter"]).value
        assert value >= acknowledged[-1], seed
        assert value >= highest_seen, seed  # never decreases across kills
        highest_seen = value
        for acked in acknowledged:
            assert decode(stored.states[f"k{acked}"]).value == acked, seed


# =========================================================================================
# crashes of a writer appending deltas, with folds running all the while
# =========================================================================================

APPEND_THEN_DIE = """
import os, signal, sys, time
from crdtgossip import GCounter, encode
from crdtgossip.storage import SQLiteStorage
path, mode, count, then = sys.argv[1:]
storage = SQLiteStorage(
    path, sync_mode=mode, batch_interval=0.01 if then == "wait-for-commit" else 3600.0,
    batch_size=10**6, fold_min_bytes=0,
)
storage.open()
storage.save_identity("child", 1)
counter = GCounter()
for i in range(int(count)):
    storage.append([("k", encode(counter.increment("child")))])
if then == "wait-for-commit":
    deadline = time.monotonic() + 30
    while storage.pending_writes and time.monotonic() < deadline:
        time.sleep(0.005)
os.kill(os.getpid(), signal.SIGKILL)
"""

APPENDS = 200


def append_then_die(path: Path, mode: str, then: str = "die") -> None:
    """Run a child that appends APPENDS increments of one counter, folding after every
    append, and kills itself right after the last append returns (or once committed)."""
    child = subprocess.run(
        [sys.executable, "-c", APPEND_THEN_DIE, str(path), mode, str(APPENDS), then],
        env=child_env(),
        capture_output=True,
        timeout=CHILD_TIMEOUT,
        check=False,
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode()


@posix_only
def test_every_durable_append_survives_a_kill_with_folds_under_way(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    append_then_die(path, "durable")
    stored = reopen(path)
    assert stored.replica_id == "child"
    value = stored_value(stored, "k")
    assert value is not None
    assert value.value == APPENDS


@posix_only
def test_batched_appends_not_yet_committed_are_lost_by_a_kill(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    append_then_die(path, "batched")
    stored = reopen(path)
    assert (stored.states, stored.deltas) == ({}, {})  # the window: everything since the open
    assert stored.replica_id is None


@posix_only
def test_batched_appends_survive_a_kill_once_committed(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    append_then_die(path, "batched", then="wait-for-commit")
    stored = reopen(path)
    value = stored_value(stored, "k")
    assert value is not None
    assert value.value == APPENDS
    assert stored.replica_id is None


APPEND_AND_ACKNOWLEDGE = """
import sys
from crdtgossip import GCounter, decode, encode
from crdtgossip.storage import SQLiteStorage
storage = SQLiteStorage(sys.argv[1], fold_min_bytes=int(sys.argv[2]))
stored = storage.open()
storage.save_identity("writer", 1)
counter = GCounter()
for data in [stored.states["counter"]] if "counter" in stored.states else []:
    counter.merge(decode(data))
for data in stored.deltas.get("counter", []):
    counter.merge(decode(data))
for _ in range(1_000_000):
    delta = counter.increment("writer")
    storage.append([("counter", encode(delta)), (f"k{counter.value}", encode(counter))])
    print(counter.value, flush=True)  # acknowledged: append returned
"""


@posix_only
@pytest.mark.parametrize("fold_min_bytes", [0, 512])
def test_acknowledged_appends_survive_kills_at_random_moments(
    tmp_path: Path, fold_min_bytes: int
) -> None:
    """Kill an appending writer at random points (mid-commit and mid-fold included),
    restart it from what it stored: every acknowledged append is there, and the counter
    never goes back."""
    path = tmp_path / "state.db"
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    highest_seen = 0
    for round_number in range(KILL_ROUNDS):
        kill_after = rng.randint(1, 80)
        acknowledged: list[int] = []
        with (tmp_path / f"stderr{round_number}").open("w+b") as stderr:
            writer = subprocess.Popen(
                [sys.executable, "-c", APPEND_AND_ACKNOWLEDGE, str(path), str(fold_min_bytes)],
                stdout=subprocess.PIPE,
                stderr=stderr,
                env=child_env(),
            )
            watchdog = threading.Timer(CHILD_TIMEOUT, writer.kill)
            watchdog.start()
            try:
                assert writer.stdout is not None
                for line in writer.stdout:
                    acknowledged.append(int(line))
                    if len(acknowledged) == kill_after:
                        writer.send_signal(signal.SIGKILL)
                        break
            finally:
                watchdog.cancel()
                writer.kill()
                writer.wait(timeout=CHILD_TIMEOUT)
                if writer.stdout is not None:
                    writer.stdout.close()
            stderr.seek(0)
            assert len(acknowledged) == kill_after, (seed, stderr.read().decode())
        stored = reopen(path)
        counter = stored_value(stored, "counter")
        assert counter is not None, seed
        assert counter.value >= acknowledged[-1], seed
        assert counter.value >= highest_seen, seed
        highest_seen = counter.value
        for acked in acknowledged:
            snapshot = stored_value(stored, f"k{acked}")
            assert snapshot is not None, seed
            assert snapshot.value == acked, seed

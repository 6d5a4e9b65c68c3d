"""Fixtures shared by the storage tests: states of every type, and storages to test."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import crdtgossip
from crdtgossip import (
    CRDT,
    EWFlag,
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    decode,
    encode,
)
from crdtgossip.storage import MemoryStorage, SQLiteStorage, Storage, StoredState, SyncMode
from crdtgossip.storage._fold import FOLD_MIN_BYTES


def sample_states() -> dict[str, CRDT]:
    """One non-trivial state of every data type, under keys named after the type."""
    counter = GCounter()
    counter.increment("a", 3)
    counter.increment("b", 2**40)
    balance = PNCounter()
    balance.increment("a", 10)
    balance.decrement("b", 4)
    tags: GSet[object] = GSet()
    for element in ("x", 1, b"\x00raw", (1, "tuple"), None, 2.5):
        tags.add(element)
    members: ORSet[str] = ORSet()
    members.add("alice", "a")
    members.add("bob", "b")
    members.remove("alice")
    flag = EWFlag()
    flag.enable("a")
    register: LWWRegister[object] = LWWRegister()
    register.set({"nested": [1, 2.5, "three"]}, "a", timestamp=7)
    versions: MVRegister[str] = MVRegister()
    versions.set("v1", "a")
    other: MVRegister[str] = MVRegister()
    other.set("v2", "b")
    versions.merge(other)  # two concurrent values
    settings: LWWMap[str, object] = LWWMap()
    settings.set("port", 8080, "a", timestamp=1)
    settings.set("gone", "x", "a", timestamp=2)
    settings.remove("gone", "b", timestamp=3)
    services: ORMap[str] = ORMap(ORSet)
    services.update("web", "a", lambda nested: nested.add("10.0.0.1", "a"))
    services.update("db", "b", lambda nested: nested.add("10.0.0.2", "b"))
    return {
        "gcounter": counter,
        "pncounter": balance,
        "gset": tags,
        "orset": members,
        "ewflag": flag,
        "lwwregister": register,
        "mvregister": versions,
        "lwwmap": settings,
        "ormap": services,
    }


def counter_state(replica: str, value: int) -> bytes:
    """The encoding of a G-Counter holding ``value`` from ``replica``: small, distinct
    per value, and exactly recomputable by a test checking what was stored."""
    counter = GCounter()
    counter.increment(replica, value)
    return encode(counter)


BACKENDS = ["memory", "sqlite-durable", "sqlite-batched"]


def _factories(backend: str, path: Path, fold_min_bytes: int) -> Iterator[Callable[[], Storage]]:
    """A factory of storage objects over one backing store: each call is a "restart",
    a new object (the same one for memory, which plays its own disk) that sees what
    earlier ones wrote. Every object made is closed at the end of the test."""
    made: list[Storage] = []
    memory = MemoryStorage(fold_min_bytes=fold_min_bytes)

    def make() -> Storage:
        storage: Storage
        if backend == "memory":
            storage = memory
        else:
            mode: SyncMode = "durable" if backend == "sqlite-durable" else "batched"
            storage = SQLiteStorage(path, sync_mode=mode, fold_min_bytes=fold_min_bytes)
        made.append(storage)
        return storage

    yield make
    for storage in made:
        storage.close()


@pytest.fixture(params=BACKENDS)
def make_storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[], Storage]]:
    """Storages of every backend over one store (see :func:`_factories`)."""
    yield from _factories(request.param, tmp_path / "state.db", FOLD_MIN_BYTES)


@pytest.fixture(params=[(b, f) for b in BACKENDS for f in ("no-fold", "fold-always")])
def make_log_storage(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[[], Storage]]:
    """Like make_storage, twice: with the default threshold (small logs are kept as they
    are) and folding after every append, so each test of the log runs both ways."""
    backend, folding = request.param
    minimum = 0 if folding == "fold-always" else FOLD_MIN_BYTES
    yield from _factories(backend, tmp_path / "state.db", minimum)


def joined(state: bytes | None, deltas: list[bytes]) -> CRDT | None:
    """A key's value as a node restores it: its state (or first delta) merged with each
    delta in order; None for a key with neither."""
    value: CRDT | None = None
    for data in ([] if state is None else [state]) + deltas:
        decoded = decode(data)
        if value is None:
            value = decoded
        else:
            value.merge(decoded)
    return value


def stored_value(stored: StoredState, key: str) -> CRDT | None:
    """The value of ``key`` in what a storage's open() returned."""
    return joined(stored.states.get(key), stored.deltas.get(key, []))


# A guard against a hung background thread, never a measurement.
PATIENCE = 30.0


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll ``condition`` until it holds; fail the test with ``what`` if it never does."""
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"never happened: {what}")
        time.sleep(0.005)


# A guard against a hung child, never a measurement.
CHILD_TIMEOUT = 60.0

REPO_ROOT = Path(crdtgossip.__file__).resolve().parents[1]

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="needs SIGKILL")


def child_env() -> dict[str, str]:
    """The environment of a child process that imports this checkout of crdtgossip."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    return env


@contextlib.contextmanager
def raw(path: Path) -> Iterator[sqlite3.Connection]:
    """A plain sqlite3 connection to build or tamper with a file, committed and closed
    after (the file must not be open in a SQLiteStorage, which locks it)."""
    with contextlib.closing(sqlite3.connect(path)) as connection:
        yield connection
        connection.commit()


def reopen(path: Path, **options: object) -> StoredState:
    """Open the SQLite file at ``path``, return what it holds, and close it."""
    storage = SQLiteStorage(path, **options)  # type: ignore[arg-type]
    try:
        return storage.open()
    finally:
        storage.close()

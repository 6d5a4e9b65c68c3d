"""Deleted keys leave nothing behind once their tombstones go (issue 14), at 10,000 keys;
and what the life record every key carries costs a write.

Three measurements:

* **The simulator**: :data:`NODES` formed nodes (``GossipConfig.lan()`` timers,
  ``deleted_keys_kept`` = :data:`KEPT` virtual seconds); :data:`KEYS` GCounter keys
  written round-robin over the nodes, one increment each, run until converged; then
  each key deleted from the node after its writer (``Simulation.delete``). Counted on
  every member (the largest count any member holds): keys, hash-tree entries and life
  records, before the deletes, once every member has dropped every key (the virtual
  time that took), and :data:`KEPT` + :data:`SLACK` seconds later; with the Python
  memory the engines hold (``tracemalloc``, the files of ``benchmarks._measure.ENGINE_FILES``).
* **A Node on SQLite**: one started :class:`crdtgossip.Node` with a durable
  ``SQLiteStorage`` and ``deleted_keys_kept`` = :data:`NODE_KEPT` s; :data:`KEYS` keys
  written through ``Node.update``, then each deleted through ``Node.delete`` (each
  delete replaces the key's rows by its tombstone and fsyncs); the rows in the file
  right after, and once the tombstones' time has passed.
* **The write path**: ``Node.update`` of a GCounter key on a node alone (no storage),
  median of :data:`WRITE_ROUNDS` rounds of :data:`WRITES` updates, against the same
  update's parts the record adds, timed alone in the same run: ``Engine.stamp_local``
  (raise this replica's write number, wrap the record in front of the payload) and
  ``keylife.unwrap`` (what each receiver reads first).
"""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks._measure import engine_memory, most_held
from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter, GossipConfig, Node
from crdtgossip.keylife import unwrap
from crdtgossip.storage import SQLiteStorage
from crdtgossip.testing import Simulation

__all__ = ["run"]

KEYS = 10_000
QUICK_KEYS = 200
NODES = 10
QUICK_NODES = 3
#: Virtual seconds a tombstone is kept in the simulator.
KEPT = 60.0
#: Seconds past that before counting again (a gossip round's spread).
SLACK = 5.0
#: The Node's tombstone time, in real seconds.
NODE_KEPT = 10.0
#: Real seconds the Node part waits for the tombstones to go at most.
NODE_PATIENCE = 120.0
WRITES = 5_000
QUICK_WRITES = 500
WRITE_ROUNDS = 5
SEED = 2026


def run(quick: bool) -> BenchResult:
    """Run the deletes benchmark; ``quick``: 200 keys, 3 simulated nodes."""
    keys = QUICK_KEYS if quick else KEYS
    nodes = QUICK_NODES if quick else NODES
    result = BenchResult(
        title=f"Deleted keys: what is left of {keys:,} keys on every member",
        params={"quick": quick, "keys": keys, "nodes": nodes, "kept": KEPT, "node_kept": NODE_KEPT},
    )
    _simulated(result, keys, nodes)
    asyncio.run(_on_sqlite(result, keys))
    asyncio.run(_write_path(result, QUICK_WRITES if quick else WRITES))
    return result


def _holdings(sim: Simulation) -> dict[str, int]:
    """The largest count of each kind of per-key record held by any member."""
    return most_held(
        (sim.engine(i) for i in range(sim.size)),
        lambda engine: {
            "keys": len(engine.keys()),
            "hash-tree entries": len(engine._tree),
            "life records": len(engine.lives()),
        },
    )


def _simulated(result: BenchResult, keys: int, nodes: int) -> None:
    config = dataclasses.replace(GossipConfig.lan(), deleted_keys_kept=KEPT)
    tracemalloc.start()
    started = time.process_time()
    sim = Simulation(nodes, SEED, config, formed=True)
    sim.run(1.0)
    memory_empty = engine_memory()
    for index in range(keys):
        i = index % nodes
        replica = sim.replica_id(i)
        sim.update(i, f"k/{index}", GCounter, lambda c, r=replica: c.increment(r))
    if not sim.run_until_converged(KEPT / 2).converged:
        result.notes.append(f"the {keys:,} keys had not converged within {KEPT / 2} s")
    written = _holdings(sim)
    memory_written = engine_memory()
    deleted_at = sim.now
    for index in range(keys):
        sim.delete((index + 1) % nodes, f"k/{index}")
    spread = sim.run_until(lambda: _holdings(sim)["keys"] == 0, KEPT / 2, check_interval=0.1)
    spread_seconds = sim.now - deleted_at
    if not spread:
        result.notes.append(f"keys were still held {KEPT / 2} s after the deletes")
    tombstones = _holdings(sim)
    memory_tombstones = engine_memory()
    sim.run(max(0.0, deleted_at + KEPT + SLACK - sim.now))
    after = _holdings(sim)
    memory_after = engine_memory()
    tracemalloc.stop()
    cpu = time.process_time() - started
    for label, counts, note in (
        ("written", written, "converged"),
        ("deleted", tombstones, "every member dropped every key"),
        ("after", after, f"{KEPT + SLACK:g} s after the deletes"),
    ):
        for name, count in counts.items():
            result.figure(Figure(f"{name} per member, {label}", count, "count", note=note))
    result.figure(Figure("every key gone from every member", spread_seconds, "s", note="virtual"))
    for label, memory in (
        ("empty", memory_empty),
        ("written", memory_written),
        ("tombstones", memory_tombstones),
        ("after", memory_after),
    ):
        result.figure(Figure(f"memory of the engines, {label}", memory, "bytes"))
    result.figure(Figure("simulator CPU", cpu, "s", note=f"{nodes} nodes, with tracemalloc on"))


def _stored_rows(path: Path) -> int:
    storage = SQLiteStorage(path)
    stored = storage.open()
    storage.close()
    return len({*stored.states, *stored.deltas})


async def _on_sqlite(result: BenchResult, keys: int) -> None:
    config = dataclasses.replace(GossipConfig.local(), deleted_keys_kept=NODE_KEPT)
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "node.db"
        node = Node("bench", "127.0.0.1:0", config=config, storage=SQLiteStorage(path), seed=1)
        await node.start()
        try:
            replica = node.replica_id
            for index in range(keys):
                await node.update(f"k/{index}", GCounter, lambda c: c.increment(replica))
            started = time.perf_counter()
            for index in range(keys):
                await node.delete(f"k/{index}")
            delete_seconds = time.perf_counter() - started
            stopped_with = node.stats()["keys"]
        finally:
            await node.stop()
        rows_deleted = _stored_rows(path)
        node = Node("bench", "127.0.0.1:0", config=config, storage=SQLiteStorage(path), seed=2)
        await node.start()
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + NODE_PATIENCE
            engine = node._require_engine()
            while engine.lives() or node.stats()["keys_dirty"]:
                if loop.time() > deadline:
                    result.notes.append(f"tombstones were left after {NODE_PATIENCE} s")
                    break
                await asyncio.sleep(0.05)
            await asyncio.sleep(0.2)
        finally:
            await node.stop()
        rows_after = _stored_rows(path)
    result.figure(Figure("Node: a delete", delete_seconds / keys * 1e6, "us", note="durable"))
    result.figure(Figure("Node: keys held after the deletes", stopped_with, "count"))
    result.figure(Figure("Node: keys with rows, deleted", rows_deleted, "count", note="tombstones"))
    result.figure(
        Figure("Node: keys with rows, after", rows_after, "count", note="restarted, kept time past")
    )


async def _write_path(result: BenchResult, writes: int) -> None:
    async with Node("bench", config=GossipConfig.local(), seed=1) as node:
        replica = node.replica_id
        engine = node._require_engine()
        rounds: list[float] = []
        for _ in range(WRITE_ROUNDS):
            gc.disable()
            started = time.perf_counter()
            for _ in range(writes):
                await node.update("k", GCounter, lambda c: c.increment(replica))
            rounds.append((time.perf_counter() - started) / writes)
            gc.enable()
        payload = b"\x93\x01\x02\x81\xa1r\x01"
        started = time.perf_counter()
        for _ in range(writes):
            wrapped = engine.stamp_local("stamped", payload)
        stamp = (time.perf_counter() - started) / writes
        started = time.perf_counter()
        for _ in range(writes):
            unwrap(wrapped)
        read = (time.perf_counter() - started) / writes
    update = statistics.median(rounds)
    result.figure(Figure("Node.update of a GCounter", update * 1e6, "us", note="median of rounds"))
    result.figure(Figure("the record's stamp and wrap", stamp * 1e6, "us", note="stamp_local"))
    result.figure(Figure("the record's read", read * 1e6, "us", note="keylife.unwrap"))
    result.ratio(
        "record stamp / Node.update",
        "the record's stamp and wrap",
        "Node.update of a GCounter",
        tolerance=0.5,
        note="what the record adds to a local write",
    )
    result.ratio(
        "record read / Node.update",
        "the record's read",
        "Node.update of a GCounter",
        tolerance=0.5,
        note="what it adds to each receiver's merge",
    )

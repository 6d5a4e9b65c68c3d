"""Expired keys leave nothing behind (issue 14): memory, hash-tree entries, stamps and
storage rows, at 10,000 keys.

Two measurements:

* **The simulator**: :data:`NODES` formed nodes (``GossipConfig.lan()`` timers) with
  ``expire_keys_after={"k/*": TTL}``; :data:`KEYS` GCounter keys written round-robin
  over the nodes, one increment each, then the cluster is run until it has converged.
  Counted on every member, before and after ``TTL`` + :data:`SLACK` idle virtual
  seconds: keys held, hash-tree entries, key size estimates, last-write stamps, and
  the Python memory the engines hold (``tracemalloc``: what the engine and state code
  allocated, every engine together, also before any key was written). What is left
  after is mostly each engine's cache of the delta digests it has seen, bounded at
  16,384 (``MAX_SEEN_DELTAS``) whatever the keys; the per-key tables are rebuilt at
  their live size after mass drops (``protocol.compaction``). The
  figures are the largest count any member holds, and when the last key went.
* **A Node on SQLite**: one started :class:`crdtgossip.Node` with an
  ``SQLiteStorage`` (``"durable"``: each delete commits and fsyncs), expiry
  :data:`NODE_TTL` s; :data:`KEYS` keys written through ``Node.update``, then the
  node waits until none is left in memory and no expired key's rows wait to be
  deleted; the file is then opened again and its rows counted (data keys and stamp
  records). Keys start expiring while later ones are still written (the writes take
  longer than the expiry time), as in a service under load; the clean-up time is the
  wall time from the last key's deadline until its rows are deleted.
"""

from __future__ import annotations

import asyncio
import dataclasses
import tempfile
import time
import tracemalloc
from pathlib import Path

from benchmarks._measure import engine_memory, most_held
from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter, GossipConfig, Node
from crdtgossip.storage import SQLiteStorage
from crdtgossip.testing import Simulation

__all__ = ["run"]

KEYS = 10_000
QUICK_KEYS = 200
NODES = 10
QUICK_NODES = 3
#: Virtual seconds a key may stay unwritten in the simulator.
TTL = 60.0
#: Idle seconds past the TTL before counting again (covers a gossip round's spread).
SLACK = 5.0
#: The Node's expiry time, in real seconds (the shortest a config accepts is 1 s).
NODE_TTL = 2.0
#: Real seconds the Node part waits for the clean-up at most.
NODE_PATIENCE = 300.0
SEED = 2026


def run(quick: bool) -> BenchResult:
    """Run the expiry benchmark; ``quick``: 200 keys, 3 simulated nodes."""
    keys = QUICK_KEYS if quick else KEYS
    nodes = QUICK_NODES if quick else NODES
    result = BenchResult(
        title=f"Expired keys: what is left of {keys:,} keys on every member",
        params={"quick": quick, "keys": keys, "nodes": nodes, "ttl": TTL, "node_ttl": NODE_TTL},
    )
    _simulated(result, keys, nodes)
    asyncio.run(_on_sqlite(result, keys))
    return result


def _holdings(sim: Simulation) -> dict[str, int]:
    """The largest count of each kind of per-key record held by any member."""
    return most_held(
        (sim.engine(i) for i in range(sim.size)),
        lambda engine: {
            "keys": len(engine.keys()),
            "hash-tree entries": len(engine._tree),
            "size estimates": len(engine._sizes._estimate),
            "stamps": len(engine._last_writes),
        },
    )


def _simulated(result: BenchResult, keys: int, nodes: int) -> None:
    config = dataclasses.replace(GossipConfig.lan(), expire_keys_after={"k/*": TTL})
    tracemalloc.start()
    started = time.process_time()
    sim = Simulation(nodes, SEED, config, formed=True)
    sim.run(1.0)
    memory_empty = engine_memory()
    for index in range(keys):
        i = index % nodes
        replica = sim.replica_id(i)
        sim.update(i, f"k/{index}", GCounter, lambda c, r=replica: c.increment(r))
    written_at = sim.now
    converged = sim.run_until_converged(TTL / 2).converged
    if not converged:
        result.notes.append(f"the {keys:,} keys had not converged within {TTL / 2} s")
    before = _holdings(sim)
    memory_before = engine_memory()
    gone = sim.run_until(lambda: _holdings(sim)["keys"] == 0, TTL + SLACK, check_interval=0.5)
    last_gone = sim.now - written_at
    sim.run(max(0.0, written_at + TTL + SLACK - sim.now))
    after = _holdings(sim)
    memory_after = engine_memory()
    tracemalloc.stop()
    cpu = time.process_time() - started
    if not gone:
        result.notes.append(f"keys were still held {TTL + SLACK} s after the last write")
    for name, count in before.items():
        result.figure(
            Figure(f"{name} per member, before", count, "count", note="most any member holds")
        )
    for name, count in after.items():
        result.figure(
            Figure(f"{name} per member, after", count, "count", note=f"{TTL + SLACK:g} s idle")
        )
    result.figure(
        Figure("memory of the engines, empty", memory_empty, "bytes", note="no key written yet")
    )
    result.figure(
        Figure("memory of the engines, before", memory_before, "bytes", note="tracemalloc")
    )
    result.figure(Figure("memory of the engines, after", memory_after, "bytes", note="tracemalloc"))
    result.figure(
        Figure("last key gone, after the writes", last_gone, "s", note=f"virtual; TTL {TTL:g} s")
    )
    result.figure(Figure("simulator CPU", cpu, "s", note=f"{nodes} nodes, with tracemalloc on"))


def _stored_rows(path: Path) -> tuple[int, int]:
    """(data keys, stamp records) with rows in the SQLite file."""
    storage = SQLiteStorage(path)
    stored = storage.open()
    storage.close()
    names = {*stored.states, *stored.deltas}
    records = sum(name.startswith("\x00") for name in names)
    return len(names) - records, records


async def _on_sqlite(result: BenchResult, keys: int) -> None:
    config = dataclasses.replace(GossipConfig.local(), expire_keys_after={"k/*": NODE_TTL})
    with tempfile.TemporaryDirectory() as directory:
        path = Path(directory) / "node.db"
        node = Node("bench", "127.0.0.1:0", config=config, storage=SQLiteStorage(path), seed=1)
        await node.start()
        try:
            replica = node.replica_id
            started = time.perf_counter()
            for index in range(keys):
                await node.update(f"k/{index}", GCounter, lambda c: c.increment(replica))
            write_seconds = time.perf_counter() - started
            last_due = started + write_seconds + NODE_TTL
            loop = asyncio.get_running_loop()
            deadline = loop.time() + NODE_PATIENCE
            while node.keys() or node.stats()["keys_dirty"]:
                if loop.time() > deadline:
                    result.notes.append(f"the Node had not cleaned up within {NODE_PATIENCE} s")
                    break
                await asyncio.sleep(0.05)
            cleaned = max(0.0, time.perf_counter() - last_due)
            expired = node.stats()["keys_expired"]
        finally:
            await node.stop()
        data_rows, stamp_rows = _stored_rows(path)
    result.figure(Figure("Node: writes", write_seconds, "s", note=f"{keys:,} updates, durable"))
    result.figure(Figure("Node: keys expired", expired, "count"))
    result.figure(
        Figure("Node: clean-up time", cleaned, "s", note="last key due -> its rows deleted")
    )
    result.figure(Figure("Node: data keys with rows, after", data_rows, "count"))
    result.figure(Figure("Node: stamp records, after", stamp_rows, "count"))

"""Consistency levels and storage: what a Majority write, a Local update and a durable
write cost, each against a floor measured in the same run.

Three measurements, on real :class:`crdtgossip.Node` objects on 127.0.0.1 with
:meth:`GossipConfig.local` timers and every frame sealed with one shared keyring:

* *Majority write latency*: five nodes in one process and one event loop; one of them
  makes sequential :class:`~crdtgossip.Majority` writes (a :class:`GCounter`
  increment each), every write timed alone on the wall clock, from the call to its
  return (three of the five members merged it). The floor is a raw asyncio UDP round
  trip: a datagram sent from one endpoint to an echo endpoint on loopback and back,
  awaited, in the same loop. The two are sampled in turn, one of each per round, so a
  busy spell hits both. The write needs at least one round trip, plus sealing and
  opening, the merge on every peer (all four run in this same loop) and the acks;
  the datagrams all nodes handled per write are reported beside it.
* *Local update throughput*: batches of :class:`~crdtgossip.Local` increments on a
  member of the same five-node cluster, no storage. The floor is what shipping that
  one delta at the least costs: ``crdtgossip.encode(delta)``, ``Keyring.seal`` and one
  ``sendto`` on an asyncio datagram transport to a sink endpoint, per update. A Local
  update never yields to the event loop without a storage, so a batch times the update
  path itself; the gossip rounds that carry the deltas run between batches, off the
  clock (they carry many updates' deltas joined, so their share per update is small).
  Being pure work on one thread, the ratio divides thread CPU times, steadier than
  wall time on a shared machine (see benchmarks/_measure.py); wall times are shown too.
* *Durable write cost*: the same Local increments on nodes alone, with a
  :class:`~crdtgossip.SQLiteStorage` in ``"durable"`` mode (every update committed and
  fsynced before ``update`` returns) and in ``"batched"`` mode, against a node alone
  without storage, sampled in the same rounds. The file lives in a temporary directory
  (see the notes for its file system: fsync on tmpfs costs nothing).
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import crdtgossip
from benchmarks._measure import NS_PER_S
from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter, Keyring, Local, Majority, SQLiteStorage
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node
from crdtgossip.security import generate_key

__all__ = ["run"]

#: Cluster size of the Majority writes (issue 4: "5 loopback nodes"); a majority is 3.
CLUSTER_SIZE = 5
#: Majority writes timed, and UDP round trips beside them (one of each per round). 200
#: gives a steady median and a p90 resting on 20 samples.
WRITES = 200
QUICK_WRITES = 20
#: Writes and round trips before timing starts: the first writes pay for connections
#: and lazily built structures, not steady-state latency.
WARMUP_WRITES = 20
QUICK_WARMUP_WRITES = 3
#: The quorum timeout (issue 4 asks for Majority(timeout=2.0)); a failure guard here:
#: on loopback a write completes in well under a millisecond.
MAJORITY_TIMEOUT = 2.0
#: Local updates per timed sample, per case. One update takes microseconds, too close
#: to the clock's own cost to time alone; a durable one waits for an fsync
#: (milliseconds on a disk), so fewer of those keep the run short.
UPDATES_PER_SAMPLE = 1_000
DURABLE_UPDATES_PER_SAMPLE = 40
BATCHED_UPDATES_PER_SAMPLE = 200
QUICK_UPDATES_PER_SAMPLE = 200
QUICK_DURABLE_UPDATES_PER_SAMPLE = 10
QUICK_BATCHED_UPDATES_PER_SAMPLE = 40
#: Samples per throughput case. Odd, so the median is a sample; 15 rides out the busy
#: spells of a shared machine and keeps the whole run near 20 s.
REPEATS = 15
QUICK_REPEATS = 3
#: Issue 4's goals: a Majority write at most 3 UDP round trips, a Local update at most
#: 3 times the encode + seal + sendto of its delta.
MAJORITY_TARGET = 3.0
LOCAL_TARGET = 3.0
#: Tolerance of the latency ratio: single round trips of tens of microseconds on a
#: shared loop and machine wander more than batches do.
LATENCY_TOLERANCE = 0.5
#: Tolerance of the durable-over-plain ratio: an fsync's cost depends on the disk and
#: what else writes to it, not on crdtgossip.
DURABLE_TOLERANCE = 1.0
#: Bound on the wait for every node to see the whole cluster alive: a failure guard
#: (five nodes join in about a second with the local preset).
CONVERGE_TIMEOUT = 30.0
#: How often that wait looks at the cluster.
POLL_SECONDS = 0.02
#: Seconds of quiet after membership converged: the join rumours and their acks settle
#: so they are not timed with the first writes.
SETTLE_SECONDS = 0.5
QUICK_SETTLE_SECONDS = 0.2
#: Seconds the event loop runs between throughput samples, off the clock: two gossip
#: rounds of the local preset, so the deltas of a batch leave before the next one.
BETWEEN_SAMPLES_SECONDS = 0.2
QUICK_BETWEEN_SAMPLES_SECONDS = 0.05
#: Bound on one UDP echo round trip: a failure guard (a lost loopback datagram).
ECHO_TIMEOUT = 1.0
#: Cluster label of the benchmark's keyrings (authenticated with every frame).
LABEL = b"crdtgossip-bench"
#: The key every update increments.
COUNTER_KEY = "hits"
#: Nanoseconds per millisecond, for the durable write's absolute cost.
NS_PER_MS = 1_000_000
#: Names of the two cases the Local ratio divides.
FLOOR = "encode + seal + sendto"
MEMBER = "Local update (cluster member)"
#: Percentile reported beside the median latency.
PERCENTILE = 90


@dataclass(frozen=True)
class _Sizes:
    writes: int
    warmup: int
    updates: int
    durable_updates: int
    batched_updates: int
    repeats: int
    settle: float
    between: float


def run(quick: bool) -> BenchResult:
    """Run the consistency benchmark; ``quick`` takes few samples for a smoke test."""
    sizes = (
        _Sizes(
            QUICK_WRITES,
            QUICK_WARMUP_WRITES,
            QUICK_UPDATES_PER_SAMPLE,
            QUICK_DURABLE_UPDATES_PER_SAMPLE,
            QUICK_BATCHED_UPDATES_PER_SAMPLE,
            QUICK_REPEATS,
            QUICK_SETTLE_SECONDS,
            QUICK_BETWEEN_SAMPLES_SECONDS,
        )
        if quick
        else _Sizes(
            WRITES,
            WARMUP_WRITES,
            UPDATES_PER_SAMPLE,
            DURABLE_UPDATES_PER_SAMPLE,
            BATCHED_UPDATES_PER_SAMPLE,
            REPEATS,
            SETTLE_SECONDS,
            BETWEEN_SAMPLES_SECONDS,
        )
    )
    result = BenchResult(
        title=f"Majority write latency ({CLUSTER_SIZE} nodes), Local update and durable write",
        params={
            "quick": quick,
            "cluster": CLUSTER_SIZE,
            "writes": sizes.writes,
            "warmup_writes": sizes.warmup,
            "updates_per_sample": sizes.updates,
            "durable_updates_per_sample": sizes.durable_updates,
            "batched_updates_per_sample": sizes.batched_updates,
            "repeats": sizes.repeats,
            "majority_timeout": MAJORITY_TIMEOUT,
            "config": "local",
            "clock": "wall; thread_time_ns for the Local / floor ratio",
        },
    )
    with tempfile.TemporaryDirectory(prefix="crdtgossip-bench-") as directory:
        asyncio.run(_measure(result, sizes, Path(directory)))
    result.notes.append(f"SQLite files in {tempfile.gettempdir()} ({_file_system(directory)})")
    result.notes.append(
        "all nodes share one event loop: a Majority write's latency includes the four "
        "peers merging it one after the other, which separate processes would do at once"
    )
    return result


async def _measure(result: BenchResult, sizes: _Sizes, directory: Path) -> None:
    key = generate_key()
    config = GossipConfig.local()
    nodes: list[Node] = []
    alone: list[Node] = []
    try:
        for index in range(CLUSTER_SIZE):
            node = Node(
                f"n{index}",
                seeds=[nodes[0].address] if nodes else [],
                keyring=Keyring([key], label=LABEL),
                config=config,
                seed=index,
            )
            await node.start()
            nodes.append(node)
        await _wait_for_membership(nodes)
        await asyncio.sleep(sizes.settle)
        await _majority_latency(result, nodes, sizes)
        storages = {
            "durable": SQLiteStorage(directory / "durable.db"),
            "batched": SQLiteStorage(directory / "batched.db", sync_mode="batched"),
        }
        for name, storage in (("plain", None), *storages.items()):
            node = Node(
                f"alone-{name}", keyring=Keyring([key], label=LABEL), storage=storage, config=config
            )
            await node.start()
            alone.append(node)
        await _local_updates(result, nodes[1], alone, sizes)
    finally:
        # All at once: a node's stop may wait for its TCP connections.
        await asyncio.gather(*(node.stop() for node in nodes + alone))


async def _wait_for_membership(nodes: list[Node]) -> None:
    """Poll until every node sees the whole cluster alive; a bounded wait."""
    deadline = time.monotonic() + CONVERGE_TIMEOUT
    while not all(node.stats()["members_alive"] == len(nodes) for node in nodes):
        if time.monotonic() > deadline:
            raise RuntimeError(f"membership of {len(nodes)} nodes not converged in time")
        await asyncio.sleep(POLL_SECONDS)


# ---- Majority write latency -----------------------------------------------------------
class _Echo(asyncio.DatagramProtocol):
    """Sends every datagram back where it came from."""

    def __init__(self) -> None:
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # The selector's datagram transport does not subclass DatagramTransport.
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)


class _Client(asyncio.DatagramProtocol):
    """Resolves the pending future with the next datagram received."""

    def __init__(self) -> None:
        self.reply: asyncio.Future[bytes] | None = None

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        if self.reply is not None and not self.reply.done():
            self.reply.set_result(data)


async def _majority_latency(result: BenchResult, nodes: list[Node], sizes: _Sizes) -> None:
    writer = nodes[0]
    loop = asyncio.get_running_loop()
    echo_transport, _ = await loop.create_datagram_endpoint(_Echo, local_addr=("127.0.0.1", 0))
    echo_address = echo_transport.get_extra_info("sockname")
    client_transport, client = await loop.create_datagram_endpoint(
        _Client, local_addr=("127.0.0.1", 0)
    )
    level = Majority(timeout=MAJORITY_TIMEOUT)
    # About the size of a sealed write request: a one-slot counter delta and its frame.
    probe = bytes(96)

    async def write() -> None:
        await writer.update(
            COUNTER_KEY, GCounter, lambda c: c.increment(writer.replica_id), consistency=level
        )

    async def round_trip() -> None:
        client.reply = loop.create_future()
        client_transport.sendto(probe, echo_address)
        await asyncio.wait_for(client.reply, ECHO_TIMEOUT)

    try:
        for _ in range(sizes.warmup):
            await write()
            await round_trip()
        writes: list[int] = []
        trips: list[int] = []
        received = _datagrams_received(nodes)
        for _ in range(sizes.writes):
            writes.append((await _timed(write))[0])
            trips.append((await _timed(round_trip))[0])
        received = _datagrams_received(nodes) - received
    finally:
        client_transport.close()
        echo_transport.close()
    note = f"{sizes.writes} sequential writes, each timed alone"
    result.figure(_latency("Majority write: median", writes, note))
    result.figure(_latency("UDP round trip: median", trips, "asyncio echo on loopback"))
    result.figure(_percentile("Majority write", writes))
    result.figure(_percentile("UDP round trip", trips))
    result.figure(
        Figure(
            "Majority write: datagrams handled",
            received / sizes.writes,
            "count",
            note="per write, by all nodes: requests, acks, and background probes and gossip",
        )
    )
    result.ratio(
        "Majority write / UDP round trip",
        "Majority write: median",
        "UDP round trip: median",
        target=MAJORITY_TARGET,
        tolerance=LATENCY_TOLERANCE,
        note="medians; issue 4: at most 3x a raw round trip",
    )


def _datagrams_received(nodes: list[Node]) -> int:
    return sum(node.stats()["udp_frames_received"] for node in nodes)


async def _timed(action: Callable[[], Awaitable[None]], ops: int = 1) -> tuple[int, int]:
    """Nanoseconds of ``ops`` awaited calls of ``action``, collector paused.

    Returns:
        ``(wall, cpu)``: on the wall clock, and on this thread's CPU clock (what the
        calls cost this thread, without other processes' turns and other threads'
        work, such as a storage's commits).
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        start, start_cpu = time.perf_counter_ns(), time.thread_time_ns()
        for _ in range(ops):
            await action()
        return time.perf_counter_ns() - start, time.thread_time_ns() - start_cpu
    finally:
        if was_enabled:
            gc.enable()


def _latency(name: str, samples: list[int], note: str) -> Figure:
    """The median sample in microseconds, and the least as ``best``."""
    return Figure(name, statistics.median(samples) / 1_000, "us", min(samples) / 1_000, note)


def _percentile(what: str, samples: list[int]) -> Figure:
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return Figure(f"{what}: p{PERCENTILE}", cuts[PERCENTILE - 1] / 1_000, "us", note="not compared")


# ---- Local updates and storage --------------------------------------------------------
class _Sink(asyncio.DatagramProtocol):
    """Receives and drops every datagram."""

    def datagram_received(self, data: bytes, addr: tuple[str | object, int]) -> None:
        pass


@dataclass(frozen=True)
class _Throughput:
    """One case: an awaited update (or its floor) and how many to time per sample."""

    action: Callable[[], Awaitable[None]]
    ops: int


async def _local_updates(
    result: BenchResult, member: Node, alone: list[Node], sizes: _Sizes
) -> None:
    loop = asyncio.get_running_loop()
    sink_transport, _ = await loop.create_datagram_endpoint(_Sink, local_addr=("127.0.0.1", 0))
    sink_address = sink_transport.get_extra_info("sockname")
    sender, _ = await loop.create_datagram_endpoint(
        asyncio.DatagramProtocol, local_addr=("127.0.0.1", 0)
    )
    keyring = Keyring([generate_key()], label=LABEL)
    # The delta one increment returns, as the member's update would make it.
    delta = GCounter().increment(member.replica_id)

    async def floor() -> None:
        sender.sendto(keyring.seal(crdtgossip.encode(delta)), sink_address)

    def updater(node: Node) -> Callable[[], Awaitable[None]]:
        async def update() -> None:
            await node.update(
                COUNTER_KEY, GCounter, lambda c: c.increment(node.replica_id), consistency=Local()
            )

        return update

    plain, durable, batched = alone
    cases = {
        FLOOR: _Throughput(floor, sizes.updates),
        MEMBER: _Throughput(updater(member), sizes.updates),
        "Local update (alone, no storage)": _Throughput(updater(plain), sizes.updates),
        "Local update (alone, SQLite batched)": _Throughput(
            updater(batched), sizes.batched_updates
        ),
        "Local update (alone, SQLite durable)": _Throughput(
            updater(durable), sizes.durable_updates
        ),
    }
    samples: dict[str, list[int]] = {name: [] for name in cases}
    cpu_samples: dict[str, list[int]] = {name: [] for name in cases}
    try:
        for case in cases.values():  # warm-up: first calls build tables, open files
            await _timed(case.action, case.ops // 10 + 1)
        for _ in range(sizes.repeats):
            for name, case in cases.items():
                gc.collect()
                wall, cpu = await _timed(case.action, case.ops)
                samples[name].append(wall)
                cpu_samples[name].append(cpu)
                await asyncio.sleep(sizes.between)
    finally:
        sender.close()
        sink_transport.close()
    for name, case in cases.items():
        result.figure(_per_update(name, samples[name], case.ops))
    for name in (FLOOR, MEMBER):
        result.figure(
            _per_update(f"{name} (CPU)", cpu_samples[name], cases[name].ops, clock="CPU time")
        )
    for name, case in cases.items():
        median = statistics.median(samples[name]) / case.ops
        result.figure(
            Figure(
                f"{name}: throughput",
                NS_PER_S / median,
                "updates/s",
                NS_PER_S * case.ops / min(samples[name]),
                note="from the median sample; best from the fastest",
            )
        )
    medians = {name: statistics.median(samples[name]) / case.ops for name, case in cases.items()}
    durable_ns = medians["Local update (alone, SQLite durable)"]
    result.figure(
        Figure(
            "SQLite durable: time per update",
            durable_ns / NS_PER_MS,
            "ms",
            min(samples["Local update (alone, SQLite durable)"])
            / sizes.durable_updates
            / NS_PER_MS,
            note="commit + fsync before update returns, thread hop included",
        )
    )
    result.figure(
        Figure(
            "SQLite durable: extra per update",
            (durable_ns - medians["Local update (alone, no storage)"]) / NS_PER_MS,
            "ms",
            note="median over the node alone without storage",
        )
    )
    result.ratio(
        "Local update / encode + seal + sendto",
        f"{MEMBER} (CPU)",
        f"{FLOOR} (CPU)",
        target=LOCAL_TARGET,
        note="thread CPU time; issue 4: at most 3x the floor of shipping the same delta",
    )
    result.ratio(
        "SQLite durable / no storage",
        "Local update (alone, SQLite durable)",
        "Local update (alone, no storage)",
        tolerance=DURABLE_TOLERANCE,
        note="one committed, fsynced transaction per update",
    )
    result.ratio(
        "SQLite batched / no storage",
        "Local update (alone, SQLite batched)",
        "Local update (alone, no storage)",
        note="a write queued for the next group commit, handed to a thread",
    )


def _per_update(name: str, samples: list[int], ops: int, clock: str = "wall") -> Figure:
    """Time per update in microseconds: the median sample's, and the least as ``best``."""
    return Figure(
        name,
        statistics.median(samples) / ops / 1_000,
        "us",
        min(samples) / ops / 1_000,
        note=f"{ops} updates per sample, {clock}",
    )


def _file_system(directory: str) -> str:
    """The file system type holding ``directory``, from /proc/mounts where there is one."""
    try:
        mounts = Path("/proc/mounts").read_text().splitlines()
    except OSError:
        return "file system unknown"
    best, kind = "", "file system unknown"
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = fields[1]
        if (directory == point or directory.startswith(point.rstrip("/") + "/")) and len(
            point
        ) > len(best):
            best, kind = point, fields[2]
    return kind

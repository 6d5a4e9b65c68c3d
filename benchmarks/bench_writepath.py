"""The write and read path: what one ``Node.update`` and one ``Node.get`` cost against
the size of the key, through the public API (issue 12).

Growth curves, each point a started :class:`crdtgossip.Node` alone on 127.0.0.1
(:meth:`GossipConfig.local` timers, a keyring), holding one key of n entries:

* ``ORSet``: n elements; an update adds one new element (``s.add(e, replica)``).
* ``ORMap(ORSet)``: n keys, each a one-element ORSet; an update is a nested add of a
  new element into an existing key (``m.update(k, replica, lambda s: s.add(e,
  replica))``).

for n = 10^2 .. 10^6, with no storage (``storage=None``), ``SQLiteStorage(path)``
(``"durable"``: committed and fsynced before ``update`` returns) and
``SQLiteStorage(path, sync_mode="batched")``. A ``get`` is timed as ``Node.get``
(``Local``) and one membership test on what it returned (``e in state``; for the map,
``e in state[k]``).

How the large state is built fast: the state is made offline with the type's own
mutators (n ``add`` or nested ``update`` calls on a plain object, seconds at 10^6), then
handed to the started node in **one** ``Node.update`` whose function merges it into the
key and returns it as the delta (any state is a delta of itself): one write through the
public path instead of n. The time of both steps is reported per point (``setup``).

Then a bounded number of operations is timed, each alone on the wall clock (storage
waits on a thread and on fsync), with the cyclic collector off: at most
:data:`MAX_OPS` or :data:`OP_SECONDS` of them, whichever comes first, and at least
:data:`MIN_OPS`. The median per operation is the figure; the growth ratio divides the
median at 10^5 and 10^6 by the one at 10^2 (issue 12: at most 2x).

Bounds, so a run never hangs: a point whose setup, or whose single operation,
predicted linearly from the previous size, would exceed :data:`SETUP_BOUND_SECONDS`
or :data:`OP_BOUND_SECONDS` is skipped, as is every larger size of that series once
one point's setup took longer than the bound; the notes say which and why.

Two floors in the same run: a ``Local`` GCounter increment of an empty key on a node
alone against encode + seal + ``sendto`` of its delta (the floor of
:mod:`benchmarks.bench_consistency`, reused; target at most 3x), and 100,000
GCounter increments spread over 8 replicas, each replica a GCounter of its own,
against a dict per replica (thread CPU time; target at most 2x).

Full runs write ``writepath_update.png`` and ``writepath_get.png`` (milliseconds per
operation against n) into ``docs/_static/benchmarks/``; when the before-the-fix
baseline ``benchmarks/baseline/writepath-0.1.0.json`` exists, its curves are drawn
beside this run's, dashed.
"""

from __future__ import annotations

import asyncio
import gc
import json
import tempfile
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks._cli import BASELINE_DIR
from benchmarks._measure import CPU_CLOCK, NS_PER_S, Case, Timing, time_cases
from benchmarks._peer import LABEL
from benchmarks._plot import line, write_plots
from benchmarks._result import BenchResult, Figure
from benchmarks.bench_consistency import (
    FLOOR,
    Throughput,
    floor_sender,
    local_increment,
    per_update,
    sample_throughput,
)
from benchmarks.bench_growth import _exponent
from crdtgossip import GCounter, Keyring, ORMap, ORSet, SQLiteStorage
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import CRDT
from crdtgossip.errors import OperationError, StorageError
from crdtgossip.node import Node
from crdtgossip.storage import Storage

__all__ = ["run"]

#: Entries per key (issue 12: "10^2 ... 10^6 entries").
SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
QUICK_SIZES = (100, 1_000)
#: The two types of the curves, by the name figures use.
KINDS = ("ORSet", "ORMap(ORSet)")
#: Storage modes: none, SQLite committing every write, SQLite group commits.
MODES = ("memory", "durable", "batched")
#: Operations timed per point: at most MAX_OPS, or as many as fit in OP_SECONDS; at
#: least MIN_OPS so the median rests on more than one sample.
MAX_OPS = 200
QUICK_MAX_OPS = 10
OP_SECONDS = 2.0
QUICK_OP_SECONDS = 0.2
MIN_OPS = 3
#: A point is skipped when its setup (build + start + the loading update) would take
#: longer than this, predicted linearly from the previous size, or took longer at a
#: smaller size: the issue's bound of about a minute per size.
SETUP_BOUND_SECONDS = 60.0
#: ... or when one operation would take longer than this (MIN_OPS of them, of two
#: kinds, must fit a run of minutes).
OP_BOUND_SECONDS = 20.0
#: Issue 12: per-operation time at the largest size at most 2x the time at 10^2.
GROWTH_TARGET = 2.0
#: The sizes set against 10^2 in the growth ratios (issue 12 names 10^5 for the map).
RATIO_SIZES = (100_000, 1_000_000)
BASE_SIZE = 100
#: Tolerance of the growth ratios: single operations timed on the wall clock with a
#: thread hop and an fsync on a shared machine; and once the path is O(change) the
#: ratio sits near 1, where a busy spell over one series' samples shifts it by tens of
#: percent.
GROWTH_TOLERANCE = 1.0
#: Issue 12: a Local update on an empty key at most 3x encode + seal + sendto.
EMPTY_KEY_TARGET = 3.0
EMPTY_KEY_UPDATES = 1_000
QUICK_EMPTY_KEY_UPDATES = 100
EMPTY_KEY_REPEATS = 15
QUICK_EMPTY_KEY_REPEATS = 3
#: Loop time between those samples (the node is alone: nothing to gossip).
BETWEEN_SAMPLES_SECONDS = 0.02
#: Issue 12: 100,000 GCounter increments over 8 replicas at most 2x a dict per replica.
INCREMENTS = 100_000
QUICK_INCREMENTS = 10_000
REPLICAS = 8
COUNTER_TARGET = 2.0
COUNTER_REPEATS = 9
QUICK_COUNTER_REPEATS = 3
#: The data key of every point.
KEY = "key"
#: The replica id the offline state is built under (shaped like Node's).
BUILDER = "builder.5f3c9a0e12b4d687"
#: The before-the-fix run whose curves the plots draw beside this run's, if present.
BEFORE = "writepath-0.1.0"
NS_PER_MS = 1_000_000


@dataclass
class _Series:
    """What is known of one (kind, mode) series so far, to predict the next point."""

    last_size: int = 0
    setup_seconds: float = 0.0
    op_seconds: float = 0.0
    stopped: str = ""  # why the larger sizes are skipped, once they are


@dataclass
class _Curves:
    """Milliseconds per operation by series name and size, for the plots."""

    points: dict[str, dict[int, float]] = field(default_factory=dict)

    def add(self, name: str, n: int, ms: float) -> None:
        self.points.setdefault(name, {})[n] = ms


def run(quick: bool) -> BenchResult:
    """Run the write-path benchmark; ``quick`` keeps 10^2 and 10^3 and a few operations."""
    sizes = QUICK_SIZES if quick else SIZES
    result = BenchResult(
        title="Write and read path: Node.update and Node.get per operation against key size",
        params={
            "quick": quick,
            "sizes": ",".join(str(n) for n in sizes),
            "kinds": ",".join(KINDS),
            "modes": ",".join(MODES),
            "max_ops": QUICK_MAX_OPS if quick else MAX_OPS,
            "op_seconds": QUICK_OP_SECONDS if quick else OP_SECONDS,
            "min_ops": MIN_OPS,
            "setup_bound_seconds": SETUP_BOUND_SECONDS,
            "op_bound_seconds": OP_BOUND_SECONDS,
            "increments": QUICK_INCREMENTS if quick else INCREMENTS,
            "replicas": REPLICAS,
            "config": "local",
            "clock": "wall per operation; thread_time_ns for the floors",
        },
    )
    curves = _Curves()
    with tempfile.TemporaryDirectory(prefix="crdtgossip-bench-") as directory:
        asyncio.run(_measure(result, curves, sizes, quick, Path(directory)))
    _counter_floor(result, quick)
    if quick:
        result.notes.append("quick run: plots not written")
    else:
        _plot(result, curves)
    return result


async def _measure(
    result: BenchResult, curves: _Curves, sizes: tuple[int, ...], quick: bool, directory: Path
) -> None:
    await _empty_key_floor(result, quick)
    series = {(kind, mode): _Series() for kind in KINDS for mode in MODES}
    for n in sizes:
        for kind in KINDS:
            wanted = [mode for mode in MODES if _fits(result, series[kind, mode], kind, mode, n)]
            if not wanted:
                continue
            started = time.perf_counter()
            state = _build(kind, n)
            build_seconds = time.perf_counter() - started
            for mode in wanted:
                await _point(
                    result, curves, series[kind, mode], kind, mode, n, state, build_seconds,
                    quick, directory,
                )  # fmt: skip
            del state  # a 10^6-entry state weighs hundreds of megabytes
            gc.collect()
    for (kind, mode), known in series.items():
        for operation in ("update", "get"):
            for n in RATIO_SIZES:
                top = _name(operation, kind, mode, n)
                if n in sizes and any(f.name == top for f in result.figures):
                    result.ratio(
                        f"{operation} {kind} {mode}, {_exponent(n)} / {_exponent(BASE_SIZE)}",
                        top,
                        _name(operation, kind, mode, BASE_SIZE),
                        target=GROWTH_TARGET,
                        tolerance=GROWTH_TOLERANCE,
                        note="per operation; 1 = the cost does not grow with the key",
                    )
        if known.stopped:
            result.notes.append(f"{kind} {mode}: {known.stopped}")


def _name(operation: str, kind: str, mode: str, n: int) -> str:
    return f"{operation} {kind} {mode} {_exponent(n)}"


def _fits(result: BenchResult, known: _Series, kind: str, mode: str, n: int) -> bool:
    """Whether point n of a series fits the bounds, predicted from the previous size."""
    if known.stopped:
        return False
    if known.last_size:
        scale = n / known.last_size
        setup, op = known.setup_seconds * scale, known.op_seconds * scale
        if setup > SETUP_BOUND_SECONDS or op > OP_BOUND_SECONDS:
            known.stopped = (
                f"skipped from {n:,} entries: predicted setup {setup:.0f} s, one operation "
                f"{op:.1f} s (bounds {SETUP_BOUND_SECONDS:.0f} s, {OP_BOUND_SECONDS:.0f} s), "
                f"from {known.setup_seconds:.1f} s and {known.op_seconds:.2f} s at "
                f"{known.last_size:,}"
            )
            return False
    return True


def _build(kind: str, n: int) -> CRDT:
    """The key's state of n entries, made offline with the type's mutators."""
    if kind == "ORSet":
        elements: ORSet[int] = ORSet()
        for element in range(n):
            elements.add(element, BUILDER)
        return elements
    nested: ORMap[int] = ORMap(ORSet)
    for key in range(n):
        nested.update(key, BUILDER, lambda s: s.add(0, BUILDER))
    return nested


def _prototype(kind: str) -> Any:
    """The value type Node.update and Node.get are given for ``kind``."""
    return ORSet if kind == "ORSet" else ORMap(ORSet)


def _storage(mode: str, path: Path) -> Storage | None:
    if mode == "memory":
        return None
    if mode == "durable":
        return SQLiteStorage(path)
    return SQLiteStorage(path, sync_mode="batched")


def _absorb(state: Any, loaded: CRDT) -> CRDT:
    """The loading update's function: merge the prebuilt state in; it is the delta."""
    state.merge(loaded)
    return loaded


async def _point(
    result: BenchResult,
    curves: _Curves,
    known: _Series,
    kind: str,
    mode: str,
    n: int,
    state: CRDT,
    build_seconds: float,
    quick: bool,
    directory: Path,
) -> None:
    """Load one node with ``state``, then time its updates and gets."""
    path = directory / f"{kind}-{mode}-{n}.db".replace("(", "-").replace(")", "")
    node = Node(
        f"writer-{mode}",
        keyring=Keyring.generate(label=LABEL),
        storage=_storage(mode, path),
        config=GossipConfig.local(),
        seed=n,
    )
    prototype = _prototype(kind)
    started = time.perf_counter()
    await node.start()
    try:
        try:
            await node.update(KEY, prototype, lambda s: _absorb(s, state))
        except (StorageError, OperationError) as exc:
            # A key past the per-key size limit cannot be stored or sent: a bound of
            # the library, recorded as the end of this series, not a failure of the run.
            known.stopped = f"stopped at {n:,} entries: {exc}"
            return
        setup = build_seconds + time.perf_counter() - started
        replica = node.replica_id
        max_ops = QUICK_MAX_OPS if quick else MAX_OPS
        budget = QUICK_OP_SECONDS if quick else OP_SECONDS

        def update_action(i: int) -> Callable[[], Awaitable[object]]:
            if kind == "ORSet":
                return lambda: node.update(KEY, ORSet, lambda s: s.add(n + i, replica))
            return lambda: node.update(
                KEY, prototype, lambda m: m.update(i % n, replica, lambda s: s.add(1 + i, replica))
            )

        def get_action(i: int) -> Callable[[], Awaitable[object]]:
            async def get() -> object:
                got = await node.get(KEY, prototype)
                found = (i % n in got) if kind == "ORSet" else (0 in got[i % n])
                if not found:
                    raise RuntimeError(f"{kind} {mode} {n}: an entry is missing after get")
                return got

            return get

        try:
            updates = await _timed_ops(update_action, max_ops, budget)
        except OperationError as exc:  # past GossipConfig.max_key_bytes: a bound too
            known.stopped = f"stopped at {n:,} entries: {exc}"
            return
        gets = await _timed_ops(get_action, max_ops, budget)
    finally:
        await node.stop()
    for operation, samples in (("update", updates), ("get", gets)):
        name = _name(operation, kind, mode, n)
        what = "add one element" if kind == "ORSet" else "nested add into an existing key"
        if operation == "get":
            what = "Node.get + one membership test"
        figure = result.figure(
            Figure.time_per_op(name, Timing(tuple(samples), 1), f"{what}, {len(samples)} ops")
        )
        curves.add(f"{operation} {kind} {mode}", n, figure.value / NS_PER_MS)
    result.figure(
        Figure(
            f"setup {kind} {mode} {_exponent(n)}",
            setup,
            "s",
            note=f"build {n:,} entries offline ({build_seconds:.1f} s) + start + loading update",
        )
    )
    slowest = max(*updates, *gets) / NS_PER_S
    known.last_size, known.setup_seconds, known.op_seconds = n, setup, slowest
    if setup > SETUP_BOUND_SECONDS:
        known.stopped = (
            f"larger sizes skipped: setup took {setup:.0f} s at {n:,} entries "
            f"(bound {SETUP_BOUND_SECONDS:.0f} s)"
        )


async def _timed_ops(
    action: Callable[[int], Callable[[], Awaitable[object]]], max_ops: int, budget: float
) -> list[int]:
    """Nanoseconds of each of up to ``max_ops`` operations, within ``budget`` seconds.

    At least MIN_OPS operations run; the collector is off meanwhile (it would charge a
    pass over a large state to whichever operation happened to trigger it).
    """
    samples: list[int] = []
    gc.collect()
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        deadline = time.perf_counter_ns() + int(budget * NS_PER_S)
        for i in range(max_ops):
            if len(samples) >= MIN_OPS and time.perf_counter_ns() >= deadline:
                break
            call = action(i)
            start = time.perf_counter_ns()
            await call()
            samples.append(time.perf_counter_ns() - start)
    finally:
        if was_enabled:
            gc.enable()
    return samples


# ---- floors ----------------------------------------------------------------------------
async def _empty_key_floor(result: BenchResult, quick: bool) -> None:
    """A Local increment of an empty key against bench_consistency's floor."""
    node = Node("writer-empty", keyring=Keyring.generate(label=LABEL), config=GossipConfig.local())
    await node.start()
    updates = QUICK_EMPTY_KEY_UPDATES if quick else EMPTY_KEY_UPDATES
    repeats = QUICK_EMPTY_KEY_REPEATS if quick else EMPTY_KEY_REPEATS
    update = "Local update, empty key"
    try:
        async with floor_sender(node.replica_id) as floor:
            cases: Mapping[str, Throughput] = {
                FLOOR: Throughput(floor, updates),
                update: Throughput(local_increment(node, "empty"), updates),
            }
            _, cpu = await sample_throughput(cases, repeats, BETWEEN_SAMPLES_SECONDS)
    finally:
        await node.stop()
    for name in (FLOOR, update):
        result.figure(per_update(f"{name} (CPU)", cpu[name], updates, clock="CPU time"))
    result.ratio(
        f"{update} / {FLOOR}",
        f"{update} (CPU)",
        f"{FLOOR} (CPU)",
        target=EMPTY_KEY_TARGET,
        note="GCounter increment on a node alone, thread CPU; issue 12: at most 3x",
    )


def _counter_floor(result: BenchResult, quick: bool) -> None:
    """GCounter increments over 8 replicas against a dict per replica, on the CPU clock."""
    count = QUICK_INCREMENTS if quick else INCREMENTS
    replicas = [f"r{index}.{index:016x}" for index in range(REPLICAS)]
    order = [replicas[i % REPLICAS] for i in range(count)]

    def counters() -> dict[str, GCounter]:
        return {replica: GCounter() for replica in replicas}

    def increment_all(own: dict[str, GCounter]) -> None:
        for replica in order:
            own[replica].increment(replica)

    def dicts() -> dict[str, dict[str, int]]:
        return {replica: {} for replica in replicas}

    def count_all(own: dict[str, dict[str, int]]) -> None:
        for replica in order:
            slots = own[replica]
            slots[replica] = slots.get(replica, 0) + 1

    timings = time_cases(
        {"gcounter": Case(counters, increment_all, count), "dict": Case(dicts, count_all, count)},
        repeats=QUICK_COUNTER_REPEATS if quick else COUNTER_REPEATS,
        clock=CPU_CLOCK,
    )
    counter_name = f"GCounter increments over {REPLICAS} replicas"
    floor_name = f"floor: a dict per replica, {REPLICAS} replicas"
    result.figure(Figure.time_per_op(counter_name, timings["gcounter"], f"{count:,} increments"))
    result.figure(Figure.time_per_op(floor_name, timings["dict"], "slot = slot + 1"))
    result.ratio(
        f"GCounter / dict per replica, {count:,} increments",
        counter_name,
        floor_name,
        target=COUNTER_TARGET,
        note="each replica a GCounter of its own, increment returns its delta; at most 2x",
    )


# ---- plots -----------------------------------------------------------------------------
def _before() -> dict[str, dict[int, float]]:
    """The before-the-fix curves (ms per operation), from its baseline if committed."""
    path = BASELINE_DIR / f"{BEFORE}.json"
    try:
        figures = json.loads(path.read_text(encoding="utf-8"))["figures"]
    except (OSError, ValueError, KeyError):
        return {}
    points: dict[str, dict[int, float]] = {}
    for figure in figures:
        operation, _, rest = figure["name"].partition(" ")
        if operation not in ("update", "get") or figure["unit"] != "ns/op":
            continue
        series, _, tag = rest.rpartition(" ")
        points.setdefault(f"{operation} {series}", {})[int(float(tag))] = (
            figure["value"] / NS_PER_MS
        )
    return points


def _plot(result: BenchResult, curves: _Curves) -> None:
    before = _before()

    def draw(operation: str) -> Callable[[Any], None]:
        def on(axes: Any) -> None:
            markers = {"ORSet": "o", "ORMap(ORSet)": "s"}
            styles = {"memory": "-", "durable": "--", "batched": ":"}
            for kind in KINDS:
                for mode in MODES:
                    name = f"{operation} {kind} {mode}"
                    style = markers[kind] + styles[mode]
                    line(axes, curves.points.get(name, {}), f"{kind}, {mode}", style)
                    old = before.get(name, {})
                    if old:
                        axes.plot(sorted(old), [old[x] for x in sorted(old)], "x:", color="grey")
            if before:
                axes.plot([], [], "x:", color="grey", label=f"{BEFORE} (before)")
            axes.set_xscale("log")
            axes.set_yscale("log")
            axes.set_xlabel("entries in the key (n)")
            axes.set_ylabel("wall time per operation (ms)")
            what = "Node.update (one add)" if operation == "update" else "Node.get + one `in`"
            axes.set_title(f"{what} against key size")

        return on

    write_plots(
        result, [("writepath_update.png", draw("update")), ("writepath_get.png", draw("get"))]
    )

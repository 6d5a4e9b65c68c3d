"""Growth curves: how merge time, bytes per update and CPU per node scale with size.

Three curves, each point a ratio measured in the same run, and (full runs only) a PNG
plot of each under :data:`PLOT_DIR`, for the documentation:

* *merge time against set size*: the ORSet *independent* merge of ``bench_orset`` (two
  replicas of n elements, half overlapping, no shared dot) for n = 10^3 .. 10^6, alone
  and followed by one read (the read rebuilds the element index a large merge drops),
  beside the insert-absent dict loop on the same pairs; ns per element, and merge over
  loop at every size. Inputs and timed actions are ``bench_orset``'s own; below
  10^5 elements a sample merges into several fresh receivers in turn (see
  :data:`MERGE_BATCH_ELEMENTS`), so no sample is too short to time.
* *bytes per update against state size*: the encoded size
  (:func:`crdtgossip.codec.encode`) of a one-add delta to an ORSet of s elements
  (s = 10^2 .. 10^6) beside the encoded full state, and the sealed frame (frame
  header, sender id, ``Delta`` message, AES-GCM nonce, key id and tag) that carries
  the delta; the same for a one-increment delta to a :class:`GCounter` of r replicas.
  Byte counts are exact, so these ratios are free of noise.
* *CPU per node per simulated second against N*: clusters of N engines in the simulator
  (:class:`crdtgossip.testing.simulation.Simulation`, LAN preset, started formed), idle,
  N = 10 .. 1,000. Each sample runs whole anti-entropy cycles of virtual time (one from
  N = 100, several in the smaller clusters, see :data:`CPU_SAMPLE_NODE_SECONDS`), a
  cycle being ``push_pull_interval(30 s, N)``: 30 s up to 32 members, then 30 s times
  ``ceil(log2 N - 5) + 1``, 90 s at 100 and 180 s at 1,000. The interval has no jitter
  once running, so each node starts exactly one push-pull per cycle in any such window
  and the sample holds the steady mix of probes, gossip and anti-entropy (a fixed 10 s
  window would catch the first exchanges, all due within 30 s of the start, or none).
  The thread's CPU time over N times the window is the figure; its ratio to N = 10 is
  flat when the per-node cost is O(1). SWIM's probes and gossip are, but a push-pull
  ships the whole member table, N records, once per interval, so the curve rises as
  about N / log N on top of the flat part. The frames and bytes each node sent per
  second in the same windows are reported beside it (the simulator seals nothing). The
  CPU figure includes the simulator's own work (its event heaps and frame routing),
  which grows with the frames, not with N.

Everything is pure computation, timed on the thread's CPU clock
(:data:`benchmarks._measure.CPU_CLOCK`) with the cyclic collector off while the clock
runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from benchmarks._measure import CPU_CLOCK, Case, Timing, time_cases
from benchmarks._plot import PLOT_DIR, line, write_plots
from benchmarks._result import BenchResult, Figure
from benchmarks.bench_orset import (
    _copy_of,
    _dot_by_element,
    _fresh_receiver,
    _insert_absent,
    _merge_then_read,
    _replica,
)
from crdtgossip import GCounter, ORSet
from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import Dot
from crdtgossip.protocol.antientropy import push_pull_interval
from crdtgossip.protocol.messages import Delta, encode_frame, encode_message
from crdtgossip.security import Keyring
from crdtgossip.testing.simulation import Simulation

__all__ = ["PLOT_DIR", "run"]

#: Elements per replica of the merge curve (the issue: "10^3 to 10^6").
MERGE_SIZES = (1_000, 10_000, 100_000, 1_000_000)
QUICK_MERGE_SIZES = (1_000, 10_000)
#: Samples per case. Odd, so the median is a sample.
MERGE_REPEATS = 9
#: Elements merged per sample at least: below this size a sample merges into
#: ``MERGE_BATCH_ELEMENTS // n`` fresh receivers one after the other (a 10^3-element
#: merge alone lasts tens of microseconds, where on a loaded two-core machine the
#: loop's nine samples spread over 2x), so every sample lasts milliseconds.
MERGE_BATCH_ELEMENTS = 100_000
#: Samples per case from this size up: at 10^6 every sample copies a 10^6-element
#: replica and rebuilds its index before the clock starts (about a second), and the
#: two 10^6-element replicas take about 12 s to build, so 5 samples keep the full run
#: within minutes.
LARGE_MERGE_SIZE = 1_000_000
LARGE_MERGE_REPEATS = 5
QUICK_MERGE_REPEATS = 3
#: Tolerance of the merge-alone ratios below LARGE_MERGE_SIZE: an independent merge
#: alone mostly joins per-replica maps, tens of microseconds at 10^3 elements, where
#: two runs differed by 20%.
MERGE_ALONE_TOLERANCE = 0.5
#: Tolerance of the merge-alone ratio at LARGE_MERGE_SIZE: the merge allocates the
#: joined maps afresh and its time follows the allocator's page faults: with three
#: samples two runs gave 94 and 50 ns per element (ratio 0.55 and 0.29); with five,
#: 0.27 and 0.32.
LARGE_MERGE_ALONE_TOLERANCE = 1.0
#: Tolerance of merge+read over the loop at LARGE_MERGE_SIZE and of the growth ratios
#: (largest size over smallest): few samples, and dicts of 10^6 entries outgrow the
#: caches; two runs differed by up to 13%. The other merge+read ratios keep the
#: harness default (two runs: within 18%).
LARGE_MERGE_TOLERANCE = 0.5

#: ORSet sizes of the bytes curve (10^2 .. 10^6). Sizes that are also in MERGE_SIZES
#: reuse the merge curve's replica.
BYTES_SIZES = (100, 1_000, 10_000, 100_000, 1_000_000)
QUICK_BYTES_SIZES = (100, 1_000, 10_000)
#: Replicas of the GCounter whose one-increment delta is set beside its state.
COUNTER_REPLICAS = (10, 100, 1_000, 10_000)
QUICK_COUNTER_REPLICAS = (10, 100)

#: Cluster sizes of the CPU curve. Forming a cluster is cheap (0.1 s at 1,000), but a
#: sample covers a whole anti-entropy cycle, in which every node exchanges its member
#: table once: at 1,000 nodes that is 180 virtual seconds and about 80 s of CPU on the
#: 2-core reference machine, so larger sizes would not fit a benchmark run (the
#: simulation benchmark times 10,000-node rounds instead).
CPU_SIZES = (10, 30, 100, 300, 1_000)
QUICK_CPU_SIZES = (10, 30)
#: Samples per size.
CPU_REPEATS = 5
#: Node-seconds of virtual time per sample at least: a small cluster runs several
#: anti-entropy cycles per sample (10 at N = 10, 4 at N = 30, one from N = 100), as one
#: cycle of 10 nodes lasts about 60 ms of CPU, short enough for a loaded machine's
#: cache misses to show (three such samples at N = 30 spread over 1.6x).
CPU_SAMPLE_NODE_SECONDS = 3_000
#: From this size up, one sample: a cycle lasts 150 s of virtual time at 300 nodes
#: (about 15 s of CPU) and 180 s at 1,000 (about 80 s).
LARGE_CPU_SIZE = 300
LARGE_CPU_REPEATS = 1
QUICK_CPU_REPEATS = 1
#: Virtual seconds each cluster runs after formation, before the first sample: a few
#: probe rounds, so every engine's timers are in their running rhythm.
CPU_WARMUP_SECONDS = 5.0
#: Tolerance of the CPU ratios: the two sides are timed minutes apart, not
#: interleaved, and the larger cluster's heap spills the caches; single samples at
#: N >= LARGE_CPU_SIZE. Two runs on a loaded two-core machine differed by up to 22%.
CPU_TOLERANCE = 0.5

#: Seed of every simulated cluster.
SEED = 2026
#: Replica ids shaped like Node's (node id, a dot, 64 random bits in hex).
REPLICA_A = "n0.5f3c9a0e12b4d687"
REPLICA_B = "n1.0c41e9b7a2d35f18"
#: Sender id and data key of the sealed frames, and the keyring's cluster label.
SENDER = "n0"
KEY = "set"
LABEL = b"crdtgossip-bench"

CLOCK_NAME = "thread_time_ns"

T = TypeVar("T")


@dataclass
class _Curves:
    """The points of each curve, kept for the plots (figures hold the same numbers)."""

    merge: dict[str, dict[int, float]] = field(default_factory=dict)
    orset_bytes: dict[str, dict[int, int]] = field(default_factory=dict)
    counter_bytes: dict[str, dict[int, int]] = field(default_factory=dict)
    cpu: dict[int, float] = field(default_factory=dict)

    def add_merge(self, series: str, n: int, value: float) -> None:
        self.merge.setdefault(series, {})[n] = value

    def add_orset_bytes(self, series: str, n: int, value: int) -> None:
        self.orset_bytes.setdefault(series, {})[n] = value

    def add_counter_bytes(self, series: str, n: int, value: int) -> None:
        self.counter_bytes.setdefault(series, {})[n] = value


def run(quick: bool) -> BenchResult:
    """Run the growth curves; ``quick`` keeps the small sizes and writes no plot."""
    merge_sizes = QUICK_MERGE_SIZES if quick else MERGE_SIZES
    bytes_sizes = QUICK_BYTES_SIZES if quick else BYTES_SIZES
    counter_replicas = QUICK_COUNTER_REPLICAS if quick else COUNTER_REPLICAS
    cpu_sizes = QUICK_CPU_SIZES if quick else CPU_SIZES
    result = BenchResult(
        title="Growth: merge time, bytes per update and CPU per node against size",
        params={
            "quick": quick,
            "merge_sizes": _joined(merge_sizes),
            "merge_repeats": QUICK_MERGE_REPEATS if quick else MERGE_REPEATS,
            "large_merge_repeats": QUICK_MERGE_REPEATS if quick else LARGE_MERGE_REPEATS,
            "bytes_sizes": _joined(bytes_sizes),
            "counter_replicas": _joined(counter_replicas),
            "cpu_sizes": _joined(cpu_sizes),
            "cpu_repeats": QUICK_CPU_REPEATS if quick else CPU_REPEATS,
            "large_cpu_repeats": QUICK_CPU_REPEATS if quick else LARGE_CPU_REPEATS,
            "cpu_warmup_seconds": CPU_WARMUP_SECONDS,
            "seed": SEED,
            "clock": CLOCK_NAME,
        },
    )
    curves = _Curves()
    keyring = Keyring.generate(label=LABEL)
    for n in sorted(set(merge_sizes) | set(bytes_sizes)):
        a = _replica(REPLICA_A, range(n))
        if n in merge_sizes:
            _merge_point(result, curves, a, n, quick)
        if n in bytes_sizes:
            _orset_bytes_point(result, curves, a, n, keyring)
        del a  # the 10^6-element replicas weigh hundreds of megabytes
    _growth_ratios(result, merge_sizes, bytes_sizes)
    for replicas in counter_replicas:
        _counter_bytes_point(result, curves, replicas)
    for n in cpu_sizes:
        _cpu_point(result, curves, n, min(cpu_sizes), quick)
    if quick:
        result.notes.append("quick run: plots not written")
    else:
        _plot_all(result, curves)
    if not quick:
        result.notes.append(
            f"merge samples: {MERGE_REPEATS} per case below {LARGE_MERGE_SIZE:,} elements, "
            f"{LARGE_MERGE_REPEATS} at {LARGE_MERGE_SIZE:,}; CPU samples: {CPU_REPEATS} per "
            f"size below N = {LARGE_CPU_SIZE}, {LARGE_CPU_REPEATS} from there (each sample "
            "whole anti-entropy cycles of virtual time)"
        )
    return result


def _joined(sizes: Sequence[int]) -> str:
    return ",".join(str(size) for size in sizes)


def _repeats(quick: bool, large: bool, normal: int, for_large: int, for_quick: int) -> int:
    """Samples for one point: fewer at the large sizes, and in quick runs."""
    if quick:
        return for_quick
    return for_large if large else normal


def _exponent(n: int) -> str:
    """``1e3`` for 1,000: short, stable names for figures and ratios."""
    return f"{n:.0e}".replace("e+0", "e").replace("e+", "e")


# ---- merge time against size -----------------------------------------------------------
def _merge_point(result: BenchResult, curves: _Curves, a: ORSet[int], n: int, quick: bool) -> None:
    b = _replica(REPLICA_B, range(n // 2, n // 2 + n))
    receiver = _fresh_receiver(a)
    their_items = list(_dot_by_element(b).items())
    mine = _dot_by_element(a)
    large = n >= LARGE_MERGE_SIZE
    repeats = _repeats(quick, large, MERGE_REPEATS, LARGE_MERGE_REPEATS, QUICK_MERGE_REPEATS)
    batch = max(1, MERGE_BATCH_ELEMENTS // n)
    receivers = _batch_of(receiver, batch)
    dicts = _batch_of(_copy_of(mine), batch)
    cases: Mapping[str, Case[Any]] = {
        "merge": Case(receivers, lambda rs: _merge_each(rs, b), n * batch),
        "merge+read": Case(receivers, lambda rs: _merge_then_read_each(rs, b), n * batch),
        "loop": Case(dicts, lambda ds: _insert_absent_each(ds, their_items), n * batch),
    }
    timings = time_cases(cases, repeats=repeats, clock=CPU_CLOCK)
    tag = _exponent(n)
    names = {
        "merge": f"merge {tag}",
        "merge+read": f"merge+read {tag}",
        "loop": f"floor: insert-absent loop {tag}",
    }
    notes = {
        "merge": f"a.merge(b), {n:,} + {n:,} elements, per element of b",
        "merge+read": "then one `in` (index rebuild), per element of b",
        "loop": f"{n:,} pairs into a {n:,}-entry dict, per pair",
    }
    for case, timing in timings.items():
        figure = result.figure(Figure.time_per_op(names[case], timing, notes[case]))
        curves.add_merge(case, n, figure.value)
    result.ratio(
        f"merge / insert-absent loop, {tag}",
        names["merge"],
        names["loop"],
        tolerance=LARGE_MERGE_ALONE_TOLERANCE if large else MERGE_ALONE_TOLERANCE,
        note=f"{repeats} samples of {batch} merge(s)",
    )
    result.ratio(
        f"merge+read / insert-absent loop, {tag}",
        names["merge+read"],
        names["loop"],
        tolerance=LARGE_MERGE_TOLERANCE if large else None,
        note="what a replica that merges and then reads pays",
    )


def _batch_of(prepare: Callable[[], T], count: int) -> Callable[[], list[T]]:
    """A ``prepare`` building ``count`` fresh inputs at once, for one sample of a batch."""
    return lambda: [prepare() for _ in range(count)]


def _merge_each(receivers: list[ORSet[int]], other: ORSet[int]) -> None:
    for receiver in receivers:
        receiver.merge(other)


def _merge_then_read_each(receivers: list[ORSet[int]], other: ORSet[int]) -> None:
    for receiver in receivers:
        _merge_then_read(receiver, other)


def _insert_absent_each(targets: list[dict[int, Dot]], items: list[tuple[int, Dot]]) -> None:
    for target in targets:
        _insert_absent(target, items)


def _growth_ratios(
    result: BenchResult, merge_sizes: Sequence[int], bytes_sizes: Sequence[int]
) -> None:
    """Largest size over smallest, per element or per update: 1 is a flat curve."""
    small, large = _exponent(min(merge_sizes)), _exponent(max(merge_sizes))
    result.ratio(
        f"merge+read per element, {large} / {small}",
        f"merge+read {large}",
        f"merge+read {small}",
        tolerance=LARGE_MERGE_TOLERANCE,
        note="1 = linear in the set size; caches make every Python loop grow somewhat",
    )
    result.ratio(
        f"insert-absent loop per pair, {large} / {small}",
        f"floor: insert-absent loop {large}",
        f"floor: insert-absent loop {small}",
        tolerance=LARGE_MERGE_TOLERANCE,
        note="the floor's own growth, for reading the line above",
    )
    small, large = _exponent(min(bytes_sizes)), _exponent(max(bytes_sizes))
    result.ratio(
        f"sealed one-add frame, ORSet {large} / {small}",
        f"sealed one-add frame, ORSet {large}",
        f"sealed one-add frame, ORSet {small}",
        note="1 = the wire cost of an update does not grow with the state",
    )


# ---- bytes per update against state size -----------------------------------------------
def _sealed_delta_frame(keyring: Keyring, payload: bytes) -> bytes:
    """The sealed frame a node sends carrying one ``Delta`` message and nothing else."""
    message = encode_message(Delta(KEY, payload))
    return keyring.seal(encode_frame(SENDER, [message]))


def _orset_bytes_point(
    result: BenchResult, curves: _Curves, a: ORSet[int], n: int, keyring: Keyring
) -> None:
    tag = _exponent(n)
    state_bytes = len(encode(a))
    delta = a.add(10 * n, REPLICA_A)  # an element the set does not hold; a is not reused
    delta_bytes = len(encode(delta))
    frame_bytes = len(_sealed_delta_frame(keyring, encode(delta)))
    for series, name, value, note in (
        ("state", f"encoded ORSet {tag}", state_bytes, f"codec.encode, {n:,} elements"),
        ("delta", f"encoded one-add delta, ORSet {tag}", delta_bytes, "codec.encode"),
        ("frame", f"sealed one-add frame, ORSet {tag}", frame_bytes, "Delta message, sealed"),
    ):
        result.figure(Figure(name, value, "bytes", note=note))
        curves.add_orset_bytes(series, n, value)
    result.ratio(
        f"one-add delta / state, ORSet {tag}",
        f"encoded one-add delta, ORSet {tag}",
        f"encoded ORSet {tag}",
        note="what delta-state gossip saves over shipping the state",
    )
    result.ratio(
        f"sealed one-add frame / state, ORSet {tag}",
        f"sealed one-add frame, ORSet {tag}",
        f"encoded ORSet {tag}",
        note="the whole frame on the wire, sealing included",
    )


def _counter_bytes_point(result: BenchResult, curves: _Curves, replicas: int) -> None:
    counter = GCounter()
    for index in range(replicas):
        counter.increment(f"n{index}.{index:016x}")
    delta = counter.increment(f"n0.{0:016x}")
    tag = _exponent(replicas)
    state_name = f"encoded GCounter {tag} replicas"
    delta_name = f"encoded one-increment delta, GCounter {tag}"
    state_bytes, delta_bytes = len(encode(counter)), len(encode(delta))
    result.figure(Figure(state_name, state_bytes, "bytes", note=f"{replicas:,} replicas"))
    result.figure(Figure(delta_name, delta_bytes, "bytes", note="codec.encode"))
    curves.add_counter_bytes("state", replicas, state_bytes)
    curves.add_counter_bytes("delta", replicas, delta_bytes)
    result.ratio(f"one-increment delta / state, GCounter {tag}", delta_name, state_name)


# ---- CPU per node against N ------------------------------------------------------------
def _cpu_point(result: BenchResult, curves: _Curves, n: int, base: int, quick: bool) -> None:
    config = GossipConfig.lan()
    cycle = push_pull_interval(config.push_pull_interval, n)
    window = cycle * max(1, math.ceil(CPU_SAMPLE_NODE_SECONDS / (n * cycle)))
    large = n >= LARGE_CPU_SIZE
    repeats = _repeats(quick, large, CPU_REPEATS, LARGE_CPU_REPEATS, QUICK_CPU_REPEATS)
    sim = Simulation(n, SEED, config, formed=True)
    sim.run(CPU_WARMUP_SECONDS)
    frames, sent = sim.frames_sent, sim.bytes_sent
    timing = time_cases(
        {"run": Case(lambda: sim, lambda s: s.run(window))}, repeats=repeats, clock=CPU_CLOCK
    )["run"]
    node_seconds = n * window
    frames_rate = (sim.frames_sent - frames) / (node_seconds * repeats)
    bytes_rate = (sim.bytes_sent - sent) / (node_seconds * repeats)
    name = f"CPU per node, N={n}"
    figure = result.figure(_per_node_second(name, timing, node_seconds, window, repeats))
    curves.cpu[n] = figure.value
    result.figure(
        Figure(f"frames per node, N={n}", frames_rate, "frames/node/s", note="sent, idle")
    )
    result.figure(
        Figure(f"bytes per node, N={n}", bytes_rate, "bytes/node/s", note="frames, unsealed")
    )
    if n != base:
        result.ratio(
            f"CPU per node, N={n} / N={base}",
            name,
            f"CPU per node, N={base}",
            tolerance=CPU_TOLERANCE,
            note="1 = O(1) per node; push-pull ships N member records per cycle",
        )


def _per_node_second(
    name: str, timing: Timing, node_seconds: float, window: float, repeats: int
) -> Figure:
    """CPU microseconds per node per simulated second, from samples of one window each."""
    ns_per_us = 1_000
    return Figure(
        name,
        timing.median_ns_per_op / node_seconds / ns_per_us,
        "us/node/s",
        best=timing.best_ns_per_op / node_seconds / ns_per_us,
        note=f"idle, {window:g} virtual s per sample, {repeats} sample(s)",
    )


# ---- plots -----------------------------------------------------------------------------
def _plot_all(result: BenchResult, curves: _Curves) -> None:
    """Write the three PNGs into PLOT_DIR (with matplotlib; see benchmarks._plot)."""
    write_plots(
        result,
        [
            ("growth_merge.png", lambda axes: _draw_merge(axes, curves)),
            ("growth_bytes.png", lambda axes: _draw_bytes(axes, curves)),
            ("growth_cpu.png", lambda axes: _draw_cpu(axes, curves)),
        ],
    )


def _draw_merge(axes: Any, curves: _Curves) -> None:
    line(axes, curves.merge["merge+read"], "ORSet merge, then one read", "o-")
    line(axes, curves.merge["merge"], "ORSet merge alone", "s--")
    line(axes, curves.merge["loop"], "floor: insert-absent dict loop", "^:")
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)  # linear: a flat line is a merge linear in n
    axes.set_xlabel("elements per replica (n)")
    axes.set_ylabel("CPU time per element (ns)")
    axes.set_title("ORSet merge of two independent n-element replicas")


def _draw_bytes(axes: Any, curves: _Curves) -> None:
    line(axes, curves.orset_bytes["state"], "ORSet, full state", "o-")
    line(axes, curves.orset_bytes["frame"], "ORSet, sealed frame of a one-add delta", "s-")
    line(axes, curves.orset_bytes["delta"], "ORSet, one-add delta", "^-")
    line(axes, curves.counter_bytes["state"], "GCounter, full state", "o--")
    line(axes, curves.counter_bytes["delta"], "GCounter, one-increment delta", "^--")
    axes.set_xscale("log")
    axes.set_yscale("log")
    axes.set_xlabel("state size (ORSet elements; GCounter replicas)")
    axes.set_ylabel("encoded size (bytes)")
    axes.set_title("Bytes per update against state size")


def _draw_cpu(axes: Any, curves: _Curves) -> None:
    line(axes, curves.cpu, "measured (idle, LAN preset)", "o-")
    base = curves.cpu[min(curves.cpu)]
    axes.axhline(base, linestyle=":", color="grey", label=f"flat at N={min(curves.cpu)}")
    axes.set_xscale("log")
    axes.set_ylim(bottom=0)  # linear, from zero: the growth reads at its true size
    axes.set_xlabel("cluster size N (simulated nodes)")
    axes.set_ylabel("CPU per node per simulated second (µs)")
    axes.set_title("Simulated cluster: CPU per node against N")

"""Simulator scale: forming a 10,000-node cluster and the real cost of one gossip round.

The simulator (:class:`crdtgossip.testing.simulation.Simulation`) runs N copies of the
real engine on virtual time. Here each cluster is started formed (every node knows
every other as alive, nothing queued), with the LAN preset (a gossip round every
200 ms, a probe every second, push-pull every 30 s scaled for N), and left idle: no
update, no loss, so what a round costs is the protocol's steady background work
(probes and their acks, gossip rounds with nothing queued, anti-entropy exchanges,
each shipping the N-record member table) plus the simulator's own (its event heaps
and frame routing).

Figures, per cluster size:

* the real time to build the formed cluster;
* the thread's CPU time of one gossip round of virtual time (``gossip_interval``),
  over several consecutive rounds: the median and the least, with the cyclic garbage
  collector off (as every timed case here), then as many rounds as a user runs them,
  the collector left as the process has it (``round_seconds_gc``). A run pauses it
  now (``crdtgossip/testing/_sim_gc.py``); before, with millions of live objects, its
  full collections added about half. The issue's target, checked against the rounds
  a user runs: at most 5 s for a 10,000-node round on the 2-core reference machine;
* a node's share of a round (the round divided by N) against one tick of a single
  idle engine (an engine that adopted a table of the same N members and has no timer
  due: the least a driver does for one engine), timed in the same run, interleaved
  with the rounds;
* the process's resident memory: its growth while the cluster was built and run, and
  its peak (Linux only; whole process, so other benchmarks run before it in the same
  process may have set the peak).

And, last, a cluster joining from scratch (not formed): every node joins through
node 0 at time 0, and the run goes on until every node sees every other alive
(:meth:`Simulation.converged`, checked each gossip round). Figures: the thread's CPU
time of it all, construction included (one sample: it is long, and SWIM's cost is
in it, N² alive rumors each sent ``retransmit_mult * log10 N`` times by every node
that learns it), the virtual seconds it took, the bytes sent and the resident memory
the joined cluster holds.

Everything is pure computation, timed on the thread's CPU clock
(:data:`benchmarks._measure.CPU_CLOCK`), with the cyclic collector off while the clock
runs (and a full collection before each sample, off the clock) except in the rounds
said to have it on.
"""

from __future__ import annotations

import os
import random
import sys
import time

from benchmarks._measure import CPU_CLOCK, NS_PER_S, Case, Timing, time_cases
from benchmarks._result import BenchResult, Figure
from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine
from crdtgossip.protocol.membership import FormedTable
from crdtgossip.protocol.messages import MemberRecord
from crdtgossip.testing.simulation import Simulation

__all__ = ["run"]

#: Cluster sizes: the issue's 10,000, and 1,000 beside it to show how a node's share
#: of a round grows with N (the push-pull ships N records: about N / log N).
SIZES = (1_000, 10_000)
#: --quick: a smoke test of a few seconds.
QUICK_SIZES = (1_000,)
#: Consecutive gossip rounds timed per size (one sample each). A round holds a
#: random number of push-pulls (about N / 1,500 on average with the LAN preset, each
#: decoding two N-record tables), so rounds vary by 2x or so: the median of several.
ROUNDS = 9
QUICK_ROUNDS = 3
#: Idle ticks per tick sample: an idle tick lasts microseconds, so many per sample.
TICKS_PER_SAMPLE = 2_000
#: Nodes joining from scratch: the issue's 1,000 (about 30 s of CPU; 55 s before the
#: broadcast queue kept its items in buckets); --quick: 100.
JOIN_NODES = 1_000
QUICK_JOIN_NODES = 100
#: Virtual seconds a join run may take before it is reported unconverged.
JOIN_MAX_SECONDS = 120.0
#: The issue's target for 1,000 nodes joining, in CPU seconds.
TARGET_JOIN_SECONDS = 30.0
#: The issue's target for one round of the largest cluster, in real seconds.
TARGET_ROUND_SECONDS = 5.0
#: The cluster size the target applies to.
TARGET_NODES = 10_000
#: Tolerance of the ratios: a round's cost follows how many push-pulls fall in it.
TOLERANCE = 0.5
#: Seed of every simulated cluster and of the idle engine.
SEED = 2026
CLOCK_NAME = "thread_time_ns"
BYTES_PER_MB = 1 << 20


def run(quick: bool) -> BenchResult:
    """Run the simulator benchmark; ``quick`` uses 1,000 nodes and fewer rounds."""
    sizes = QUICK_SIZES if quick else SIZES
    rounds = QUICK_ROUNDS if quick else ROUNDS
    config = GossipConfig.lan()
    result = BenchResult(
        title="Simulator: forming an N-node cluster and the CPU time of one gossip round",
        params={
            "quick": quick,
            "sizes": ",".join(str(n) for n in sizes),
            "rounds": rounds,
            "ticks_per_sample": TICKS_PER_SAMPLE,
            "gossip_interval": config.gossip_interval,
            "seed": SEED,
            "clock": CLOCK_NAME,
        },
    )
    for n in sizes:
        _measure_size(result, n, rounds, config)
    _measure_join(result, QUICK_JOIN_NODES if quick else JOIN_NODES, config)
    if len(sizes) > 1:
        small, large = sizes[0], sizes[-1]
        result.ratio(
            f"node_round_{large}_over_{small}",
            f"node_round_ns_{large}",
            f"node_round_ns_{small}",
            tolerance=TOLERANCE,
            note="1 = O(1) per node; push-pull ships N member records",
        )
    return result


def _measure_size(result: BenchResult, n: int, rounds: int, config: GossipConfig) -> None:
    rss_before = _rss_bytes()
    started = time.perf_counter()
    sim = Simulation(n, SEED, config, formed=True)
    formed = time.perf_counter() - started
    idle = _idle_engine(sim, config)
    frames_before = sim.frames_sent
    timings = time_cases(
        {
            "round": Case(lambda: sim, lambda s: s.run(config.gossip_interval)),
            "tick": Case(lambda: idle, _idle_ticks, ops=TICKS_PER_SAMPLE),
        },
        repeats=rounds,
        clock=CPU_CLOCK,
    )
    frames_per_round = (sim.frames_sent - frames_before) / rounds
    collected = _rounds_with_collector(sim, rounds, config.gossip_interval)
    rss_after = _rss_bytes()
    round_timing, tick_timing = timings["round"], timings["tick"]
    result.figure(
        Figure(f"formation_seconds_{n}", formed, "s", note="real time to build the formed cluster")
    )
    result.figure(
        _seconds(
            f"round_seconds_{n}",
            round_timing,
            f"CPU per gossip round of virtual time, {rounds} consecutive rounds",
        )
    )
    result.figure(
        _seconds(
            f"round_seconds_gc_{n}",
            collected,
            f"the same as a user runs them (collector on; a run pauses it), {rounds} more",
        )
    )
    result.figure(
        Figure(
            f"frames_per_round_{n}",
            frames_per_round,
            "frames",
            note="frames the engines sent per round",
        )
    )
    result.figure(
        Figure(
            f"node_round_ns_{n}",
            round_timing.median_ns_per_op / n,
            "ns",
            best=round_timing.best_ns_per_op / n,
            note="a round's CPU / N",
        )
    )
    result.figure(
        Figure(
            f"idle_tick_ns_{n}",
            tick_timing.median_ns_per_op,
            "ns",
            best=tick_timing.best_ns_per_op,
            note=f"Engine.tick with no timer due, table of {n:,} members",
        )
    )
    result.ratio(
        f"node_round_over_tick_{n}",
        f"node_round_ns_{n}",
        f"idle_tick_ns_{n}",
        tolerance=TOLERANCE,
        note="a node's share of a round, in idle engine ticks",
    )
    if n == TARGET_NODES:
        result.figure(
            Figure("target_round_seconds", TARGET_ROUND_SECONDS, "s", note="issue's target")
        )
        result.ratio(
            f"round_over_target_{n}",
            f"round_seconds_gc_{n}",
            "target_round_seconds",
            target=1.0,
            tolerance=TOLERANCE,
            note="seconds per round as a user runs them / 5 s: depends on the machine",
        )
    if rss_before is None or rss_after is None:
        result.notes.append("resident memory not measured: no /proc/self/statm here")
    else:
        result.figure(
            Figure(
                f"rss_growth_mb_{n}",
                (rss_after - rss_before) / BYTES_PER_MB,
                "MB",
                note="resident memory gained while the cluster was built and run",
            )
        )
    peak = _peak_rss_bytes()
    if peak is not None:
        result.figure(
            Figure(
                f"peak_rss_mb_{n}",
                peak / BYTES_PER_MB,
                "MB",
                note="the process's peak resident memory so far",
            )
        )


def _measure_join(result: BenchResult, n: int, config: GossipConfig) -> None:
    """N nodes joining through one seed at once, until each sees all others alive."""
    rss_before = _rss_bytes()
    start = CPU_CLOCK()
    sim = Simulation(n, SEED, config)
    outcome = sim.run_until_converged(JOIN_MAX_SECONDS)
    cpu = (CPU_CLOCK() - start) / NS_PER_S
    if not outcome.converged:
        result.notes.append(f"{n} joining nodes did not converge in {JOIN_MAX_SECONDS} s")
    result.figure(
        Figure(f"join_cpu_seconds_{n}", cpu, "s", note="CPU from construction to converged")
    )
    result.figure(
        Figure(
            f"join_virtual_seconds_{n}",
            outcome.virtual_seconds,
            "s",
            note="virtual time until every node saw every other alive",
        )
    )
    result.figure(
        Figure(
            f"join_mb_sent_{n}", outcome.bytes / BYTES_PER_MB, "MB", note="bytes the engines sent"
        )
    )
    if n == JOIN_NODES:
        result.figure(
            Figure("target_join_seconds", TARGET_JOIN_SECONDS, "s", note="issue's target")
        )
        result.ratio(
            f"join_over_target_{n}",
            f"join_cpu_seconds_{n}",
            "target_join_seconds",
            target=1.0,
            tolerance=TOLERANCE,
            note="CPU of a join from scratch / 30 s: depends on the machine",
        )
    rss_after = _rss_bytes()
    if rss_before is not None and rss_after is not None:
        result.figure(
            Figure(
                f"join_rss_growth_mb_{n}",
                (rss_after - rss_before) / BYTES_PER_MB,
                "MB",
                note="resident memory gained by the joined cluster (the peak is the formed runs')",
            )
        )


def _rounds_with_collector(sim: Simulation, rounds: int, interval: float) -> Timing:
    """CPU time of ``rounds`` consecutive gossip rounds as a user runs them (the
    collector left as the process has it: on; ``Simulation.run`` pauses it itself)."""
    samples = []
    for _ in range(rounds):
        start = CPU_CLOCK()
        sim.run(interval)
        samples.append(CPU_CLOCK() - start)
    return Timing(tuple(samples), 1)


def _idle_engine(sim: Simulation, config: GossipConfig) -> Engine:
    """An engine that knows the same members as ``sim``'s node 0, with no timer due."""
    records = [MemberRecord(m.node_id, m.address, m.incarnation, m.status) for m in sim.members(0)]
    engine = Engine(
        sim.node_id(0), sim.address(0), config, random.Random(SEED), f"{sim.node_id(0)}.idle"
    )
    engine.adopt_formed(FormedTable(records), 0.0)
    return engine


def _idle_ticks(engine: Engine) -> None:
    # Time 0 is when the engine started: every timer lies ahead (random phases).
    for _ in range(TICKS_PER_SAMPLE):
        engine.tick(0.0)


def _rss_bytes() -> int | None:
    """The process's resident memory now, or ``None`` where /proc is missing."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            resident_pages = int(statm.read().split()[1])
    except OSError:
        return None
    return resident_pages * os.sysconf("SC_PAGE_SIZE")


def _peak_rss_bytes() -> int | None:
    """The process's peak resident memory, or ``None`` where it cannot be read."""
    if sys.platform == "win32":
        return None
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux counts kibibytes; macOS counts bytes.
    return peak if sys.platform == "darwin" else peak * 1024


def _seconds(name: str, timing: Timing, note: str) -> Figure:
    """A timing as seconds per operation: the median sample, and the least as ``best``."""
    return Figure(
        name,
        timing.median_ns_per_op / NS_PER_S,
        "s",
        best=timing.best_ns_per_op / NS_PER_S,
        note=note,
    )

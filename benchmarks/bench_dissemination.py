"""Dissemination: gossip rounds until every node holds one update, beside the epidemic bounds.

Each cluster runs the real engine in the simulator (:mod:`crdtgossip.testing.simulation`)
on virtual time, with the LAN preset (fanout 3, a gossip round every 200 ms), started
formed (every node knows every other; nothing queued). One node, drawn by the seeded
generator, increments a counter under a fresh key; the simulator counts the nodes that
hold the key, and the figure is the virtual time until all do, in gossip intervals.
Several trials per setting, with and without 10% datagram loss, each after the
previous update's retransmissions have run out.

The bounds beside the figures are those of random rumor spreading: push needs about
log2 N + ln N rounds (Frieze and Grimmett 1985, Pittel 1987), push-pull log3 N +
O(ln ln N) (Karp et al. 2000). The engine pushes to ``fanout`` members per round and
also piggybacks fresh news on failure-detector pings and acks, so it can beat the
single-target push bound. Every ratio divides a measured round count by a bound
computed for the same N, so the machine's speed does not enter (nothing is timed: the
figures are virtual).
"""

from __future__ import annotations

import math
import random
import statistics
import time

from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter
from crdtgossip.config import GossipConfig
from crdtgossip.protocol.broadcast import retransmit_limit
from crdtgossip.testing.simulation import Simulation

__all__ = ["run"]

#: Cluster sizes (issue 5: 100, 1,000 and 10,000). 10,000 is left out: forming the
#: cluster costs every engine one member-table insertion per member, O(N²) in all,
#: about a minute at 1,000 nodes here, and so hours at 10,000.
SIZES = (100, 1_000)
#: --quick: a smoke test of a few seconds.
QUICK_SIZES = (30, 100)
#: Datagram loss rates (issue 5: none and 10%).
LOSSES = (0.0, 0.1)
#: Updates spread per size and loss; the median is reported. Odd, so it is a trial.
TRIALS = 5
QUICK_TRIALS = 3
#: Virtual seconds one update may take to reach everyone before the trial counts as
#: failed: 300 gossip rounds, far past any bound here.
MAX_SPREAD_SECONDS = 60.0
#: The issue's target without loss at 1,000 nodes.
TARGET_ROUNDS_AT_1000 = 10.0
#: The seed of every simulation and of the choice of writers.
SEED = 2026


def push_bound(n: int) -> float:
    """Rounds push rumor spreading needs: log2 N + ln N."""
    return math.log2(n) + math.log(n)


def push_pull_bound(n: int) -> float:
    """Rounds push-pull rumor spreading needs: log3 N + ln ln N."""
    return math.log(n, 3) + math.log(math.log(n))


def run(quick: bool) -> BenchResult:
    """Run the dissemination benchmark; ``quick`` uses small clusters and fewer trials."""
    sizes = QUICK_SIZES if quick else SIZES
    trials = QUICK_TRIALS if quick else TRIALS
    config = GossipConfig.lan()
    result = BenchResult(
        title=f"Dissemination: gossip rounds until all N nodes hold an update (fanout "
        f"{config.fanout})",
        params={
            "quick": quick,
            "sizes": ",".join(str(n) for n in sizes),
            "losses": ",".join(str(loss) for loss in LOSSES),
            "trials": trials,
            "fanout": config.fanout,
            "gossip_interval": config.gossip_interval,
            "seed": SEED,
        },
    )
    for n in sizes:
        _measure_size(result, n, trials, config)
    result.notes.append(
        "N = 10,000 not run: forming the simulated cluster is O(N^2) member insertions "
        "in the engines (about a minute at N = 1,000 on the 2-core reference machine)."
    )
    return result


def _measure_size(result: BenchResult, n: int, trials: int, config: GossipConfig) -> None:
    started = time.perf_counter()
    sim = Simulation(n, SEED, config, formed=True)
    formed = time.perf_counter() - started
    writers = random.Random(f"{SEED}-{n}-writers")
    # Long enough for a delta's retransmissions to run out before the next trial.
    drain = retransmit_limit(config.retransmit_mult, n) * config.gossip_interval
    result.figure(Figure(f"push_bound_{n}", push_bound(n), "rounds", note="log2 N + ln N"))
    result.figure(
        Figure(f"push_pull_bound_{n}", push_pull_bound(n), "rounds", note="log3 N + ln ln N")
    )
    for loss in LOSSES:
        sim.set_faults(loss=loss)
        rounds: list[float] = []
        for trial in range(trials):
            writer = writers.randrange(n)
            key = f"loss{loss}-trial{trial}"
            replica = sim.replica_id(writer)
            sim.update(writer, key, GCounter, lambda c: c.increment(replica))  # noqa: B023
            start = sim.now
            if sim.run_until(lambda: sim.holders(key) == n, MAX_SPREAD_SECONDS):  # noqa: B023
                rounds.append((sim.now - start) / config.gossip_interval)
            else:
                rounds.append(math.inf)
                result.notes.append(f"N={n} loss={loss}: trial {trial} did not reach everyone")
            sim.run(drain)
        tag = f"{n}_loss{round(loss * 100)}"
        median = statistics.median(rounds)
        result.figure(
            Figure(
                f"rounds_{tag}",
                median,
                "rounds",
                best=min(rounds),
                note=f"median of {trials} updates (max {max(rounds):.1f}), {loss:.0%} loss",
            )
        )
        target = None
        if n == 1_000 and loss == 0.0:
            target = TARGET_ROUNDS_AT_1000 / push_pull_bound(n)
        result.ratio(
            f"rounds_over_push_bound_{tag}",
            f"rounds_{tag}",
            f"push_bound_{n}",
            note="measured rounds / (log2 N + ln N)",
        )
        result.ratio(
            f"rounds_over_push_pull_bound_{tag}",
            f"rounds_{tag}",
            f"push_pull_bound_{n}",
            target=target,
            note="measured rounds / (log3 N + ln ln N)"
            + ("; target: at most 10 rounds" if target is not None else ""),
        )
    result.figure(
        Figure(f"formation_seconds_{n}", formed, "s", note="real time to build the cluster")
    )

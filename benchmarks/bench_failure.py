"""Failure detection: time until a crashed node is dead everywhere, and false positives.

Each cluster runs the real engine in the simulator (:mod:`crdtgossip.testing.simulation`)
on virtual time, with the LAN preset (a probe every second, ``suspicion_mult`` 4),
started formed (every node knows every other; nothing queued). The engines' membership
events are recorded as the simulator collects them.

*Detection*: a 100-node cluster settles for a while, then one node (drawn by the seeded
generator) crashes; the figure is the virtual time until every other node has marked it
dead (its own suspicion timeout or the dead rumor, whichever came first), over a few
seeds: the median and the maximum. Beside it, memberlist's bound at the same settings:
a probe period to notice the crash, plus the suspicion timeout, whose minimum is
``suspicion_mult * max(1, log10 N) * probe_interval`` (reached when enough other
members confirm the suspicion, as they do in a large cluster) and whose maximum is
``suspicion_max_timeout_mult`` times that (a lonely suspicion). The ratios divide the
measured time by both bounds: between them means Lifeguard behaves as specified.

*False positives*: a cluster under 10% datagram loss runs for a while with no failure
at all; every ``MemberDead`` event about a member that is running is a false positive
(target: none). Suspicions that were refuted in time are counted too, for reading.
The full run keeps 100 nodes at 10% loss for one virtual hour (issue 5), a few minutes
of real time here.
Nothing is timed: the figures are virtual seconds and counts.
"""

from __future__ import annotations

import random
import statistics

from benchmarks._result import BenchResult, Figure
from crdtgossip.config import GossipConfig
from crdtgossip.protocol import Engine, Event, MemberDead, MemberSuspect
from crdtgossip.protocol.suspicion import suspicion_min_timeout
from crdtgossip.testing.simulation import Simulation

__all__ = ["run"]

#: Cluster size of the detection runs (both modes: it takes a few seconds).
DETECT_NODES = 100
#: Seeds of the detection runs; odd, so the median is one of them.
DETECT_SEEDS = (2026, 2027, 2028, 2029, 2030)
QUICK_DETECT_SEEDS = (2026,)
#: Virtual seconds the cluster runs before the crash.
SETTLE_SECONDS = 10.0
#: Virtual seconds a detection may take before it counts as failed: past the longest
#: suspicion timeout (48 s here) with room for the dead rumor to spread.
MAX_DETECT_SECONDS = 300.0
#: False-positive run: nodes, virtual seconds, datagram loss.
FP_NODES = 100
FP_SECONDS = 3600.0
QUICK_FP_NODES = 20
QUICK_FP_SECONDS = 300.0
FP_LOSS = 0.1
FP_SEED = 2026


class _Recorder:
    """Wraps one engine's ``take_events`` and keeps its suspect and dead events."""

    def __init__(self, sim: Simulation, index: int, log: list[tuple[float, int, Event]]) -> None:
        self._sim = sim
        self._index = index
        self._log = log
        self._take = sim.engine(index).take_events

    def __call__(self) -> list[Event]:
        events = self._take()
        for event in events:
            if isinstance(event, MemberDead | MemberSuspect):
                self._log.append((self._sim.now, self._index, event))
        return events


def _record(sim: Simulation) -> list[tuple[float, int, Event]]:
    """Record every node's suspect and dead events: (virtual time, observer, event)."""
    log: list[tuple[float, int, Event]] = []
    for i in range(sim.size):
        engine: Engine = sim.engine(i)
        setattr(engine, "take_events", _Recorder(sim, i, log))  # noqa: B010
    return log


def _detect(n: int, seed: int, config: GossipConfig) -> float:
    """Virtual seconds from a crash until every other node marks the victim dead."""
    sim = Simulation(n, seed, config, formed=True)
    log = _record(sim)
    sim.run(SETTLE_SECONDS)
    victim = random.Random(f"{seed}-victim").randrange(n)
    victim_id = sim.node_id(victim)
    sim.crash(victim)
    start = sim.now
    observers: set[int] = set()
    seen = len(log)

    def everyone_knows() -> bool:
        nonlocal seen
        for _, observer, event in log[seen:]:
            if isinstance(event, MemberDead) and event.member.node_id == victim_id:
                observers.add(observer)
        seen = len(log)
        return len(observers) == n - 1

    if not sim.run_until(everyone_knows, MAX_DETECT_SECONDS):
        return float("inf")
    return sim.now - start


def run(quick: bool) -> BenchResult:
    """Run the failure-detection benchmark; ``quick`` uses one seed and a short FP run."""
    config = GossipConfig.lan()
    seeds = QUICK_DETECT_SEEDS if quick else DETECT_SEEDS
    fp_nodes = QUICK_FP_NODES if quick else FP_NODES
    fp_seconds = QUICK_FP_SECONDS if quick else FP_SECONDS
    n = DETECT_NODES
    result = BenchResult(
        title=f"Failure detection: a crash seen dead by all {n} nodes, against memberlist's "
        f"bounds; false positives at {FP_LOSS:.0%} loss",
        params={
            "quick": quick,
            "detect_nodes": n,
            "detect_seeds": ",".join(str(seed) for seed in seeds),
            "settle_seconds": SETTLE_SECONDS,
            "fp_nodes": fp_nodes,
            "fp_seconds": fp_seconds,
            "fp_loss": FP_LOSS,
            "fp_seed": FP_SEED,
            "probe_interval": config.probe_interval,
            "suspicion_mult": config.suspicion_mult,
            "suspicion_max_timeout_mult": config.suspicion_max_timeout_mult,
        },
    )
    _measure_detection(result, n, seeds, config)
    _measure_false_positives(result, fp_nodes, fp_seconds, config)
    if fp_seconds < 3600:
        result.notes.append(
            f"False positives: N = {fp_nodes} for {fp_seconds / 60:.0f} virtual minutes, "
            "not one hour (a quick run)."
        )
    return result


def _measure_detection(
    result: BenchResult, n: int, seeds: tuple[int, ...], config: GossipConfig
) -> None:
    times = [_detect(n, seed, config) for seed in seeds]
    for seed, seconds in zip(seeds, times, strict=True):
        if seconds == float("inf"):
            result.notes.append(f"seed {seed}: the crash was not seen dead everywhere")
    minimum = suspicion_min_timeout(config.suspicion_mult, n, config.probe_interval)
    maximum = config.suspicion_max_timeout_mult * minimum
    result.figure(
        Figure(
            "detect_seconds",
            statistics.median(times),
            "s",
            best=min(times),
            note=f"median of {len(times)} seeds (max {max(times):.1f} s), virtual time",
        )
    )
    result.figure(Figure("detect_seconds_max", max(times), "s", note="worst seed"))
    result.figure(
        Figure(
            "bound_min_seconds",
            config.probe_interval + minimum,
            "s",
            note="probe_interval + suspicion_mult * max(1, log10 N) * probe_interval",
        )
    )
    result.figure(
        Figure(
            "bound_max_seconds",
            config.probe_interval + maximum,
            "s",
            note="probe_interval + suspicion_max_timeout_mult * suspicion minimum",
        )
    )
    result.ratio(
        "detect_over_min_bound",
        "detect_seconds",
        "bound_min_seconds",
        note="median detection / (probe period + suspicion minimum)",
    )
    result.ratio(
        "detect_over_max_bound",
        "detect_seconds",
        "bound_max_seconds",
        note="median detection / (probe period + suspicion maximum)",
    )
    result.ratio(
        "worst_detect_over_max_bound",
        "detect_seconds_max",
        "bound_max_seconds",
        note="worst seed / (probe period + suspicion maximum)",
    )


def _measure_false_positives(
    result: BenchResult, n: int, seconds: float, config: GossipConfig
) -> None:
    sim = Simulation(n, FP_SEED, config, formed=True)
    log = _record(sim)
    sim.set_faults(loss=FP_LOSS)
    sim.run(seconds)
    dead_events = [event for _, _, event in log if isinstance(event, MemberDead)]
    suspect_events = [event for _, _, event in log if isinstance(event, MemberSuspect)]
    dead_nodes = {event.member.node_id for event in dead_events}
    what = f"N = {n}, {seconds / 60:.0f} virtual minutes at {FP_LOSS:.0%} loss, no failure"
    result.figure(Figure("fp_nodes", n, "count", note="nodes in the false-positive run"))
    result.figure(
        Figure(
            "false_dead_nodes", len(dead_nodes), "count", note=f"running nodes marked dead; {what}"
        )
    )
    result.figure(
        Figure(
            "false_dead_events",
            len(dead_events),
            "count",
            note="MemberDead events about running nodes, all observers",
        )
    )
    result.figure(
        Figure(
            "suspect_events",
            len(suspect_events),
            "count",
            note="MemberSuspect events, all observers (refuted unless counted dead above)",
        )
    )
    result.ratio(
        "false_dead_fraction",
        "false_dead_nodes",
        "fp_nodes",
        target=0.0,
        note="running nodes ever marked dead / N; target: none",
    )

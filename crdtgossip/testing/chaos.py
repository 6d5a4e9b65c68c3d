"""Chaos scenarios: seeded mixed faults on a simulated cluster, and their invariants.

:func:`run_chaos` runs one scenario on a :class:`~crdtgossip.testing.simulation.Simulation`
and checks the invariants (convergence within a bound, no write lost, none invented, no
acknowledged quorum write lost); :func:`soak` runs many; :func:`main` is the command
line of ``python -m crdtgossip.testing.chaos``::

    python -m crdtgossip.testing.chaos --replay 1234
    python -m crdtgossip.testing.chaos --soak 10000
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Final, TextIO

from crdtgossip.config import GossipConfig
from crdtgossip.consistency import Majority
from crdtgossip.crdts import GCounter, ORSet
from crdtgossip.testing.simulation import Simulation

__all__ = [
    "CHAOS_MAX_NODES",
    "CHAOS_MIN_NODES",
    "ChaosOutcome",
    "main",
    "replay_command",
    "run_chaos",
    "soak",
]

CHAOS_MIN_NODES: Final = 3
CHAOS_MAX_NODES: Final = 20
"""Cluster sizes of :func:`run_chaos` (issue 5: 3 to 20 nodes)."""

_CHAOS_CONFIG: Final = dataclasses.replace(
    GossipConfig.local(), gossip_interval=0.2, push_pull_interval=5.0, reconnect_interval=5.0
)
"""Chaos scenarios use the local preset with LAN gossip (every 200 ms, not 100 ms: half
the ticks) and anti-entropy and reconnection every 5 s instead of 15 s: the same
protocol, but a scenario costs less real time per virtual second and needs fewer
virtual seconds to repair what the faults broke."""

_CHAOS_CHECK_INTERVAL: Final = 0.5
"""Virtual seconds between two convergence checks in a chaos scenario: a check compares
every node's table and store, which costs more than the protocol work of a few gossip
intervals in a small cluster."""

_CHAOS_CONVERGENCE_PUSH_PULLS: Final = 6
"""The bound checked by :func:`run_chaos`: after the last fault, everything converges
within this many anti-entropy intervals plus the longest
suspicion timeout. One interval gives each node one exchange with a random peer; a
healed partition first needs a reconnection (``reconnect_interval``, as long) and a
refutation of the deaths each side declared, then the data exchange."""

_COUNTER_KEY: Final = "chaos-counter"
_SET_KEY: Final = "chaos-set"
_DELETED_KEY: Final = "chaos-deleted"
"""A set that is written and deleted: see ``_check_deletes``."""

_CHAOS_ACTIONS: Final = (
    *("increment", "increment", "add", "majority", "put", "delete"),
    *("partition", "heal", "crash", "restart", "leave"),
)
"""What a chaos step may do, drawn uniformly (counter increments twice as often)."""

_CHAOS_MAJORITY: Final = Majority(timeout=2.0)
"""The level of the chaos scenarios' quorum writes: ten gossip intervals of the chaos
configuration, so a write fails under a partition and succeeds on a lossy network."""


@dataclass(slots=True)
class ChaosOutcome:
    """What one :func:`run_chaos` scenario did and whether its invariants held.

    Attributes:
        seed: the scenario's seed; :func:`replay_command` replays it.
        nodes: the cluster size.
        actions: the faults and writes, in order, one short line each.
        failures: the invariants that did not hold (empty when all held).
        settle_seconds: virtual seconds from the end of the faults to convergence
            (``nan`` when it did not converge).
        bound_seconds: the bound convergence had to meet.
    """

    seed: int
    nodes: int
    actions: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    settle_seconds: float = math.nan
    bound_seconds: float = math.nan

    @property
    def ok(self) -> bool:
        """Whether every invariant held."""
        return not self.failures

    def describe(self) -> str:
        """A report of a failed scenario: seed, faults, failures and the replay command."""
        lines = [
            f"chaos scenario seed={self.seed} nodes={self.nodes}: "
            + ("ok" if self.ok else "FAILED"),
            *(f"  did: {action}" for action in self.actions),
            *(f"  broke: {failure}" for failure in self.failures),
            f"  replay: {replay_command(self.seed)}",
        ]
        return "\n".join(lines)


def replay_command(seed: int) -> str:
    """The one-line shell command that replays chaos scenario ``seed``."""
    return f"python -m crdtgossip.testing.chaos --replay {seed}"


@dataclass(slots=True)
class _Lineage:
    """Writes of one node's data lineage (ended by a restart without state)."""

    increments: int = 0
    elements: set[str] = field(default_factory=set)
    #: Elements put in the deleted key, each with whether a later delete saw it.
    puts: dict[str, bool] = field(default_factory=dict)
    #: (Node 0's lineage only.) The last put or delete of the deleted key was a delete
    #: that saw every element any node held.
    all_deleted: bool = False
    last_seen: int = 0
    wiped: int = 0
    """Restarts of this node without its state so far, across lineages."""


@dataclass(frozen=True, slots=True)
class _QuorumWrite:
    """A Majority write of one set element, and what every node had lost before it."""

    node: int
    request: int
    element: str
    needed: int
    wiped_before: tuple[int, ...]


def _settle_bound(config: GossipConfig, nodes: int) -> float:
    """Virtual seconds within which a healed, fault-free cluster must converge."""
    scale = max(1.0, math.log10(nodes))
    suspicion = config.suspicion_mult * scale * config.probe_interval
    longest_suspicion = suspicion * config.suspicion_max_timeout_mult
    interval = max(config.push_pull_interval, config.reconnect_interval)
    return _CHAOS_CONVERGENCE_PUSH_PULLS * interval + longest_suspicion


def run_chaos(seed: int, *, nodes: int | None = None) -> ChaosOutcome:
    """Run one seeded mixed-fault scenario and check the invariants.

    The cluster (3 to 20 nodes, small ones far more often: the size is 3 + 17u³
    rounded, u uniform) forms; then, under datagram loss, delay, duplication and
    reordering, a few steps each do one thing: write a counter or set on a random
    node (some set writes at :class:`~crdtgossip.Majority`), cut a random partition,
    heal it, crash a node, restart one with or without its state, or have one leave,
    and let a few virtual seconds pass.
    Finally the faults stop, the network heals and the cluster must converge within
    a bound of anti-entropy intervals (see ``_settle_bound``).

    Invariants: the cluster converges in data and membership
    (:meth:`Simulation.converged`); no node's counter ever decreases within one data
    lineage (a life, or several joined by restarts with state); every write of a
    lineage still running at the end is in the final state (none lost); the counter
    never exceeds the increments made (none invented); every acknowledged
    :class:`~crdtgossip.Majority` write is in the final state, unless as many nodes as
    it needed have since lost their state or are down (see ``_check_quorum_writes``).

    Args:
        seed: selects everything; the same seed replays the same scenario.
        nodes: force the cluster size instead of drawing it.

    Returns:
        The outcome; :meth:`ChaosOutcome.describe` reports a failure.
    """
    rng = random.Random(f"crdtgossip-chaos-{seed}")
    span = CHAOS_MAX_NODES - CHAOS_MIN_NODES
    size = nodes if nodes is not None else CHAOS_MIN_NODES + int(span * rng.random() ** 3 + 0.5)
    high_delay = rng.choice((0.002, 0.01, 0.05))
    loss = rng.choice((0.0, 0.05, 0.2))
    duplicate = rng.choice((0.0, 0.05, 0.2))
    reorder = rng.choice((0.0, 0.1))
    outcome = ChaosOutcome(seed, size)
    outcome.actions.append(
        f"network loss={loss} delay=(0.0005, {high_delay}) duplicate={duplicate} reorder={reorder}"
    )
    sim = Simulation(size, seed, _CHAOS_CONFIG, delay=(0.0005, high_delay))
    bound = _settle_bound(_CHAOS_CONFIG, size)
    outcome.bound_seconds = bound
    # The cluster forms on a sound network: under 20% loss SWIM's failure detector
    # keeps suspecting someone somewhere, so "everyone sees everyone alive" need not
    # hold at any one instant until the loss stops.
    if not sim.run_until(sim.converged, bound, check_interval=_CHAOS_CHECK_INTERVAL):
        outcome.failures.append(f"the cluster did not form within {bound:.0f} s")
        return outcome
    sim.set_faults(loss=loss, duplicate=duplicate, reorder=reorder)
    lineages = [_Lineage() for _ in range(size)]
    quorum_writes: list[_QuorumWrite] = []
    ever_incremented = 0
    for step in range(rng.randint(3, 8)):
        action = _chaos_action(sim, rng, lineages, quorum_writes, step)
        outcome.actions.append(f"t={sim.now:.2f} {action}")
        if action.startswith("increment"):
            ever_incremented += int(action.rsplit(" ", 1)[1])
        sim.run(rng.uniform(0.2, 3.0))
        _check_counters(sim, lineages, outcome)
    sim.heal()
    sim.set_faults(loss=0.0, duplicate=0.0, reorder=0.0)
    outcome.actions.append(f"t={sim.now:.2f} heal, faults stop")
    start = sim.now
    if sim.run_until(sim.converged, bound, check_interval=_CHAOS_CHECK_INTERVAL):
        outcome.settle_seconds = sim.now - start
    else:
        outcome.failures.append(f"no convergence within {bound:.0f} virtual s after healing")
    _check_counters(sim, lineages, outcome)
    _check_final(sim, lineages, ever_incremented, outcome)
    _check_quorum_writes(sim, lineages, quorum_writes, outcome)
    _check_deletes(sim, lineages, outcome)
    return outcome


def _chaos_action(
    sim: Simulation,
    rng: random.Random,
    lineages: list[_Lineage],
    quorum_writes: list[_QuorumWrite],
    step: int,
) -> str:
    """Do one random thing to the cluster; return what, in a few words."""
    size = sim.size
    up = [i for i in range(size) if sim.running(i)]
    down = [i for i in range(size) if not sim.running(i) and not _leaving(sim, i)]
    choice = rng.choice(_CHAOS_ACTIONS)
    if choice == "crash" and len(up) > 1:
        i = rng.choice(up)
        sim.crash(i)
        return f"crash n{i}"
    if choice == "leave" and len(up) > 1:
        i = rng.choice(up)
        sim.leave(i)
        return f"leave n{i}"
    if choice == "restart" and down:
        i = rng.choice(down)
        keep = rng.random() < 0.5
        sim.restart(i, keep_state=keep)
        if not keep:
            lineages[i] = _Lineage(wiped=lineages[i].wiped + 1)
        return f"restart n{i} keep_state={keep}"
    if choice == "partition" and size > 1:
        order = list(range(size))
        rng.shuffle(order)
        cut = rng.randint(1, size - 1)
        sim.partition(order[:cut], order[cut:])
        return f"partition {sorted(order[:cut])} | {sorted(order[cut:])}"
    if choice == "heal":
        sim.heal()
        return "heal"
    i = rng.choice(up)
    if choice == "majority":
        element = f"m{step}-n{i}"
        before = tuple(lineage.wiped for lineage in lineages)
        request = sim.write(
            i, _SET_KEY, ORSet, lambda s: s.add(element, sim.replica_id(i)), _CHAOS_MAJORITY
        )
        needed = _CHAOS_MAJORITY.required(sim.engine(i).quorum_members())
        quorum_writes.append(_QuorumWrite(i, request, element, needed, before))
        return f"majority add {element} on n{i} (needs {needed})"
    if choice == "put":
        element = f"p{step}-n{i}"
        sim.update(i, _DELETED_KEY, ORSet, lambda s: s.add(element, sim.replica_id(i)))
        lineages[i].puts[element] = False
        lineages[0].all_deleted = False
        return f"put {element} on n{i}"
    if choice == "delete":
        seen = sim.get(i, _DELETED_KEY, ORSet).value
        anywhere = frozenset().union(*(sim.get(j, _DELETED_KEY, ORSet).value for j in range(size)))
        sim.delete(i, _DELETED_KEY)
        for lineage in lineages:
            for element in seen & lineage.puts.keys():
                lineage.puts[element] = True
        lineages[0].all_deleted = seen >= anywhere
        return f"delete on n{i} (it held {len(seen)} of the {len(anywhere)} puts anywhere)"
    if choice == "add":
        element = f"e{step}-n{i}"
        sim.update(i, _SET_KEY, ORSet, lambda s: s.add(element, sim.replica_id(i)))
        lineages[i].elements.add(element)
        return f"add {element} on n{i}"
    amount = rng.randint(1, 5)
    sim.update(i, _COUNTER_KEY, GCounter, lambda c: c.increment(sim.replica_id(i), amount))
    lineages[i].increments += amount
    return f"increment on n{i} by {amount}"


def _leaving(sim: Simulation, i: int) -> bool:
    return sim.leaving(i)


def _check_counters(sim: Simulation, lineages: list[_Lineage], outcome: ChaosOutcome) -> None:
    """No running node's counter went down within its lineage."""
    for i in range(sim.size):
        if not sim.running(i):
            continue
        value = sim.get(i, _COUNTER_KEY, GCounter).value
        lineage = lineages[i]
        if value < lineage.last_seen:
            outcome.failures.append(
                f"t={sim.now:.2f} n{i}'s counter went down from {lineage.last_seen} to {value}"
            )
        lineage.last_seen = max(lineage.last_seen, value)


def _check_final(
    sim: Simulation, lineages: list[_Lineage], ever_incremented: int, outcome: ChaosOutcome
) -> None:
    """Writes of surviving lineages are all there, and nothing was invented."""
    live = [i for i in range(sim.size) if sim.running(i)]
    if not live:
        return
    counter = sim.get(live[0], _COUNTER_KEY, GCounter).value
    elements = sim.get(live[0], _SET_KEY, ORSet).value
    survived = sum(lineages[i].increments for i in live)
    if counter < survived:
        outcome.failures.append(f"increments lost: counter {counter} < {survived} made by live")
    if counter > ever_incremented:
        outcome.failures.append(f"counter {counter} > {ever_incremented} increments ever made")
    for i in live:
        missing = lineages[i].elements - elements
        if missing:
            outcome.failures.append(f"n{i}'s set adds lost: {sorted(missing)}")


def _check_quorum_writes(
    sim: Simulation,
    lineages: list[_Lineage],
    quorum_writes: list[_QuorumWrite],
    outcome: ChaosOutcome,
) -> None:
    """No acknowledged Majority write is lost.

    An acknowledged write was merged by ``needed`` members, each of which keeps it for
    good unless it later restarts without its state, or is down at the end. So while
    fewer than ``needed`` nodes did either, at least one member that merged the write
    is running with it, and the converged cluster must hold it. (When as many members
    lost their state as a majority counts, a write can be lost, as it can with any
    quorum system whose disks are wiped; that is not checked.)
    """
    live = [i for i in range(sim.size) if sim.running(i)]
    if not live:
        return
    elements = sim.get(live[0], _SET_KEY, ORSet).value
    for write in quorum_writes:
        result = sim.quorum_result(write.node, write.request)
        if result is None or not result.ok:
            outcome.actions.append(f"majority add {write.element}: not acknowledged")
            continue
        lost = sum(
            1
            for j, lineage in enumerate(lineages)
            if lineage.wiped > write.wiped_before[j] or not sim.running(j)
        )
        verdict = "acknowledged"
        if lost < write.needed and write.element not in elements:
            outcome.failures.append(
                f"acknowledged majority add {write.element} lost ({lost} of the nodes "
                f"lost their state or are down, fewer than the {write.needed} that merged it)"
            )
            verdict = "acknowledged, LOST"
        outcome.actions.append(f"majority add {write.element}: {verdict}")


def _check_deletes(sim: Simulation, lineages: list[_Lineage], outcome: ChaosOutcome) -> None:
    """Deletes remove what they saw and nothing else.

    Every element put by a lineage still running that no later delete saw (a delete
    by a node whose state held it) is in the final state: update wins, and nothing
    else deletes. An element some delete saw may be there too (it met a write the
    delete had not seen in one state: the documented rule). And when the last put or
    delete was a delete that saw every element any node held (down ones included),
    the key is gone everywhere, however late a lagging member came back.
    """
    live = [i for i in range(sim.size) if sim.running(i)]
    if not live:
        return
    final = sim.get(live[0], _DELETED_KEY, ORSet).value
    unseen = {e for i in live for e, seen in lineages[i].puts.items() if not seen}
    if missing := unseen - final:
        outcome.failures.append(f"puts no delete saw, lost: {sorted(missing)}")
    if lineages[0].all_deleted and final:
        outcome.failures.append(f"a delete that saw every put left {sorted(final)}")


def soak(count: int, *, first_seed: int = 0, out: TextIO | None = None) -> list[ChaosOutcome]:
    """Run ``count`` chaos scenarios from ``first_seed`` on; print each failure.

    Args:
        count: how many scenarios.
        first_seed: the seed of the first; the others follow in order.
        out: where to print (a text stream; ``sys.stdout`` when ``None``).

    Returns:
        The failed outcomes (empty when every scenario held).
    """
    stream = out if out is not None else sys.stdout
    failed: list[ChaosOutcome] = []
    started = time.perf_counter()
    settle_max = 0.0
    for seed in range(first_seed, first_seed + count):
        outcome = run_chaos(seed)
        if not outcome.ok:
            failed.append(outcome)
            print(outcome.describe(), file=stream, flush=True)
        elif outcome.settle_seconds > settle_max:
            settle_max = outcome.settle_seconds
    elapsed = time.perf_counter() - started
    print(
        f"{count} chaos scenarios (seeds {first_seed}..{first_seed + count - 1}): "
        f"{count - len(failed)} held, {len(failed)} failed; slowest convergence after "
        f"healing {settle_max:.1f} virtual s; {elapsed:.1f} s",
        file=stream,
    )
    return failed


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: replay one chaos scenario or soak many.

    Returns:
        0 when every scenario held, 1 when one failed.
    """
    parser = argparse.ArgumentParser(
        prog="python -m crdtgossip.testing.chaos",
        description="Replay a seeded chaos scenario, or run many (a soak).",
    )
    mode = parser.add_mutually_exclusive_group(required=True)
    mode.add_argument("--replay", type=int, metavar="SEED", help="run one scenario verbosely")
    mode.add_argument("--soak", type=int, metavar="COUNT", help="run COUNT scenarios")
    parser.add_argument("--first-seed", type=int, default=0, help="first seed of a soak")
    args = parser.parse_args(argv)
    if args.replay is not None:
        outcome = run_chaos(args.replay)
        print(outcome.describe())
        if outcome.ok:
            print(f"  converged {outcome.settle_seconds:.2f} virtual s after healing")
        return 0 if outcome.ok else 1
    return 0 if not soak(args.soak, first_seed=args.first_seed) else 1


if __name__ == "__main__":
    sys.exit(main())

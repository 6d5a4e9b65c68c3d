"""Acknowledged delivery against the push gossip it replaced, and real UDP convergence.

Two parts of ``bench_dissemination`` (issue 13):

* *push vs acked*: seeded simulator runs (:func:`crdtgossip.testing.spread.spread`) of
  formed clusters with anti-entropy pushed out of reach, so what arrives was pushed.
  Each setting (preset, N, writers on one key or on distinct keys, loss) runs over
  :data:`SEEDS` seeds twice: with today's acknowledged delivery, and with the push it
  replaced (local writes into the transmit-limited gossip queue, relayed by receivers;
  :func:`legacy_push` puts it back for the run). Figures: the share of runs in which
  every node got every write, the median gossip rounds until then, and the bytes the
  writes cost per write per receiving member (the run's bytes minus those of the same
  seed's run without writes, divided by writes x (N - 1)). The bytes ratio (acked over
  the ``lan`` preset's push) has the issue's target: at most 1.
* *real UDP*: 5 keyed :class:`~crdtgossip.node.Node` objects on loopback with the stock
  ``local`` preset each increment one shared key at the same moment; the figure is the
  share of runs converged within 1 s (the issue's goal: 100 of 100) and the slowest
  run. Wall-clock, so a figure only, never compared.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import statistics
import time
from collections.abc import Iterator

from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter
from crdtgossip.config import GossipConfig
from crdtgossip.node import Node
from crdtgossip.protocol._engine_data import DataEngine
from crdtgossip.security import Keyring
from crdtgossip.testing.spread import no_repair, spread

__all__ = ["compare_push", "legacy_push", "udp_convergence"]

#: Seeds per setting (--quick: fewer).
SEEDS = 20
QUICK_SEEDS = 3
#: Cluster sizes compared (the simulator runs them all in seconds).
SIZES = (5, 50)
QUICK_SIZES = (5,)
#: (writers, all on one key): one write; five on distinct keys; twenty on one key.
WRITES = ((1, True), (5, False), (20, True))
LOSSES = (0.0, 0.1)
PRESETS = ("local", "lan")
#: Real UDP runs (the issue's goal counts 100) and the convergence goal in seconds.
UDP_RUNS = 100
QUICK_UDP_RUNS = 5
UDP_GOAL_SECONDS = 1.0
#: The most a UDP run may take before it counts as not converged (a guard).
UDP_PATIENCE = 20.0


@contextlib.contextmanager
def legacy_push() -> Iterator[None]:
    """Send local writes as the engine did before acknowledged delivery, meanwhile."""
    acked = DataEngine._deliver

    def push(self: DataEngine, key: str, delta: object, payload: bytes) -> None:
        self._queue_delta(key, delta, payload, frozenset())  # type: ignore[arg-type]

    DataEngine._deliver = push  # type: ignore[method-assign]
    try:
        yield
    finally:
        DataEngine._deliver = acked  # type: ignore[method-assign]


def _setting(
    n: int, config: GossipConfig, writers: int, one_key: bool, loss: float, seeds: int
) -> tuple[float, float, float]:
    """(share delivered, median rounds, bytes per write per member) over ``seeds``."""
    delivered, rounds, costs = 0, [], []
    for seed in range(seeds):
        run = spread(n, seed, config, writers=writers, one_key=one_key, loss=loss)
        delivered += run.delivered
        rounds.append(run.rounds)
        if loss == 0.0:
            idle = spread(n, seed, config, writers=0)
            costs.append((run.bytes_sent - idle.bytes_sent) / (writers * (n - 1)))
    cost = statistics.median(costs) if costs else math.nan
    return delivered / seeds, statistics.median(rounds), cost


def compare_push(result: BenchResult, quick: bool) -> None:
    """Record the push-vs-acked figures and the bytes ratios (see the module doc)."""
    seeds = QUICK_SEEDS if quick else SEEDS
    for preset in PRESETS:
        config = no_repair(getattr(GossipConfig, preset)())
        for n in QUICK_SIZES if quick else SIZES:
            for writers, one_key in WRITES:
                shape = f"{writers}w{'1k' if one_key else 'dk'}"
                for loss in LOSSES:
                    for mode in ("acked", "push"):
                        with contextlib.ExitStack() as stack:
                            if mode == "push":
                                stack.enter_context(legacy_push())
                            share, rounds, cost = _setting(n, config, writers, one_key, loss, seeds)
                        tag = f"{mode}_{preset}_{n}_{shape}_loss{round(loss * 100)}"
                        what = (
                            f"{seeds} seeds, {writers} writer(s) on "
                            f"{'one key' if one_key else 'distinct keys'}, {loss:.0%} loss, "
                            "anti-entropy off"
                        )
                        result.figure(Figure(f"delivered_{tag}", share, "share", note=what))
                        result.figure(Figure(f"rounds_{tag}", rounds, "rounds", note="median"))
                        if loss == 0.0:
                            result.figure(
                                Figure(
                                    f"bytes_{tag}",
                                    cost,
                                    "bytes",
                                    note="median bytes per write per receiving member",
                                )
                            )
    # The bytes of every preset over lan push's: once every figure is in.
    for preset in PRESETS:
        for n in QUICK_SIZES if quick else SIZES:
            for writers, one_key in WRITES:
                tag = f"{n}_{writers}w{'1k' if one_key else 'dk'}_loss0"
                result.ratio(
                    f"bytes_acked_{preset}_over_push_lan_{tag}",
                    f"bytes_acked_{preset}_{tag}",
                    f"bytes_push_lan_{tag}",
                    target=1.0,
                    note="bytes per write per member, acked over today's lan push",
                )


async def _increment(node: Node) -> None:
    replica = node.replica_id
    await node.update("hits", GCounter, lambda c: c.increment(replica))


async def _udp_run(index: int, keyring: Keyring) -> float:
    """Seconds from the concurrent writes until all 5 nodes hold all 5 increments."""
    config = GossipConfig.local()
    nodes = [Node("n0", "127.0.0.1:0", keyring=keyring, config=config, seed=index * 10)]
    try:
        await nodes[0].start()
        for i in range(1, 5):
            node = Node(
                f"n{i}",
                "127.0.0.1:0",
                seeds=[nodes[0].address],
                keyring=keyring,
                config=config,
                seed=index * 10 + i,
            )
            await node.start()
            nodes.append(node)
        ids = {node.node_id for node in nodes}
        deadline = time.monotonic() + UDP_PATIENCE
        while not all(
            {m.node_id for m in node.members() if str(m.status) == "alive"} == ids for node in nodes
        ):
            if time.monotonic() > deadline:
                return math.inf
            await asyncio.sleep(0.01)
        started = time.monotonic()
        await asyncio.gather(*(_increment(node) for node in nodes))
        while True:
            values = [(await node.get("hits", GCounter)).value for node in nodes]
            if values == [5] * 5:
                return time.monotonic() - started
            if time.monotonic() - started > UDP_PATIENCE:
                return math.inf
            await asyncio.sleep(0.005)
    finally:
        for node in nodes:
            await node.stop()


def udp_convergence(result: BenchResult, quick: bool) -> None:
    """Record the real-UDP convergence figures (see the module doc)."""
    runs = QUICK_UDP_RUNS if quick else UDP_RUNS
    keyring = Keyring.generate()
    seconds = [asyncio.run(_udp_run(index, keyring)) for index in range(runs)]
    within = sum(s <= UDP_GOAL_SECONDS for s in seconds) / runs
    result.figure(
        Figure(
            "udp_5_keyed_one_key_converged_within_1s",
            within,
            "share",
            note=f"{runs} runs, stock local preset (goal: all)",
        )
    )
    result.figure(
        Figure(
            "udp_5_keyed_one_key_seconds",
            statistics.median(seconds),
            "s",
            best=min(seconds),
            note=f"median; slowest {max(seconds):.3f} s",
        )
    )

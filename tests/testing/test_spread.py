"""Issue 13's goals as seeded runs: with anti-entropy off, every write reaches every member.

Sizes stay small enough for CI (N = 50 at most; larger clusters are in
``benchmarks/bench_dissemination.py``).
"""

from __future__ import annotations

import math

import pytest

from crdtgossip import GCounter
from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError
from crdtgossip.protocol._engine_data import DataEngine
from crdtgossip.testing.simulation import Simulation
from crdtgossip.testing.spread import NO_REPAIR_INTERVAL, no_repair, spread

PRESETS = {
    "local": GossipConfig.local(),
    "lan": GossipConfig.lan(),
    "wan": GossipConfig.wan(),
}


def test_no_repair_puts_anti_entropy_out_of_reach() -> None:
    config = no_repair(GossipConfig.local())
    assert config.push_pull_interval == config.reconnect_interval == NO_REPAIR_INTERVAL
    assert config.gossip_interval == GossipConfig.local().gossip_interval


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("nodes", [2, 5, 50])
@pytest.mark.parametrize("writers", [1, 5, 20])
@pytest.mark.parametrize("one_key", [True, False], ids=["one-key", "distinct-keys"])
def test_without_loss_every_write_reaches_every_member_by_push(
    preset: str, nodes: int, writers: int, one_key: bool
) -> None:
    config = no_repair(PRESETS[preset])
    for seed in range(5 if nodes < 50 else 2):
        result = spread(nodes, seed, config, writers=writers, one_key=one_key, window=3.0)
        assert result.delivered, (preset, nodes, writers, one_key, seed)


@pytest.mark.parametrize("nodes", [5, 50])
def test_at_ten_percent_loss_every_write_arrives_within_three_log2_n_rounds(nodes: int) -> None:
    config = no_repair(GossipConfig.local())
    bound = 3 * math.log2(nodes)
    for seed in range(8 if nodes < 50 else 2):
        for writers, one_key in ((1, True), (5, False), (20, True)):
            result = spread(nodes, seed, config, writers=writers, one_key=one_key, loss=0.1)
            assert result.rounds <= bound, (nodes, seed, writers, one_key, result.rounds)


@pytest.mark.parametrize("nodes", [5, 50])
def test_a_write_costs_fewer_bytes_per_member_than_lan_push_did(
    nodes: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = no_repair(GossipConfig.lan())

    def extra_bytes() -> float:
        # What the writes cost beyond the cluster's own traffic in the same window.
        written = spread(nodes, 4, config, writers=5, one_key=False)
        idle = spread(nodes, 4, config, writers=0)
        return (written.bytes_sent - idle.bytes_sent) / (5 * (nodes - 1))

    acked = extra_bytes()
    # Today's push, in the same run: local writes into the transmit-limited queue.
    monkeypatch.setattr(
        DataEngine,
        "_deliver",
        lambda self, key, delta, payload: self._queue_delta(key, delta, payload, frozenset()),
    )
    push = extra_bytes()
    assert 0 < acked < push


def test_a_crashed_member_is_retried_only_until_it_is_declared_dead() -> None:
    config = no_repair(GossipConfig.local())
    sim = Simulation(5, 3, config, formed=True)
    sim.run(1.0)
    sim.crash(4)
    sim.update(0, "k", GCounter, lambda c: c.increment(sim.replica_id(0)))
    assert sim.run_until(lambda: all(sim.get(i, "k", GCounter).value == 1 for i in range(4)), 1.0)
    writer = sim.engine(0)
    assert writer.stats()["delivery_pending"] == 1  # n4 has not acknowledged it
    assert sim.run_until(lambda: writer.stats()["delivery_pending"] == 0, 30.0)
    retries = writer.stats()["delivery_retransmits"]
    assert retries > 0
    sim.run(5.0)
    assert writer.stats()["delivery_retransmits"] == retries  # no one is retried any more


def test_spread_refuses_a_bad_window() -> None:
    with pytest.raises(ConfigError):
        spread(2, 0, GossipConfig.local(), window=0.0)
    with pytest.raises(ConfigError):
        spread(2, 0, GossipConfig.local(), writers=-1)

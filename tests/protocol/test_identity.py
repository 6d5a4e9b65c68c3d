"""One node id, one live process (crdtgossip/protocol/identity.py), on engines driven by
hand over the virtual network of :mod:`.cluster`."""

from __future__ import annotations

import logging
import random

import pytest

from crdtgossip.protocol import Engine, Status

from .cluster import VirtualCluster


def _impostor(
    cluster: VirtualCluster, name: str, twin: str, seed: str, *, incarnation: int = 0
) -> Engine:
    """Start an engine with node id ``twin`` listening at ``name``'s address."""
    engine = Engine(
        twin,
        cluster.address(name),
        cluster.config,
        random.Random(name),
        f"{name}-0",
        incarnation=incarnation,
    )
    cluster.engines[name] = engine
    cluster.events.setdefault(name, [])
    engine.join([cluster.address(seed)], cluster.now)
    cluster._collect(name)
    return engine


@pytest.mark.parametrize("seed", ["n0", "n1"], ids=["through-another-member", "to-the-holder"])
def test_a_joiner_with_the_id_of_a_live_member_is_refused(
    seed: str, caplog: pytest.LogCaptureFixture
) -> None:
    cluster = VirtualCluster(seed=14)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), 30.0)
    with caplog.at_level(logging.WARNING, logger="crdtgossip.identity"):
        _impostor(cluster, "x", "n1", seed)
        refused = cluster.run_until(lambda: cluster.engines["x"].refusal is not None, 10.0)
    assert refused
    refusal = cluster.engines["x"].refusal
    assert refusal is not None
    assert "'n1' is already used by a live member at n1.test:7000" in refusal
    assert "tried to join with node id 'n1'" in caplog.text
    assert cluster.engines["n1"].stats()["id_claims_refused"] >= 1
    # The holder keeps its id: the cluster ends up routing n1 to the holder.
    cluster.run(10.0)
    for name in names:
        rows = {m.node_id: m for m in cluster.engines[name].members()}
        assert rows["n1"].address == cluster.address("n1")
        assert rows["n1"].status is Status.ALIVE


def test_a_restart_on_a_new_address_whose_old_life_is_gone_joins() -> None:
    cluster = VirtualCluster(seed=14)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), 30.0)
    cluster.stop("n1")  # crashed: nobody answers for n1 at its old address
    engine = _impostor(cluster, "x", "n1", "n0", incarnation=5)
    cluster.run(30.0)
    assert engine.refusal is None
    assert engine.stats()["members_alive"] == 3

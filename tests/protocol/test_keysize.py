"""The per-key size limit: a write to a key at the limit, and a state past it, refused."""

from __future__ import annotations

from dataclasses import replace

import pytest

from crdtgossip.codec import encode
from crdtgossip.config import GossipConfig
from crdtgossip.crdts import GCounter, GSet
from crdtgossip.errors import ConfigError, OperationError
from crdtgossip.protocol.keysize import REMEASURE_FRACTION
from crdtgossip.protocol.messages import State, encode_frame, encode_message

from .cluster import VirtualCluster

LIMIT = 2_000


def _engine(limit: int = LIMIT) -> VirtualCluster:
    cluster = VirtualCluster(seed=2, config=replace(GossipConfig.local(), max_key_bytes=limit))
    cluster.add("a")
    return cluster


def test_writes_are_refused_once_the_key_reaches_the_limit() -> None:
    engine = _engine().engines["a"]
    written = 0

    def write(element: int) -> None:
        engine.check_room("set")
        state = engine.get("set")
        gset: GSet[str] = GSet() if state is None else state  # type: ignore[assignment]
        engine.commit_local("set", gset, gset.add(f"element-{element:06}"), 0.0)

    with pytest.raises(OperationError, match="max_key_bytes"):  # noqa: PT012
        for element in range(10_000):
            write(element)
            written += 1
    state = engine.get("set")
    assert state is not None
    size = len(encode(state))
    # Refused at the limit, or up to 1/16 of it early (between two measurements), and
    # never more than one write past it.
    assert LIMIT - LIMIT // REMEASURE_FRACTION <= size < LIMIT + 100
    assert written > 50


def test_overwrites_do_not_exhaust_the_estimate() -> None:
    # A counter's increments overcount the estimate; it is measured and goes on.
    engine = _engine().engines["a"]
    counter = GCounter()
    engine.restore("hits", counter)
    live = engine.get("hits")
    assert isinstance(live, GCounter)
    for _ in range(2_000):
        engine.check_room("hits")
        engine.commit_local("hits", live, live.increment("r"), 0.0)
    assert live.value == 2_000


def test_an_incoming_state_past_the_limit_is_refused_and_counted() -> None:
    engine = _engine().engines["a"]
    big: GSet[int] = GSet()
    for element in range(1_000):
        big.add(element)
    frame = encode_frame("peer", [encode_message(State("big", encode(big)))])
    engine.receive(frame, "peer.test:7000", 0.0)
    assert engine.get("big") is None
    assert engine.stats()["drop_key_too_large"] == 1


def test_the_limit_is_checked_in_the_config() -> None:
    with pytest.raises(ConfigError, match="max_key_bytes"):
        replace(GossipConfig(), max_key_bytes=0)
    assert GossipConfig().max_key_bytes == 64 * 1024 * 1024

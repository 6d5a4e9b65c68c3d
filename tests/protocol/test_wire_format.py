"""GossipConfig.wire_format: a node writes release 0.1.0's format on 1 and reads both,
so a cluster upgrading from 0.1.0 keeps running while its nodes mix the two."""

from __future__ import annotations

import dataclasses

import pytest

from crdtgossip import ConfigError, GCounter, OperationError
from crdtgossip.config import GossipConfig
from crdtgossip.keylife import is_wrapped
from crdtgossip.protocol.messages import (
    Delta,
    DeltaInterval,
    Members,
    ReadReply,
    State,
    WriteRequest,
    decode_frame,
)

from .cluster import VirtualCluster

OLD = dataclasses.replace(GossipConfig.local(), push_pull_interval=1.0, wire_format=1)
NEW = dataclasses.replace(OLD, wire_format=2)


def _payloads(message: object) -> list[bytes]:
    match message:
        case Delta(_, payload) | State(_, payload) | WriteRequest(_, _, payload):
            return [payload]
        case ReadReply(_, _, payload):
            return [payload]
        case DeltaInterval():
            return [payload for _, payload in message.entries]
    return []


def _mixed() -> VirtualCluster:
    cluster = VirtualCluster(seed=5, config=NEW)
    cluster.add("n0", config=OLD)
    cluster.add("n1")
    cluster.add("n2")
    for name in cluster.engines:
        cluster.engines[name].join([cluster.address("n0")], cluster.now)
    assert cluster.run_until(lambda: cluster.sees_all(cluster.engines), 10.0)
    return cluster


def _write(cluster: VirtualCluster, name: str, n: int) -> None:
    engine = cluster.engines[name]
    engine.update("k", GCounter().increment(engine.replica_id, n), cluster.now)


def test_a_format_1_node_writes_no_record_and_no_replica_id_and_still_converges() -> None:
    cluster = _mixed()
    for n, name in enumerate(("n0", "n1", "n2"), start=1):
        _write(cluster, name, n)
    cluster.run(5.0)
    assert all(engine.get("k").value == 6 for engine in cluster.engines.values())  # type: ignore[union-attr]
    old_frames = [decode_frame(s.data, 1 << 30) for s in cluster.sent if s.source == "n0"]
    new_frames = [decode_frame(s.data, 1 << 30) for s in cluster.sent if s.source == "n1"]
    old_payloads = [p for f in old_frames for m in f.messages for p in _payloads(m)]
    new_payloads = [p for f in new_frames for m in f.messages for p in _payloads(m)]
    assert old_payloads
    assert not any(is_wrapped(p) for p in old_payloads)
    assert any(is_wrapped(p) for p in new_payloads)
    old_rows = [
        r for f in old_frames for m in f.messages if isinstance(m, Members) for r in m.records
    ]
    new_rows = [
        r for f in new_frames for m in f.messages if isinstance(m, Members) for r in m.records
    ]
    assert old_rows
    assert all(r.replica == "" for r in old_rows)
    assert any(r.replica for r in new_rows)


def test_on_format_1_a_delete_is_refused_while_others_live_and_spreads_nothing() -> None:
    cluster = _mixed()
    _write(cluster, "n0", 1)
    cluster.run(3.0)
    with pytest.raises(OperationError, match="wire format 1"):
        cluster.engines["n0"].delete("k", cluster.now)
    assert cluster.engines["n1"].delete("k", cluster.now) is True  # format 2: spreads
    cluster.run(3.0)
    assert cluster.engines["n2"].get("k") is None
    assert cluster.engines["n0"].get("k") is None  # a format-1 node reads the delete too


def test_wire_format_is_checked() -> None:
    for bad in (0, 3, "2", 2.0, True):
        with pytest.raises(ConfigError, match="wire_format"):
            dataclasses.replace(GossipConfig.local(), wire_format=bad)

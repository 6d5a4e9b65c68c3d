"""The rollback check (crdtgossip/protocol/rollback.py): a restarted engine asks its peers
for the marks they hold of its replica, on engines driven by hand over the virtual
network of :mod:`.cluster`; and its messages' decoder, on hostile input."""

from __future__ import annotations

import logging

import msgpack
import pytest

from crdtgossip.crdts import CRDT, GCounter, GSet, LWWRegister, ORMap, ORSet, PNCounter
from crdtgossip.crdts._marks import marks_ahead, replica_marks
from crdtgossip.errors import DecodeError
from crdtgossip.protocol import Engine, rollback
from crdtgossip.protocol.messages import (
    FRAME_VERSION,
    MAX_KEY_BYTES,
    MarksQuery,
    MarksReport,
    decode_frame,
    encode_frame,
    encode_message,
)

from .cluster import VirtualCluster

WRITER = "n1-0"  # the replica id VirtualCluster gives n1 (generation 0)


def _written(keys: int, increments: int) -> dict[str, CRDT]:
    """The states ``n1`` holds after ``increments`` to each of ``keys`` counters, and
    as many adds to one set."""
    states: dict[str, CRDT] = {}
    for index in range(keys):
        counter = GCounter()
        counter.increment(WRITER, increments)
        states[f"counter-{index}"] = counter
    added = ORSet[int]()
    for element in range(increments):
        added.add(element, WRITER)
    states["set"] = added
    return states


def _cluster_holding(states: dict[str, CRDT]) -> tuple[VirtualCluster, list[str]]:
    cluster = VirtualCluster(seed=18)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), 30.0)
    for key, state in states.items():
        cluster.engines["n1"].update(key, state, cluster.now)
    cluster._collect("n1")
    assert cluster.run_until(
        lambda: all(len(cluster.engines[n].keys()) == len(states) for n in names), 30.0
    )
    return cluster, names


def _restart_n1(cluster: VirtualCluster, states: dict[str, CRDT]) -> Engine:
    """Restart n1 under its old replica id, from ``states``, checked by its peers."""
    cluster.stop("n1")
    engine = cluster.add("n1", incarnation=1)
    for key, state in states.items():
        engine.restore(key, state.copy())
    engine.check_rollback(5.0)
    engine.join([cluster.address("n0")], cluster.now)
    cluster._collect("n1")
    return engine


def test_a_restart_from_an_older_store_takes_a_fresh_replica_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster, _ = _cluster_holding(_written(3, 50))
    with caplog.at_level(logging.WARNING, logger="crdtgossip.rollback"):
        engine = _restart_n1(cluster, _written(3, 24))  # a backup of 24 of the 50
        assert engine.rollback_pending
        assert cluster.run_until(lambda: not engine.rollback_pending, 10.0)
    assert engine.rollback_found
    assert engine.replica_id != WRITER
    assert engine.replica_id.startswith("n1.")
    assert engine.stats()["rollbacks_detected"] == 1
    assert "lost commits" in caplog.text
    assert WRITER in caplog.text


def test_a_whole_store_keeps_its_replica_id_once_every_peer_asked_answered() -> None:
    cluster, names = _cluster_holding(_written(3, 50))
    engine = _restart_n1(cluster, _written(3, 50))
    assert cluster.run_until(lambda: not engine.rollback_pending, 10.0)
    assert not engine.rollback_found
    assert engine.replica_id == WRITER
    stats = engine.stats()
    assert stats["rollbacks_detected"] == 0
    assert stats["marks_reports_in"] >= len(names) - 1  # both other members answered
    served = sum(cluster.engines[n].stats()["marks_queries_served"] for n in ("n0", "n2"))
    assert served == 2


def test_only_one_key_behind_is_found_among_many_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    # Small slices and parts: the answers cross many ticks and many report parts.
    monkeypatch.setattr(rollback, "SCAN_STEP", 50)
    monkeypatch.setattr(rollback, "PART_BYTES", 512)
    states = _written(600, 3)
    cluster, _ = _cluster_holding(states)
    older = {key: state.copy() for key, state in states.items()}
    behind = GCounter()
    behind.increment(WRITER, 2)
    older["counter-599"] = behind  # one key of 601 lost its last increment
    engine = _restart_n1(cluster, older)
    assert cluster.run_until(lambda: not engine.rollback_pending, 20.0)
    assert engine.rollback_found
    assert engine.stats()["marks_reports_in"] > 2 * 10  # many parts from each peer


def test_a_key_the_restarted_store_lacks_altogether_counts_as_behind() -> None:
    states = _written(2, 5)
    cluster, _ = _cluster_holding(states)
    del states["counter-1"]
    engine = _restart_n1(cluster, states)
    assert cluster.run_until(lambda: not engine.rollback_pending, 10.0)
    assert engine.rollback_found


def test_with_no_member_answering_the_check_ends_at_its_timeout_and_keeps_the_id(
    caplog: pytest.LogCaptureFixture,
) -> None:
    cluster, _ = _cluster_holding(_written(1, 5))
    cluster.stop("n0")
    cluster.stop("n2")
    with caplog.at_level(logging.WARNING, logger="crdtgossip.rollback"):
        engine = _restart_n1(cluster, _written(1, 1))
        start = cluster.now
        assert cluster.run_until(lambda: not engine.rollback_pending, 10.0)
    assert 5.0 <= cluster.now - start < 6.0  # the timeout given, in virtual time
    assert engine.replica_id == WRITER
    assert "no member answered the rollback check" in caplog.text


def test_a_report_for_another_check_is_dropped_as_stale() -> None:
    cluster, _ = _cluster_holding(_written(1, 5))
    engine = _restart_n1(cluster, _written(1, 5))
    data = encode_frame("n0", [encode_message(MarksReport(WRITER, 12345, 0, True, ()))])
    engine.receive(data, cluster.address("n0"), cluster.now)
    assert engine.stats()["marks_reports_stale"] == 1
    assert engine.rollback_pending  # n0 is not taken as having answered


def test_queries_past_the_bound_are_dropped_and_counted() -> None:
    cluster, _ = _cluster_holding(_written(1, 5))
    n0 = cluster.engines["n0"]
    for token in range(rollback.MAX_SCANS + 3):
        frame = encode_frame("n2", [encode_message(MarksQuery(WRITER, token))])
        n0.receive(frame, cluster.address("n2"), cluster.now)
    stats = n0.stats()
    assert stats["marks_queries_served"] == rollback.MAX_SCANS
    assert stats["marks_queries_dropped"] == 3


def test_marks_of_each_type() -> None:
    counter = PNCounter()
    counter.increment("r", 4)
    counter.decrement("r", 2)
    nested = ORMap(GCounter)
    nested.update("k", "r", lambda c: c.increment("r", 7))
    nested.update("k", "r", lambda c: c.increment("r", 1))
    register = LWWRegister[int]()
    register.set(1, "r")
    assert replica_marks(counter, "r") == (4, 2)
    assert replica_marks(counter, "s") == (0, 0)
    assert replica_marks(nested, "r") == (2,)  # one dot per update
    assert replica_marks(GSet[int](), "r") == ()
    assert replica_marks(register, "r") == ()
    assert marks_ahead((4, 3), (4, 2))
    assert not marks_ahead((4, 2), (4, 2))
    assert not marks_ahead((3,), (4, 2))
    assert marks_ahead((1,), ())


def _frame(*items: object) -> bytes:
    return bytes((FRAME_VERSION,)) + msgpack.packb(list(items), use_bin_type=True)


def test_the_messages_survive_a_round_trip() -> None:
    messages = [
        MarksQuery(WRITER, 2**64 - 1),
        MarksReport(WRITER, 7, 3, False, (("k", (1, 2**64 - 1)), ("k\u00e9", (5,)))),
        MarksReport(WRITER, 7, 4, True, ()),
    ]
    frame = encode_frame("n0", [encode_message(m) for m in messages])
    assert decode_frame(frame, 1 << 20).messages == tuple(messages)


@pytest.mark.parametrize(
    "data",
    [
        _frame("a", [23, "r"]),  # a query missing its token
        _frame("a", [23, "", 1]),  # empty replica id
        _frame("a", [23, "r", -1]),
        _frame("a", [24, "r", 1, 0, True]),  # a report missing its entries
        _frame("a", [24, "r", 1, 0, 1, []]),  # last must be a bool
        _frame("a", [24, "r", 1, 2**16, True, []]),  # past the parts bound
        _frame("a", [24, "r", 1, 0, True, [["k", []]]]),  # no marks
        _frame("a", [24, "r", 1, 0, True, [["k", [1] * 9]]]),  # too many marks
        _frame("a", [24, "r", 1, 0, True, [["k", [-1]]]]),
        _frame("a", [24, "r", 1, 0, True, [["k", [True]]]]),
        _frame("a", [24, "r", 1, 0, True, [["k" * (MAX_KEY_BYTES + 1), [1]]]]),
        _frame("a", [24, "r", 1, 0, True, [["k", [1], "extra"]]]),
    ],
)
def test_malformed_messages_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_frame(data, 1 << 20)

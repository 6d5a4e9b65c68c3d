"""Member rows carry each member's replica id (issue 14, the first step of the pruning
of removed replicas): its wire form and decoder, the table's rule for taking an id,
and a cluster in which every member learns every other member's current id."""

from __future__ import annotations

import random

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError, DecodeError
from crdtgossip.protocol import Engine
from crdtgossip.protocol.member_messages import member_record
from crdtgossip.protocol.membership import FormedTable, Membership
from crdtgossip.protocol.messages import (
    FRAME_VERSION,
    MAX_NODE_ID_BYTES,
    Alive,
    Dead,
    Kind,
    Left,
    MemberRecord,
    Members,
    Suspect,
    decode_frame,
    encode_frame,
    encode_message,
)
from crdtgossip.protocol.states import STATUS_CODES, Status
from crdtgossip.testing import Simulation
from tests.protocol.known_alive import check_known_alive
from tests.protocol.test_membership import CONFIG, Table, rumor_strategy
from tests.protocol.test_rollback import _cluster_holding, _restart_n1, _written

from .cluster import VirtualCluster

ALIVE = STATUS_CODES[Status.ALIVE]


def _decoded(message: Members) -> Members:
    frame = decode_frame(encode_frame("x", [encode_message(message)]), 1 << 20)
    (decoded,) = frame.messages
    assert isinstance(decoded, Members)
    return decoded


def _raw_frame(*rows: object) -> bytes:
    """A frame of one member table of these wire rows, packed as they are."""
    message = [int(Kind.MEMBERS), True, False, list(rows)]
    packed: bytes = msgpack.packb(["x", message], use_bin_type=True)
    return bytes((FRAME_VERSION,)) + packed


# --- the wire ------------------------------------------------------------------------


def test_rows_with_and_without_a_replica_id_survive_a_round_trip() -> None:
    records = (
        MemberRecord("a", "a:1", 0, Status.ALIVE, "a.0123456789abcdef"),
        MemberRecord("b", "b:1", 7, Status.SUSPECT),
        MemberRecord("c", "c:1", 2**63 - 2, Status.DEAD, "any replica ✓"),
        MemberRecord("d", "d:1", 1, Status.LEFT, "d" * MAX_NODE_ID_BYTES),
    )
    message = Members(records, reply=True, join=False)
    assert _decoded(message) == message
    # Twice: the second decode finds the rows' records kept from the first.
    assert _decoded(message) == message
    # The encoding is what packing the message's array gives: an unknown id is left
    # out, as an older peer sends the row.
    rows = msgpack.unpackb(encode_message(message))[3]
    assert [len(row) for row in rows] == [5, 4, 5, 5]
    assert rows[0][4] == "a.0123456789abcdef"


def test_a_row_of_four_fields_from_an_older_peer_decodes_with_no_replica_id() -> None:
    (message,) = decode_frame(_raw_frame(["a", "a:1", 3, ALIVE]), 1 << 20).messages
    assert isinstance(message, Members)
    assert message.records == (MemberRecord("a", "a:1", 3, Status.ALIVE, ""),)
    assert message.records[0].replica == ""


def test_rows_that_differ_only_by_their_replica_id_are_different_records() -> None:
    plain = member_record("a", "a:1", 0, Status.ALIVE)
    known = member_record("a", "a:1", 0, Status.ALIVE, "a.1")
    other = member_record("a", "a:1", 0, Status.ALIVE, "a.2")
    assert (plain.replica, known.replica, other.replica) == ("", "a.1", "a.2")
    assert member_record("a", "a:1", 0, Status.ALIVE, "a.1") is known  # kept
    (message,) = decode_frame(
        _raw_frame(["a", "a:1", 0, ALIVE], ["a", "a:1", 0, ALIVE, "a.2"]), 1 << 20
    ).messages
    assert isinstance(message, Members)
    assert message.records == (plain, other)


HOSTILE_REPLICAS = [
    "",  # an unknown id is left out, never sent empty
    "x" * (MAX_NODE_ID_BYTES + 1),
    "é" * (MAX_NODE_ID_BYTES // 2 + 1),  # short in code points, too long in UTF-8
    b"a.1",
    7,
    True,
    None,
    1.5,
    ["a.1"],
    {"a": 1},
]


@pytest.mark.parametrize("replica", HOSTILE_REPLICAS, ids=repr)
def test_a_hostile_replica_id_raises_decode_error(replica: object) -> None:
    # Decoded once honestly first, so the row's record is kept: a hostile value that
    # would be equal to it must still not pass.
    decode_frame(_raw_frame(["a", "a:1", 0, ALIVE, "a.1"]), 1 << 20)
    # (A map is refused by the unpacker already, before any schema is checked.)
    with pytest.raises(DecodeError, match=None if isinstance(replica, dict) else "replica id"):
        decode_frame(_raw_frame(["a", "a:1", 0, ALIVE, replica]), 1 << 20)


@pytest.mark.parametrize(
    "row",
    [
        ["a", "a:1", 0],
        ["a", "a:1", 0, ALIVE, "a.1", "extra"],
        ["a", "a:1", True, ALIVE, "a.1"],
        ["a", "a:1", 0, True, "a.1"],
        ["a", "a:1", 0, 99, "a.1"],
        ["a", "", 0, ALIVE, "a.1"],
        ["", "a:1", 0, ALIVE, "a.1"],
        [["a"], "a:1", 0, ALIVE, "a.1"],
        ["a", "a:1", 0, ALIVE, ["a.1"]],
        "a",
    ],
    ids=repr,
)
def test_a_malformed_row_raises_decode_error(row: object) -> None:
    decode_frame(_raw_frame(["a", "a:1", 0, ALIVE, "a.1"]), 1 << 20)  # kept, as above
    with pytest.raises(DecodeError):
        decode_frame(_raw_frame(row), 1 << 20)


_row_values = (
    st.none()
    | st.booleans()
    | st.integers(-1, 2**64 - 1)
    | st.text(max_size=140)
    | st.binary(max_size=8)
    | st.lists(st.text(max_size=2), max_size=2)
)


@given(st.lists(_row_values, min_size=3, max_size=6))
def test_any_row_decodes_or_raises_decode_error_and_the_engine_counts_it(
    row: list[object],
) -> None:
    engine = Engine("victim", "victim:1", GossipConfig.local(), random.Random(0), "victim.1")
    data = _raw_frame(row)
    try:
        decode_frame(data, 1 << 20)
    except DecodeError:
        engine.receive(data, "x:1", 0.0)  # never raises
        stats = engine.stats()
        assert (stats["decode_errors"], stats["drop_malformed"]) == (1, 1)
    else:
        engine.receive(data, "x:1", 0.0)
        assert engine.stats()["decode_errors"] == 0


def test_the_engine_drops_and_counts_a_table_with_a_hostile_replica_id() -> None:
    engine = Engine("victim", "victim:1", GossipConfig.local(), random.Random(0), "victim.1")
    for count, replica in enumerate(HOSTILE_REPLICAS, 1):
        engine.receive(_raw_frame(["a", "a:1", 0, ALIVE, replica]), "x:1", 0.0)
        stats = engine.stats()
        assert (stats["decode_errors"], stats["drop_malformed"]) == (count, count)
    assert [m.node_id for m in engine.members()] == ["victim"]
    assert engine._membership.replicas() == {"victim": "victim.1"}


# --- the table's rule ----------------------------------------------------------------


def _table(local: str = "me", replica: str = "me.1") -> Table:
    """The member table of :class:`Table`, built with a replica id."""
    t = Table(local)
    t.table = Membership(
        local,
        f"{local}:1",
        0,
        config=CONFIG,
        rng=random.Random(0),
        awareness=t.awareness,
        broadcast=lambda rumor, exclude: t.spread.append((rumor, frozenset(exclude))),
        events=t.events,
        replica_id=replica,
    )
    return t


def _incarnation(t: Table, node_id: str) -> int:
    row = t.table.get(node_id)
    assert row is not None
    return row.incarnation


def _row(incarnation: int, replica: str = "", status: Status = Status.ALIVE) -> MemberRecord:
    return member_record("b", "b:1", incarnation, status, replica)


def test_the_local_replica_id_is_known_and_shipped() -> None:
    t = _table()
    assert t.table.replica_of("me") == "me.1"
    assert t.table.replicas() == {"me": "me.1"}
    assert t.table.records() == (MemberRecord("me", "me:1", 0, Status.ALIVE, "me.1"),)
    assert Table().table.replicas() == {}  # built with none
    assert t.table.replica_of("nobody") == ""


def test_a_row_gives_its_replica_id_when_it_is_taken() -> None:
    t = _table()
    t.table.merge_records([_row(0, "b.1")], "c", 1.0)  # a newcomer
    assert t.table.replica_of("b") == "b.1"
    assert t.table.records()[0] == MemberRecord("b", "b:1", 0, Status.ALIVE, "b.1")
    t.table.merge_records([_row(2, "b.2")], "c", 2.0)  # a newer incarnation
    assert (t.table.replica_of("b"), _incarnation(t, "b")) == ("b.2", 2)
    t.table.merge_records([_row(2, "b.3", Status.SUSPECT)], "c", 3.0)  # the same one
    assert t.table.replica_of("b") == "b.3"
    assert t.table.replicas() == {"b": "b.3", "me": "me.1"}


def test_a_row_of_a_member_known_by_rumor_gives_its_id_at_the_same_incarnation() -> None:
    t = _table()
    t.table.apply(Alive("b", "b:1", 4), 0.0)
    assert t.table.replica_of("b") == ""  # rumors carry no id
    t.table.merge_records([_row(4, "b.1")], "c", 1.0)
    assert t.table.replica_of("b") == "b.1"
    assert t.table.known_alive(Alive("b", "b:1", 4))  # the alive index unchanged


def test_a_stale_row_or_one_without_an_id_never_replaces_a_known_id() -> None:
    t = _table()
    t.table.merge_records([_row(3, "b.3")], "c", 1.0)
    for row in (
        _row(2, "b.2"),
        _row(0, "b.0", Status.DEAD),
        _row(1, "b.1", Status.LEFT),
        _row(3),
        _row(3, "", Status.SUSPECT),
    ):
        t.table.merge_records([row], "c", 2.0)
        assert t.table.replica_of("b") == "b.3", row


def test_a_rumor_raising_the_incarnation_makes_the_id_unknown() -> None:
    t = _table()
    t.table.merge_records([_row(1, "b.1")], "c", 1.0)
    t.table.apply(Alive("b", "b:1", 1), 2.0)  # not newer: nothing changes
    assert t.table.replica_of("b") == "b.1"
    t.table.apply(Suspect("b", 2, "c"), 3.0)
    assert t.table.replica_of("b") == ""  # which id b has at 2 is not known yet
    t.table.merge_records([_row(2, "b.1", Status.SUSPECT)], "c", 4.0)
    assert t.table.replica_of("b") == "b.1"
    t.table.apply(Suspect("b", 3, "d"), 5.0)  # a confirmation at a new incarnation
    assert t.table.replica_of("b") == ""
    t.table.merge_records([_row(3, "b.1", Status.SUSPECT)], "c", 6.0)
    t.table.apply(Alive("b", "b:1", 4), 7.0)
    assert t.table.replica_of("b") == ""


def test_a_row_at_a_refused_incarnation_gives_no_id() -> None:
    t = _table()
    t.table.merge_records([_row(1, "b.1")], "c", 1.0)
    t.table.merge_records([_row(2**63 - 1, "b.2")], "c", 2.0)  # out of range: refused
    assert t.table.refused_rumors == 1
    assert t.table.replica_of("b") == "b.1"


def test_a_row_giving_this_node_another_id_at_its_incarnation_is_refuted() -> None:
    t = _table()
    t.table.merge_records([member_record("me", "me:1", 0, Status.ALIVE, "me.1")], "c", 1.0)
    t.table.merge_records([member_record("me", "me:1", 0, Status.ALIVE)], "c", 1.0)
    assert (t.table.local.incarnation, t.spread) == (0, [])  # what it knows, or nothing
    t.table.merge_records([member_record("me", "me:1", 0, Status.ALIVE, "me.0")], "c", 2.0)
    assert t.table.local.incarnation == 1  # an earlier life's id: outranked
    assert t.spread == [(Alive("me", "me:1", 1), frozenset())]
    assert t.table.replica_of("me") == "me.1"
    t.table.merge_records([member_record("me", "me:1", 0, Status.ALIVE, "me.0")], "c", 3.0)
    assert t.table.local.incarnation == 1  # older than this node's row: no news


def test_renewing_the_replica_id_announces_it_at_a_new_incarnation() -> None:
    t = _table()
    t.table.renew_replica("me.1")  # the same: nothing to say
    assert (t.table.local.incarnation, t.spread) == (0, [])
    t.table.renew_replica("me.2")
    assert (t.table.replica_of("me"), t.table.local.incarnation) == ("me.2", 1)
    assert t.spread == [(Alive("me", "me:1", 1), frozenset())]
    assert t.awareness.score == 0  # not a refutation: the node's health is not in doubt


def test_a_formed_table_carries_the_replica_ids_and_a_rebase_keeps_them() -> None:
    records = [MemberRecord(n, f"{n}:1", 0, Status.ALIVE, f"{n}.0") for n in "abcd"]
    formed = FormedTable(records)
    tables = [_adopter(formed, name) for name in "abcd"]
    for t in tables:
        assert t.table.replicas() == {n: f"{n}.0" for n in "abcd"}
        assert t.table.records() is formed.records()  # shared, as before
        t.table.merge_records(records, "x", 1.0)  # says nothing new: no own rows
        assert len(t.table._members) == 1
    for t in tables[1:]:  # a is alive at 1 (it refuted), and three of four learn its id
        t.table.apply(Alive("a", "a:1", 1), 2.0)
        t.table.merge_records([member_record("a", "a:1", 1, Status.ALIVE, "a.0")], "x", 3.0)
    assert formed.rebase() == 3
    assert all(t.table.replica_of("a") == "a.0" for t in tables[1:])
    assert all(len(t.table._members) == 1 for t in tables[1:])
    with pytest.raises(ConfigError, match="replica id"):
        _adopter(formed, "b", "b.other")
    _adopter(FormedTable([*records[1:], MemberRecord("a", "a:1", 0, Status.ALIVE)]), "a")


def _adopter(formed: FormedTable, name: str, replica: str = "") -> Table:
    t = _table(name, replica or f"{name}.0")
    t.table.adopt(formed)
    return t


_replica_rows = st.builds(
    member_record,
    st.sampled_from("abcde"),
    st.sampled_from(["x:1", "y:1"]),
    st.integers(0, 3),
    st.sampled_from(list(Status)),
    st.sampled_from(["", "r1", "r2"]),
)


@given(
    st.lists(
        st.one_of(
            st.tuples(st.just("rumor"), rumor_strategy),
            st.tuples(st.just("rows"), st.lists(_replica_rows, max_size=4)),
        ),
        max_size=30,
    ),
    st.booleans(),
)
def test_an_id_comes_only_from_a_row_at_its_members_incarnation(
    steps: list[tuple[str, object]], adopt: bool
) -> None:
    t = _table("a", "a.0")
    if adopt:
        formed = [MemberRecord(n, f"{n}:1", 0, Status.ALIVE, f"{n}.0") for n in "abcde"]
        t.table.adopt(FormedTable(formed))
    given_ids = {(n, 0, f"{n}.0") for n in "abcde"} if adopt else {("a", 0, "a.0")}
    for now, (kind, step) in enumerate(steps):
        before = {n: (_row_of(t, n), t.table.replica_of(n)) for n in "bcde"}
        if kind == "rumor":
            assert isinstance(step, Alive | Suspect | Dead | Left)
            t.table.apply(step, float(now))
        else:
            assert isinstance(step, list)
            t.table.merge_records(step, "e", float(now))
            given_ids |= {(r.node_id, r.incarnation, r.replica) for r in step if r.replica}
        for node_id in "bcde":
            row, replica = _row_of(t, node_id), t.table.replica_of(node_id)
            if not replica:
                continue
            assert row is not None  # an id a row gave at the incarnation the member is at
            assert (node_id, row[0], replica) in given_ids
            old_row, old_replica = before[node_id]
            if row == old_row and old_replica and kind == "rows":
                # Kept, unless a row at that same incarnation gave another.
                rows = step if isinstance(step, list) else []
                assert replica == old_replica or any(
                    (r.node_id, r.incarnation, r.replica) == (node_id, row[0], replica)
                    for r in rows
                )
        assert t.table.replica_of("a") == "a.0"
        check_known_alive(t.table)


def _row_of(t: Table, node_id: str) -> tuple[int, Status] | None:
    row = t.table.get(node_id)
    return None if row is None else (row.incarnation, row.status)


# --- clusters ------------------------------------------------------------------------


def _all_known(sim: Simulation) -> bool:
    """Whether every running node knows every running node's current replica id."""
    running = [i for i in range(sim.size) if sim.running(i)]
    want = {sim.node_id(j): sim.replica_id(j) for j in running}
    for i in running:
        known = sim.engine(i)._membership.replicas()
        if any(known.get(node) != replica for node, replica in want.items()):
            return False
    return True


def test_every_member_learns_every_other_members_replica_id_by_push_pull() -> None:
    sim = Simulation(12, 14, GossipConfig.lan())
    assert sim.run_until_converged(60.0).converged
    assert sim.run_until(lambda: _all_known(sim), 600.0, check_interval=1.0)


def test_a_node_restarted_without_its_state_is_known_everywhere_by_its_new_id() -> None:
    sim = Simulation(10, 15, GossipConfig.lan())
    assert sim.run_until_converged(60.0).converged
    assert sim.run_until(lambda: _all_known(sim), 600.0, check_interval=1.0)
    old = sim.replica_id(4)
    sim.crash(4)
    sim.run(20.0)
    sim.restart(4, keep_state=False)
    assert sim.replica_id(4) != old
    assert sim.run_until(lambda: _all_known(sim), 600.0, check_interval=1.0)
    assert all(sim.engine(i)._membership.replica_of("n4") == sim.replica_id(4) for i in range(10))
    # And with its state: the same id, at a higher incarnation.
    kept = sim.replica_id(5)
    sim.crash(5)
    sim.run(20.0)
    sim.restart(5, keep_state=True)
    assert sim.replica_id(5) == kept
    assert sim.run_until(lambda: _all_known(sim), 600.0, check_interval=1.0)


def test_a_formed_cluster_knows_every_id_and_keeps_its_rows_shared() -> None:
    sim = Simulation(30, 16, GossipConfig.lan(), formed=True)
    assert _all_known(sim)
    sim.run(120.0)  # several push-pulls each
    assert _all_known(sim)
    assert sum(len(sim.engine(i)._membership._members) for i in range(30)) == 30


def test_engines_driven_by_hand_learn_each_others_ids() -> None:
    cluster = VirtualCluster(seed=21)
    names = cluster.start(4)
    want = {name: cluster.engines[name].replica_id for name in names}
    assert all(replica for replica in want.values())
    assert cluster.run_until(
        lambda: all(cluster.engines[n]._membership.replicas() == want for n in names), 300.0
    )


def test_a_replica_id_renewed_by_the_rollback_check_reaches_every_member() -> None:
    cluster, names = _cluster_holding(_written(2, 30))
    engine = _restart_n1(cluster, _written(2, 10))  # an older store: a fresh id
    assert cluster.run_until(lambda: not engine.rollback_pending, 10.0)
    assert engine.rollback_found
    fresh = engine.replica_id
    assert engine._membership.replica_of("n1") == fresh
    assert engine.incarnation == 2  # restarted at 1, then announced at 2
    assert cluster.run_until(
        lambda: all(cluster.engines[n]._membership.replica_of("n1") == fresh for n in names),
        300.0,
    )

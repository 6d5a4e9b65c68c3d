"""The push-pull side of the member table (``_member_sync``): merging a received table
is applying each of its rows as its rumor."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.protocol.events import MemberJoined
from crdtgossip.protocol.membership import MAX_INCARNATION, FormedTable, MembershipRumor
from crdtgossip.protocol.messages import Alive, Dead, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import Status
from tests.protocol.known_alive import check_known_alive
from tests.protocol.test_membership import NAMES, Table, _records, _view, rumor_strategy

record_strategy = st.builds(
    MemberRecord,
    st.sampled_from("abcdef"),
    st.sampled_from(["a:1", "x:1"]),
    st.sampled_from((0, 1, 2, 3, MAX_INCARNATION, 2**64 - 1)),  # some past the bound
    st.sampled_from(list(Status)),
)


@given(
    st.lists(st.tuples(rumor_strategy, st.floats(0, 100)), max_size=20),
    st.lists(record_strategy, max_size=12),
    st.booleans(),
    st.booleans(),
)
def test_merging_records_applies_each_as_its_rumor(
    rumors: list[tuple[MembershipRumor, float]],
    records: list[MemberRecord],
    adopt: bool,
    reap: bool,
) -> None:
    def prepared() -> Table:
        t = Table(local="a").adopt(FormedTable(_records(*NAMES))) if adopt else Table(local="a")
        for rumor, now in rumors:
            t.table.apply(rumor, now)
        if reap:  # the dead and left forgotten, shared rows among them
            t.table.reap(1e9)
        t.events.clear()
        t.spread.clear()
        return t

    merged, applied = prepared(), prepared()
    merged.table.merge_records(records, "e", 200.0)
    for record in records:
        rumor: MembershipRumor
        match record.status:
            case Status.ALIVE:
                rumor = Alive(record.node_id, record.address, record.incarnation)
            case Status.SUSPECT | Status.DEAD:
                rumor = Suspect(record.node_id, record.incarnation, "e")
            case Status.LEFT:
                rumor = Left(record.node_id, record.incarnation)
        applied.table.apply(rumor, 200.0, "e")
    assert _view(merged) == _view(applied)
    assert merged.events == applied.events
    assert merged.spread == applied.spread
    assert merged.table.refused_rumors == applied.table.refused_rumors


def test_a_merged_row_of_a_forgotten_shared_member_adds_it_anew() -> None:
    t = Table(local="a").adopt(FormedTable(_records(*NAMES)))
    t.table.apply(Dead("c", 0, "b"), 0.0)
    t.table.reap(1e9)
    assert t.table.get("c") is None  # forgotten, though the shared table holds it
    t.events.clear()
    t.table.merge_records([MemberRecord("c", "c:2", 0, Status.ALIVE)], "e", 1e9)
    row = t.table.get("c")
    assert row is not None
    assert (row.address, row.status) == ("c:2", Status.ALIVE)
    assert [type(e) for e in t.events] == [MemberJoined]
    check_known_alive(t.table)

"""The member table: rumors, suspicion, refutation, probe order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.config import GossipConfig
from crdtgossip.errors import ConfigError
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.events import (
    Event,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
)
from crdtgossip.protocol.membership import FormedTable, Membership, MembershipRumor
from crdtgossip.protocol.messages import Alive, Dead, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import Status
from crdtgossip.protocol.suspicion import suspicion_min_timeout
from tests.protocol.known_alive import check_known_alive

CONFIG = GossipConfig.lan()


class Table:
    def __init__(self, local: str = "me", incarnation: int = 0) -> None:
        self.events: list[Event] = []
        self.spread: list[tuple[MembershipRumor, frozenset[str]]] = []
        self.awareness = Awareness(CONFIG.awareness_max_multiplier)
        self.table = Membership(
            local,
            f"{local}:1",
            incarnation,
            config=CONFIG,
            rng=random.Random(0),
            awareness=self.awareness,
            # The exclusions as a set: their order says nothing.
            broadcast=lambda rumor, exclude: self.spread.append((rumor, frozenset(exclude))),
            events=self.events,
        )

    def add(self, *names: str) -> None:
        for name in names:
            self.table.apply(Alive(name, f"{name}:1", 0), 0.0)

    def adopt(self, formed: FormedTable) -> Table:
        self.table.adopt(formed)
        return self

    def status(self, name: str) -> Status | None:
        member = self.table.get(name)
        return None if member is None else member.status


def test_a_new_member_joins_and_its_news_is_passed_on_but_not_back() -> None:
    t = Table()
    assert t.table.apply(Alive("a", "a:1", 0), 0.0, origin="b")
    assert [type(e) for e in t.events] == [MemberJoined]
    assert t.spread == [(Alive("a", "a:1", 0), frozenset({"a", "b"}))]
    assert not t.table.apply(Alive("a", "a:1", 0), 1.0)  # old news
    assert len(t.spread) == 1


def test_rumors_about_strangers_other_than_alive_are_ignored() -> None:
    t = Table()
    assert not t.table.apply(Suspect("x", 0, "y"), 0.0)
    assert not t.table.apply(Dead("x", 0, "y"), 0.0)
    assert not t.table.apply(Left("x", 0), 0.0)
    assert t.table.get("x") is None


def test_suspicion_runs_its_course_then_dead() -> None:
    t = Table()
    t.add("a", "b", "c", "d", "e")
    t.events.clear()
    assert t.table.apply(Suspect("a", 0, "b"), 10.0)
    assert t.status("a") is Status.SUSPECT
    minimum = suspicion_min_timeout(CONFIG.suspicion_mult, 6, CONFIG.probe_interval)
    deadline = t.table.next_deadline()
    assert deadline == pytest.approx(10.0 + CONFIG.suspicion_max_timeout_mult * minimum)
    assert t.table.apply(Suspect("a", 0, "c"), 11.0)  # a confirmation shortens it
    assert not t.table.apply(Suspect("a", 0, "c"), 11.0)  # a repeat does not
    shorter = t.table.next_deadline()
    assert shorter is not None
    assert deadline is not None
    assert shorter < deadline
    t.table.expire(shorter - 0.001)
    assert t.status("a") is Status.SUSPECT
    t.table.expire(shorter)
    assert t.status("a") is Status.DEAD
    assert [type(e) for e in t.events] == [MemberSuspect, MemberDead]
    assert t.table.next_deadline() is None


def test_a_refutation_clears_the_suspicion() -> None:
    t = Table()
    t.add("a", "b")
    t.table.apply(Suspect("a", 0, "b"), 0.0)
    assert not t.table.apply(Alive("a", "a:1", 0), 1.0)  # same incarnation: no
    assert t.table.apply(Alive("a", "a:1", 1), 1.0)
    assert t.status("a") is Status.ALIVE
    assert isinstance(t.events[-1], MemberAlive)
    assert t.table.next_deadline() is None


def test_this_node_refutes_suspicion_and_death_and_loses_health() -> None:
    t = Table(incarnation=3)
    t.add("a")
    assert not t.table.apply(Suspect("me", 2, "a"), 0.0)  # about an older life
    assert t.table.apply(Suspect("me", 3, "a"), 0.0)
    assert t.table.local.incarnation == 4
    assert t.spread[-1] == (Alive("me", "me:1", 4), frozenset())
    assert t.awareness.score == 1
    assert t.table.apply(Dead("me", 9, "a"), 0.0)
    assert t.table.local.incarnation == 10
    assert t.table.apply(Alive("me", "me:1", 12), 0.0)  # known from an earlier life
    assert t.table.local.incarnation == 13
    assert t.table.local.status is Status.ALIVE


def test_a_leaving_node_does_not_refute() -> None:
    t = Table()
    t.add("a")
    assert t.table.leave() == Left("me", 0)
    assert not t.table.apply(Dead("me", 0, "a"), 0.0)
    assert t.table.local.status is Status.LEFT


def test_a_goodbye_shows_as_left_even_after_a_death() -> None:
    t = Table()
    t.add("a", "b")
    t.table.apply(Dead("a", 0, "b"), 0.0)
    assert t.table.apply(Left("a", 0), 1.0)
    assert t.status("a") is Status.LEFT
    assert isinstance(t.events[-1], MemberLeft)
    assert t.table.apply(Alive("a", "a:2", 1), 2.0)  # and it may come back
    assert t.status("a") is Status.ALIVE
    member = t.table.get("a")
    assert member is not None
    assert member.address == "a:2"
    assert isinstance(t.events[-1], MemberJoined)


def test_a_remote_dead_verdict_is_only_a_suspicion_here() -> None:
    t = Table()
    t.add("a", "b")
    t.table.merge_records(
        [
            MemberRecord("a", "a:1", 0, Status.DEAD),
            MemberRecord("c", "c:1", 2, Status.ALIVE),
            MemberRecord("d", "d:1", 0, Status.DEAD),
        ],
        "b",
        0.0,
    )
    assert t.status("a") is Status.SUSPECT
    assert t.status("c") is Status.ALIVE
    assert t.status("d") is None


def test_probe_order_covers_every_live_member_once_per_round() -> None:
    t = Table()
    t.add("a", "b", "c", "d")
    t.table.apply(Dead("d", 0, "a"), 0.0)
    for _ in range(3):
        round_ = [t.table.next_probe_target() for _ in range(3)]
        assert sorted(m.node_id for m in round_ if m) == ["a", "b", "c"]


def test_no_probe_target_when_alone() -> None:
    assert Table().table.next_probe_target() is None


def test_departed_members_are_forgotten_after_the_retention() -> None:
    t = Table()
    t.add("a", "b")
    t.table.apply(Dead("a", 0, "b"), 100.0)
    t.table.reap(100.0 + CONFIG.dead_retention)
    assert t.status("a") is Status.DEAD
    t.table.reap(100.0 + CONFIG.dead_retention + 1)
    assert t.status("a") is None
    assert t.status("b") is Status.ALIVE


rumor_strategy = st.one_of(
    st.builds(Alive, st.sampled_from("abcde"), st.just("x:1"), st.integers(0, 3)),
    st.builds(Suspect, st.sampled_from("abcde"), st.integers(0, 3), st.sampled_from("abcde")),
    st.builds(Dead, st.sampled_from("abcde"), st.integers(0, 3), st.sampled_from("abcde")),
    st.builds(Left, st.sampled_from("abcde"), st.integers(0, 3)),
)


@given(st.lists(st.tuples(rumor_strategy, st.floats(0, 100)), max_size=40), st.booleans())
def test_cached_counts_always_match_the_table(
    rumors: list[tuple[MembershipRumor, float]], leave: bool
) -> None:
    t = Table(local="a")
    for rumor, now in rumors:
        t.table.apply(rumor, now)
        t.table.expire(now)
        check_known_alive(t.table)
    if leave:
        t.table.leave()
    t.table.reap(1e9)
    check_known_alive(t.table)
    members = t.table.members()
    assert [m.node_id for m in members] == sorted(m.node_id for m in members)
    for status in Status:
        assert t.table.count(status) == sum(m.status is status for m in members)
    live = [m for m in members if m.status in (Status.ALIVE, Status.SUSPECT)]
    assert t.table.live_count() == len(live)
    assert t.table.others_alive() == sum(
        m.status is Status.ALIVE and m.node_id != "a" for m in members
    )
    picked = t.table.random_members(2, (Status.ALIVE,))
    assert len({m.node_id for m in picked}) == len(picked) == min(2, t.table.others_alive())


# --- probe order -------------------------------------------------------------------


def _probe_round(t: Table, picks: int) -> list[str]:
    targets = [t.table.next_probe_target() for _ in range(picks)]
    return [m.node_id for m in targets if m is not None]


def test_probe_order_is_reshuffled_each_round() -> None:
    t = Table()
    names = [f"m{i:02}" for i in range(20)]
    t.add(*names)
    rounds = [_probe_round(t, 20) for _ in range(4)]
    assert all(sorted(r) == names for r in rounds)
    assert len({tuple(r) for r in rounds}) == 4


def test_members_joining_during_a_probe_round_are_probed_in_it() -> None:
    t = Table()
    names = [f"m{i:02}" for i in range(20)]
    t.add(*names)
    _probe_round(t, 20)  # the members added before the first round, then a full round
    first = _probe_round(t, 5)
    # Ids sorting before every other: inserted in place into a list the round was
    # drawing from, they would shift it and make the round skip and repeat members.
    t.add("a0", "a1", "a2")
    rest = _probe_round(t, 18)
    assert sorted(first + rest) == sorted([*names, "a0", "a1", "a2"])
    assert sorted(_probe_round(t, 23)) == sorted([*names, "a0", "a1", "a2"])


def test_probe_order_skips_members_that_died_during_the_round() -> None:
    t = Table()
    t.add("a", "b", "c", "d", "e")
    _probe_round(t, 5)
    first = _probe_round(t, 1)
    dead = next(name for name in "abcde" if name not in first)
    t.table.apply(Dead(dead, 0, "me"), 1.0)
    rest = _probe_round(t, 3)
    assert sorted(first + rest) == sorted(set("abcde") - {dead})


def test_probe_order_covers_every_live_member_of_an_adopted_table_once_per_round() -> None:
    names = [f"n{i}" for i in range(40)]
    formed = FormedTable(_records(*names))
    t = Table("n0").adopt(formed)
    t.table.apply(Dead("n7", 0, "n0"), 0.0)
    t.table.apply(Left("n9", 0), 0.0)
    live = sorted(set(names) - {"n0", "n7", "n9"})
    for _ in range(3):
        assert sorted(_probe_round(t, len(live))) == live
    assert Table("n1").adopt(formed).status("n7") is Status.ALIVE


def test_no_probe_target_when_every_other_member_is_down() -> None:
    t = Table()
    t.add("a", "b")
    t.table.apply(Dead("a", 0, "me"), 0.0)
    t.table.apply(Left("b", 0), 0.0)
    assert [t.table.next_probe_target() for _ in range(3)] == [None] * 3


# --- formed tables, shared copy-on-write ------------------------------------------


NAMES = ("a", "b", "c", "d", "e")


def _records(*names: str) -> list[MemberRecord]:
    return [MemberRecord(name, f"{name}:1", 0, Status.ALIVE) for name in names]


def _view(t: Table) -> list[tuple[str, str, Status, int]]:
    return [(m.node_id, m.address, m.status, m.incarnation) for m in t.table.members()]


def _assert_counts_match(t: Table) -> None:
    members = t.table.members()
    for status in Status:
        assert t.table.count(status) == sum(m.status is status for m in members)


def test_an_adopted_table_knows_every_member_alive_and_says_nothing() -> None:
    formed = FormedTable(_records(*NAMES))
    t = Table("c").adopt(formed)
    assert len(formed) == 5
    assert _view(t) == [(name, f"{name}:1", Status.ALIVE, 0) for name in NAMES]
    assert t.table.live_count() == 5
    assert t.table.others_alive() == 4
    assert t.events == []
    assert t.spread == []
    assert t.table.records() == tuple(_records(*NAMES))
    assert {m.node_id for m in t.table.random_members(4, (Status.ALIVE,))} == {"a", "b", "d", "e"}


def test_a_change_on_one_adopter_shows_on_no_other() -> None:
    formed = FormedTable(_records(*NAMES))
    one, other = Table("a").adopt(formed), Table("b").adopt(formed)
    before = _view(other)
    one.table.apply(Suspect("c", 0, "a"), 1.0)  # a shared row changes
    one.table.apply(Dead("d", 0, "a"), 1.0)
    one.table.apply(Alive("e", "e:2", 3), 1.0)  # a new address and incarnation
    one.table.apply(Alive("f", "f:1", 0), 1.0)  # a member the table never had
    one.table.apply(Suspect("a", 0, "c"), 1.0)  # about itself: refuted
    one.table.apply(Left("b", 0), 1.0)
    one.table.apply(Suspect("c", 2, "e"), 1.0)  # a confirmation that raises the incarnation
    assert _view(one) == [
        ("a", "a:1", Status.ALIVE, 1),
        ("b", "b:1", Status.LEFT, 0),
        ("c", "c:1", Status.SUSPECT, 2),
        ("d", "d:1", Status.DEAD, 0),
        ("e", "e:2", Status.ALIVE, 3),
        ("f", "f:1", Status.ALIVE, 0),
    ]
    _assert_counts_match(one)
    assert one.table.records() != tuple(_records(*NAMES))
    one.table.reap(1.0 + CONFIG.dead_retention + 1)  # forgets b and d
    assert [m.node_id for m in one.table.members()] == ["a", "c", "e", "f"]
    assert one.table.get("b") is None
    assert one.table.get("d") is None
    _assert_counts_match(one)
    assert one.table.apply(Alive("d", "d:3", 1), 2.0)  # a forgotten member comes back
    assert one.status("d") is Status.ALIVE
    one.table.leave()
    assert one.status("a") is Status.LEFT
    _assert_counts_match(one)
    assert _view(other) == before
    assert other.table.count(Status.ALIVE) == 5
    assert other.table.records() == tuple(_records(*NAMES))
    assert _view(Table("e").adopt(formed)) == before  # the shared rows never changed


def test_the_local_row_of_an_adopter_is_its_own() -> None:
    formed = FormedTable(_records(*NAMES))
    one, other = Table("a").adopt(formed), Table("b").adopt(formed)
    one.table.local.since = 5.0  # the engine stamps its start time there
    one.table.refute(0)
    assert one.table.local.incarnation == 1
    member = other.table.get("a")
    assert member is not None
    assert (member.incarnation, member.since) == (0, 0.0)


def test_adopting_needs_a_fresh_table_that_the_formed_one_holds_as_it_is() -> None:
    formed = FormedTable(_records(*NAMES))
    with pytest.raises(ConfigError):
        Table("z").adopt(formed)  # not in it
    with pytest.raises(ConfigError):
        Table("a", incarnation=1).adopt(formed)  # at another incarnation
    with pytest.raises(ConfigError):
        Table("a").adopt(FormedTable([MemberRecord("a", "elsewhere:1", 0, Status.ALIVE)]))
    t = Table("a")
    t.add("b")
    with pytest.raises(ConfigError):
        t.adopt(formed)  # it already knows someone
    with pytest.raises(ConfigError):
        Table("a").adopt(formed).adopt(formed)  # twice


def test_a_formed_table_holds_each_member_once_and_alive() -> None:
    with pytest.raises(ConfigError):
        FormedTable([MemberRecord("a", "a:1", 0, Status.SUSPECT)])
    with pytest.raises(ConfigError):
        FormedTable(_records("a", "b", "a"))


@given(st.lists(st.tuples(rumor_strategy, st.floats(0, 100)), max_size=40), st.booleans())
def test_an_adopter_behaves_as_a_table_that_learned_the_members_itself(
    rumors: list[tuple[MembershipRumor, float]], leave: bool
) -> None:
    formed = FormedTable(_records(*NAMES))
    adopter, learner, bystander = Table("a").adopt(formed), Table("a"), Table("b").adopt(formed)
    learner.add(*NAMES[1:])
    learner.events.clear()
    learner.spread.clear()
    for t in (adopter, learner):
        for rumor, now in rumors:
            t.table.apply(rumor, now)
            t.table.expire(now)
            check_known_alive(t.table)
        if leave:
            t.table.leave()
        t.table.reap(1e9)
        check_known_alive(t.table)
    assert _view(adopter) == _view(learner)
    assert adopter.events == learner.events
    assert adopter.spread == learner.spread
    assert adopter.table.records() == learner.table.records()
    assert adopter.table.next_deadline() == learner.table.next_deadline()
    for status in Status:
        assert adopter.table.count(status) == learner.table.count(status)
    assert _view(bystander) == [(name, f"{name}:1", Status.ALIVE, 0) for name in NAMES]


def test_rebase_shares_again_a_row_most_adopters_changed_alike() -> None:
    formed = FormedTable(_records(*NAMES))
    a, b, c, d, e = (Table(name).adopt(formed) for name in NAMES)
    c.table.refute(0)  # c was suspected: it is alive at incarnation 1
    for t in (a, b, d):  # the refutation reached all but e
        assert t.table.apply(Alive("c", "c:1", 1), 1.0)
    a.table.apply(Suspect("d", 0, "a"), 1.0)  # a's own business: stays a's own
    tables = (a, b, c, d, e)
    before = [_view(t) for t in tables]
    assert formed.rebase() == 3  # a, b and d drop their copies of c's row
    assert [_view(t) for t in tables] == before  # nobody's view changed
    assert set(b.table._members) == {"b"}
    assert set(a.table._members) == {"a", "d"}
    assert set(e.table._members) == {"e", "c"}  # e still sees c at incarnation 0
    assert b.table.records() == formed.records()
    assert MemberRecord("c", "c:1", 1, Status.ALIVE) in formed.records()
    for t in tables:
        _assert_counts_match(t)
        check_known_alive(t.table)
    assert formed.rebase() == 0  # nothing left to share


def test_rebase_leaves_a_change_only_a_minority_made() -> None:
    formed = FormedTable(_records(*NAMES))
    a, b, *_ = (Table(name).adopt(formed) for name in NAMES)
    for t in (a, b):
        t.table.apply(Alive("c", "c:1", 1), 1.0)
    assert formed.rebase() == 0
    assert a.table.get("c") is not b.table.get("c")
    assert formed.records() == tuple(_records(*NAMES))

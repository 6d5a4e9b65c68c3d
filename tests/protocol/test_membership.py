"""The member table: rumors, suspicion, refutation, probe order."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.config import GossipConfig
from crdtgossip.protocol.awareness import Awareness
from crdtgossip.protocol.events import (
    Event,
    MemberAlive,
    MemberDead,
    MemberJoined,
    MemberLeft,
    MemberSuspect,
)
from crdtgossip.protocol.membership import Membership, MembershipRumor
from crdtgossip.protocol.messages import Alive, Dead, Left, MemberRecord, Suspect
from crdtgossip.protocol.states import Status
from crdtgossip.protocol.suspicion import suspicion_min_timeout

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
            broadcast=lambda rumor, exclude: self.spread.append((rumor, exclude)),
            events=self.events,
        )

    def add(self, *names: str) -> None:
        for name in names:
            self.table.apply(Alive(name, f"{name}:1", 0), 0.0)

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
    if leave:
        t.table.leave()
    t.table.reap(1e9)
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

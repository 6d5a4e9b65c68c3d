"""Who prunes (Pruner): only the lowest alive member, one Perform per replica however
the pruners' views differ (an answer counts only when it carries the pruner's own
marker), and rounds: a marker stalled on a pruner that is gone is taken over."""

from __future__ import annotations

from crdtgossip.protocol.pruning import Drop, Initialize, Perform
from crdtgossip.protocol.pruning_markers import Initialized, Performed, PruningMarkers
from tests.protocol.test_pruning import (
    LEFT,
    NEW_B,
    OLD_B,
    PERIOD,
    _ask,
    _initialized,
    _Node,
    _perform,
    _rows,
    _stamp,
    _started,
    _until,
)

# ---- who prunes ---------------------------------------------------------------------------


def test_only_the_lowest_alive_member_initializes() -> None:
    b, c = _Node("b"), _Node("c")
    for node in (b, c):
        _until(node, 0.0, 10 * PERIOD, every=100.0)
    # a leaves: b is the lowest alive member, and its period has long been counted.
    assert b.step(10 * PERIOD, _rows({"a": LEFT})) == _started(OLD_B, "c", pruner="b")
    assert c.step(10 * PERIOD, _rows({"a": LEFT})) == []


def test_concurrent_initializations_settle_on_the_lower_id() -> None:
    a, b = _Node("a"), _Node("b")
    without_a = [row for row in _rows() if row[0] != "a"]  # b has not heard of a yet
    _initialized(a)
    _until(b, 0.0, PERIOD, members=without_a)
    assert b.step(PERIOD, without_a) == _started(OLD_B, "c", pruner="b")
    b.collect("c")  # b has seen everyone it knows, but first merges a's markers:
    a.markers.merge(b.markers)
    b.markers.merge(a.markers)
    assert a.markers == b.markers
    assert a.markers.get(OLD_B) == Initialized("a")
    assert b.step(PERIOD + 1, without_a) == []  # no Perform: the marker is a's
    assert b.pruner.pruning == frozenset()
    assert b.pruner.stalled == {OLD_B}
    assert b.collect("a") == ()
    assert b.step(PERIOD + 2) == []  # b now knows a: not its to prune, not stalled
    assert b.pruner.stalled == frozenset()
    a.collect("b")
    a.collect("c")
    assert a.step(PERIOD + 3) == [_perform(PERIOD + 3)]


def test_a_lower_member_that_joins_takes_over() -> None:
    a, b = _Node("a"), _Node("b")
    without_a = _rows({"a": LEFT})
    _until(b, 0.0, PERIOD, members=without_a)
    assert b.step(PERIOD, without_a)[0] == Initialize(OLD_B, "b")
    b.collect("c")
    assert b.step(PERIOD + 1) == []  # a is back, alive and lower: b stops
    assert b.pruner.pruning == frozenset()
    a.markers.merge(b.markers)
    _until(a, 0.0, PERIOD)
    assert a.step(PERIOD) == _started(OLD_B, "b", "c")
    assert a.markers.get(OLD_B) == Initialized("a")


def test_a_marker_of_an_earlier_life_is_taken_up_without_trusting_its_seen_set() -> None:
    a = _Node("a")
    a.markers.merge(PruningMarkers({OLD_B: Initialized("a", frozenset({"b", "c"}))}))
    _until(a, 0.0, PERIOD)
    assert a.step(PERIOD) == [_ask("b"), _ask("c")]  # no Perform, no Initialize
    a.collect("b")
    assert a.step(PERIOD + 1) == []
    a.collect("c")
    assert a.step(PERIOD + 2) == [_perform(PERIOD + 2)]


def test_a_marker_held_by_a_lower_pruner_that_left_is_reported_stalled() -> None:
    b = _Node("b")
    b.markers.initialize(OLD_B, "a")
    members = _rows({"a": LEFT})
    _until(b, 0.0, 3 * PERIOD, members=members)
    assert b.pruner.stalled == {OLD_B}
    assert b.markers.get(OLD_B) == Initialized("a")


# ---- one Perform per replica ----------------------------------------------------------


def test_answers_that_carry_another_pruners_marker_do_not_count() -> None:
    # b has not heard of a: both take themselves for the lowest alive member. c and b
    # hold b's marker when they answer a, so their copies count for b's prune, not a's:
    # b performs, a does not, and a drops the replica once it sees b's performed marker.
    a, b, c = _Node("a"), _Node("b"), _Node("c")
    without_a = [row for row in _rows() if row[0] != "a"]
    _initialized(a)
    _until(b, 0.0, PERIOD, members=without_a)
    assert b.step(PERIOD, without_a) == _started(OLD_B, "c", pruner="b")
    c.markers.merge(b.markers)  # c has b's marker only
    assert b.collect("c", their=c.markers.copy()) != ()
    assert a.collect("c", their=c.markers.copy()) == ()
    assert a.collect("b", their=b.markers.copy()) == ()
    assert a.markers.get(OLD_B) == Initialized("a")  # a's marker still wins the join
    assert b.step(PERIOD + 1, without_a) == [Perform(OLD_B, NEW_B, _stamp(PERIOD + 1))]
    assert a.step(PERIOD + 1) == []  # no one seen: no Perform
    c.markers.merge(b.markers)
    assert a.collect("c", their=c.markers.copy()) == ()  # performed: not counted either
    assert a.step(PERIOD + 2) == [Drop(OLD_B)]
    assert (a.pruned, b.pruned) == ([], [OLD_B])


def test_an_answer_counts_only_for_this_pruner_and_round() -> None:
    a = _Node("a")
    _initialized(a)
    for their in (
        PruningMarkers(),  # the answerer has no marker (it did not merge the query's)
        PruningMarkers({OLD_B: Initialized("b")}),  # the engine has not merged it yet
        PruningMarkers({OLD_B: Initialized("a", round=1)}),
        PruningMarkers({OLD_B: Performed(1)}),
    ):
        ticket = a.pruner.query_ticket()
        assert a.pruner.collected("b", {OLD_B}, ticket, their=their) == (), their
    assert a.collect("b") != ()  # carrying a's own marker: seen


def test_an_initialize_is_never_performed_in_the_same_step() -> None:
    # a's earlier life, with no other alive member to see: the Perform waits until the
    # table holds a's marker, at the next step.
    a = _Node("a", named=["a.00000000000000ee"])
    alone = _rows({"b": LEFT, "c": LEFT})
    _until(a, 0.0, PERIOD, members=alone)
    assert a.step(PERIOD, alone) == [Initialize("a.00000000000000ee", "a")]
    assert a.step(PERIOD + 1, alone) == [Perform("a.00000000000000ee", a.replica, _stamp(301))]

"""Who prunes (Pruner): only the lowest alive member, one Perform per replica however
the pruners' views differ (an answer counts only when it carries the pruner's own
marker), and rounds: a marker stalled on a pruner that is gone is taken over."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.protocol.pruning import Collect, Drop, Initialize, Perform, See
from crdtgossip.protocol.pruning_markers import (
    ROUND_MAX,
    Initialized,
    Performed,
    PruningMarkers,
)
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


def test_a_marker_whose_pruner_left_is_taken_over_in_the_next_round_after_a_period() -> None:
    b = _Node("b")
    b.markers.initialize(OLD_B, "a", round=4)
    b.markers.see(OLD_B, "c", pruner="a", round=4)
    gone = _rows({"a": LEFT})
    _until(b, 0.0, PERIOD, members=gone)
    _until(b, PERIOD, 2 * PERIOD, members=gone)  # the replica's period, then the wait
    assert b.pruner.stalled == {OLD_B}
    assert b.step(2 * PERIOD, gone) == [Initialize(OLD_B, "b", 5), _ask("c")]
    assert b.pruner.stalled == frozenset()
    assert b.markers.get(OLD_B) == Initialized("b", round=5)  # a's seen set is not b's
    assert b.collect("c") == (See(OLD_B, "c", "b", 5),)
    assert b.step(2 * PERIOD + 1, gone) == [Perform(OLD_B, NEW_B, _stamp(2 * PERIOD + 1))]


def test_the_wait_restarts_when_the_stalled_marker_changes_and_stops_at_the_last_round() -> None:
    b = _Node("b")
    b.markers.initialize(OLD_B, "a")
    gone = _rows({"a": LEFT})
    _until(b, 0.0, 1.5 * PERIOD, members=gone)
    b.markers.initialize(OLD_B, "a", round=ROUND_MAX)  # another marker: counted anew
    _until(b, 1.5 * PERIOD, 10 * PERIOD, members=gone)  # and never taken over
    assert b.pruner.stalled == {OLD_B}
    assert b.markers.get(OLD_B) == Initialized("a", round=ROUND_MAX)
    again = _Node("b")
    again.markers.initialize(OLD_B, "a")
    _until(again, 0.0, 1.5 * PERIOD, members=gone)
    again.markers.initialize(OLD_B, "a", round=1)
    _until(again, 1.5 * PERIOD, 2.5 * PERIOD, members=gone)
    assert again.step(2.5 * PERIOD, gone) == [Initialize(OLD_B, "b", 2), _ask("c")]


def test_a_higher_pruner_that_left_loses_to_the_same_round_at_once() -> None:
    a = _Node("a")
    a.markers.initialize(OLD_B, "c", round=3)
    members = _rows({"c": LEFT})
    _until(a, 0.0, PERIOD, members=members)
    assert a.step(PERIOD, members) == [Initialize(OLD_B, "a", 3), _ask("b")]
    assert a.pruner.stalled == frozenset()


def test_a_pruner_that_comes_back_after_a_takeover_cannot_perform() -> None:
    a, b, c = _Node("a"), _Node("b"), _Node("c")
    _initialized(a)
    assert a.collect("b") != ()  # b's answer shows a's marker: seen
    b.markers.merge(a.markers)
    c.markers.merge(a.markers)
    gone = _rows({"a": LEFT})  # a leaves; b is the lowest alive member, and takes over
    _until(b, 0.0, 2 * PERIOD, members=gone)
    assert b.step(2 * PERIOD, gone) == [Initialize(OLD_B, "b", 1), _ask("c")]
    c.markers.merge(b.markers)
    assert b.collect("c", their=c.markers.copy()) != ()
    # a comes back, its Pruner as it was: c's answer shows b's round 1, not a's round 0,
    # so a cannot perform even before its table learns of the takeover.
    ticket = a.pruner.query_ticket()
    assert a.pruner.collected("c", {OLD_B}, ticket, their=c.markers) == ()
    assert a.step(2 * PERIOD + 1) == [_ask("c")]
    a.markers.merge(c.markers)  # then it does: b's marker is higher, b alive, a lower
    assert a.step(2 * PERIOD + 2) == [Initialize(OLD_B, "a", 1), _ask("b")]
    assert b.step(2 * PERIOD + 2, gone) == [Perform(OLD_B, NEW_B, _stamp(2 * PERIOD + 2))]
    a.markers.merge(b.markers)
    assert a.step(2 * PERIOD + 3) == [Drop(OLD_B)]
    assert (a.pruned, b.pruned) == ([], [OLD_B])


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


# ---- random interleavings ---------------------------------------------------------------

# Weighted so that most schedules get some pruner to a Perform: steps and answers (that
# mostly carry the querier's markers) are common, gossip rarer.
_step = st.tuples(st.just("step"), st.sampled_from("abc"))
_answer = st.tuples(st.just("answer"), st.integers(0, 7), st.sampled_from([True, True, False]))
_moves = st.lists(
    st.one_of(
        *[_step] * 2,
        *[_answer] * 3,
        st.tuples(st.just("gossip"), st.sampled_from("abc"), st.sampled_from("abc")),
    ),
    min_size=10,
    max_size=50,
)


@settings(max_examples=80)
@given(knows_a=st.tuples(st.booleans(), st.booleans()), c_knows_b=st.booleans(), moves=_moves)
def test_pruners_whose_views_differ_never_both_perform(
    knows_a: tuple[bool, bool], c_knows_b: bool, moves: list[tuple[object, ...]]
) -> None:
    # b and c may not have heard of a (c not of b) and take themselves for the lowest;
    # a lower member always knows the higher ones. Each begins past the period, then
    # steps, answers (whose queries may or may not carry the querier's markers) and
    # marker gossip interleave at random, in less than a period: no takeover is due.
    nodes = {name: _Node(name) for name in "abc"}
    unknown = {"a": set(), "b": set() if knows_a[0] else {"a"}}
    unknown["c"] = {n for n, knows in (("a", knows_a[1]), ("b", c_knows_b)) if not knows}
    views = {n: [row for row in _rows() if row[0] not in unknown[n]] for n in nodes}
    queries: list[tuple[str, str, frozenset[str], int]] = []
    now = PERIOD

    def step(name: str) -> None:
        node = nodes[name]
        for action in node.step(now, views[name]):
            if isinstance(action, Collect):
                ticket = node.pruner.query_ticket()
                queries.append((name, action.node_id, action.replicas, ticket))

    for name, node in nodes.items():
        _until(node, 0.0, PERIOD, members=views[name])
        step(name)
    for move in moves:
        now += 1.0
        match move:
            case ("step", str(name)):
                step(name)
            case ("answer", int(which), bool(carried)) if queries:
                asker, answerer, replicas, ticket = queries.pop(which % len(queries))
                if carried:
                    nodes[answerer].markers.merge(nodes[asker].markers)
                nodes[asker].collect(answerer, ticket, replicas, nodes[answerer].markers.copy())
            case ("gossip", str(source), str(target)):
                nodes[target].markers.merge(nodes[source].markers)
    assert sum(len(node.pruned) for node in nodes.values()) <= 1

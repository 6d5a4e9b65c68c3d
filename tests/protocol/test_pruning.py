"""The pruning decisions (Pruner): which replicas are retired, the pause, who prunes,
which collect queries count, and the clean-up, driven directly through scenarios and random
schedules."""

from __future__ import annotations

from collections.abc import Iterable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.errors import ConfigError, OperationError
from crdtgossip.protocol.pruning import (
    Action,
    Collect,
    Drop,
    Expire,
    Initialize,
    MemberRow,
    Perform,
    Pruner,
    PruningConfig,
    See,
)
from crdtgossip.protocol.pruning_markers import Initialized, Performed, PruningMarkers
from crdtgossip.protocol.states import Status

ALIVE, SUSPECT, DEAD, LEFT = Status.ALIVE, Status.SUSPECT, Status.DEAD, Status.LEFT
OLD_B, NEW_B, C_OLD = "b.00000000000000aa", "b.00000000000000bb", "c.00000000000000aa"
REPLICAS = {"a": "a.0000000000000001", "b": NEW_B, "c": "c.0000000000000001"}
PERIOD = 300.0
BASE_STAMP = 1_700_000_000 * 10**9


def _stamp(now: float) -> int:
    return BASE_STAMP + round(now * 10**9)


def _rows(statuses: dict[str, Status] | None = None, **replicas: str) -> list[MemberRow]:
    """The member table: a, b, c alive under REPLICAS, changed by the arguments."""
    current = {**REPLICAS, **replicas}
    status = dict.fromkeys(current, ALIVE) | (statuses or {})
    return [(node, status[node], current[node]) for node in sorted(current)]


class _Node:
    """One node's side: a Pruner, the markers, what its states name, as an engine would
    keep them; every action is carried out as the module doc says."""

    def __init__(self, node_id: str, named: Iterable[str] = (OLD_B, NEW_B), **config: float):
        self.replica = REPLICAS[node_id]
        self.pruner = Pruner(node_id, PruningConfig(**config))
        self.markers = PruningMarkers()
        self.named = {*named, self.replica}
        self.pruned: list[str] = []

    def step(self, now: float, members: list[MemberRow] | None = None) -> list[Action]:
        actions = self.pruner.step(
            members=_rows() if members is None else members,
            named=frozenset(self.named),
            markers=self.markers,
            local_replica=self.replica,
            now=now,
            stamp=_stamp(now),
        )
        for action in actions:
            if isinstance(action, Perform | Drop):
                self.named.discard(action.replica)  # prune / drop_replica on the states
            if isinstance(action, Perform):
                self.pruned.append(action.replica)
            action.mark(self.markers)
        return list(actions)

    def collect(
        self,
        node_id: str,
        ticket: int | None = None,
        replicas: Iterable[str] | None = None,
        their: PruningMarkers | None = None,
    ) -> tuple[See, ...]:
        """A collect query to ``node_id`` answered: about ``replicas`` (by default every
        replica being pruned), begun with ``ticket`` (by default now), carrying the
        answerer's markers ``their`` (by default this node's own: the answerer merged
        those the query carried, and held none that beat them). They are merged here."""
        ticket = self.pruner.query_ticket() if ticket is None else ticket
        asked = self.pruner.pruning if replicas is None else frozenset(replicas)
        their = self.markers.copy() if their is None else their
        self.markers.merge(their)
        sees = self.pruner.collected(node_id, asked, ticket, their=their)
        for see in sees:
            see.mark(self.markers)
        return sees


def _ask(node_id: str, *replicas: str) -> Collect:
    return Collect(node_id, frozenset(replicas or (OLD_B,)))


def _started(replica: str, *nodes: str, pruner: str = "a") -> list[Action]:
    """What a step initializing ``replica`` returns: the marker, a query to each node."""
    return [Initialize(replica, pruner), *(Collect(node, frozenset({replica})) for node in nodes)]


def _perform(now: float, replica: str = OLD_B) -> Perform:
    return Perform(replica, REPLICAS["a"], _stamp(now))


def _until(node: _Node, start: float, end: float, every: float = 50.0, **kw: object) -> None:
    """Steps from ``start`` to before ``end``, each expected to do nothing."""
    now = start
    while now < end:
        assert node.step(now, **kw) == [], now  # type: ignore[arg-type]
        now += every


def _initialized(node: _Node) -> None:
    _until(node, 0.0, PERIOD)
    assert node.step(PERIOD - 0.5) == []
    assert node.step(PERIOD) == _started(OLD_B, "b", "c")


# ---- retired or not -----------------------------------------------------------------------


def test_a_stateless_restart_is_retired_and_pruned_after_the_period() -> None:
    a = _Node("a")
    _initialized(a)  # the period not yet over: nothing at 0, 50, .., 250, then at 300
    assert a.markers.get(OLD_B) == Initialized("a")
    assert a.collect("b") == (See(OLD_B, "b", "a"),)
    assert a.step(PERIOD + 1) == []  # c not seen yet
    a.collect("c")
    assert a.markers.get(OLD_B) == Initialized("a", frozenset({"b", "c"}))
    assert a.step(PERIOD + 2) == [_perform(PERIOD + 2)]
    assert a.markers.get(OLD_B) == Performed(_stamp(PERIOD + 2))
    assert a.pruned == [OLD_B]
    assert a.pruner.pruning == {OLD_B}
    assert a.step(PERIOD + 3) == []
    assert a.pruner.pruning == frozenset()  # the performed marker ends it

    c = _Node("c")  # another node, once it holds the performed marker, drops the replica
    c.markers.merge(a.markers)
    assert c.step(PERIOD + 3) == [Drop(OLD_B)]
    assert c.step(PERIOD + 4) == []


def test_a_stateful_restart_keeps_its_id_and_is_never_retired() -> None:
    a = _Node("a", named=[OLD_B])
    for now in range(0, 20 * int(PERIOD), 100):
        assert a.step(float(now), _rows(b=OLD_B)) == []
    assert len(a.markers) == 0


def test_replicas_of_left_or_unknown_members_or_without_a_node_part_are_not_retired() -> None:
    named = ["d.00000000000000aa", "e.00000000000000aa", "n1-0", ".x", "b"]
    a = _Node("a", named=named)
    members = [*_rows(), ("d", LEFT, "d.00000000000000bb")]
    _until(a, 0.0, 10 * PERIOD, every=100.0, members=members)


def test_the_local_current_replica_is_never_retired_even_when_its_row_lags() -> None:
    a = _Node("a", named=["a.00000000000000ee"])  # an earlier life of a, and a.0..01 now
    lagging = _rows(a="a.00000000000000ee")  # a's own row still names the earlier life
    _until(a, 0.0, PERIOD, members=lagging)
    assert a.step(PERIOD, lagging) == _started("a.00000000000000ee", "b", "c")
    a.markers.perform(a.replica, 1)  # even a (wrong) performed marker: no Drop of its own
    assert all(REPLICAS["a"] not in repr(x) for x in a.step(PERIOD + 1, lagging))


def test_a_replica_that_stops_being_retired_is_let_go() -> None:
    # a's row of b lags behind b's restart and names OLD_B: NEW_B looks retired from a's
    # view only until the row catches up, and a lets it go.
    a = _Node("a")
    lagging = _rows(b=OLD_B)
    _until(a, 0.0, PERIOD, members=lagging)
    assert a.step(PERIOD, lagging) == _started(NEW_B, "b", "c")
    assert a.step(PERIOD + 1) == []  # OLD_B only now retired: its count starts
    assert a.pruner.pruning == frozenset()
    a.collect("b")
    a.collect("c")
    _until(a, PERIOD + 2, 2 * PERIOD)
    assert a.pruned == []


# ---- the pause ----------------------------------------------------------------------------


@pytest.mark.parametrize("status", [SUSPECT, DEAD])
def test_a_suspect_or_dead_member_pauses_and_the_pause_only_stops_the_count(
    status: Status,
) -> None:
    a = _Node("a")
    _until(a, 0.0, 250.0)  # 0 .. 200 counted: 200 s
    _until(a, 250.0, 1200.0, members=_rows({"c": status}))  # paused: nothing counts
    assert a.step(1200.0) == []  # alive again: counting resumes from here
    assert a.step(1299.0) == []  # 299 s counted
    assert a.step(1300.0) == _started(OLD_B, "b", "c")


def test_a_pause_holds_a_prune_that_is_ready() -> None:
    a = _Node("a")
    _initialized(a)
    a.collect("b")
    a.collect("c")
    _until(a, PERIOD + 1, 10 * PERIOD, members=_rows({"b": SUSPECT}))
    assert a.step(10 * PERIOD) == [_perform(10 * PERIOD)]


def test_left_members_do_not_pause_and_need_no_query() -> None:
    a = _Node("a")
    members = _rows({"c": LEFT})
    _until(a, 0.0, PERIOD, members=members)
    assert a.step(PERIOD, members) == _started(OLD_B, "b")
    a.collect("b")
    assert a.step(PERIOD + 1, members) == [_perform(PERIOD + 1)]


def test_the_clean_up_runs_during_a_pause() -> None:
    c = _Node("c")
    c.markers.perform(OLD_B, _stamp(0))
    paused = _rows({"b": DEAD})
    assert c.step(1.0, paused) == [Drop(OLD_B)]
    c.markers.perform("x.1", _stamp(0))  # the ttl is over for it, and for OLD_B
    ttl_ns = PruningConfig().marker_ttl_ns
    assert c.step(7 * 3600.0, paused) == [Expire(_stamp(7 * 3600.0), ttl_ns)]


# ---- collect queries ----------------------------------------------------------------------


def test_a_query_begun_before_the_initialization_does_not_count() -> None:
    a = _Node("a")
    early = a.pruner.query_ticket()
    _initialized(a)
    assert a.collect("b", early, [OLD_B]) == ()
    a.collect("c")
    assert a.step(PERIOD + 1) == []  # b not seen: no Perform
    assert a.markers.get(OLD_B) == Initialized("a", frozenset({"c"}))
    a.collect("b")
    assert a.step(PERIOD + 2) == [_perform(PERIOD + 2)]


def test_a_member_is_asked_again_only_after_the_retry() -> None:
    a = _Node("a")
    _initialized(a)
    retry = PruningConfig().query_retry
    assert a.step(PERIOD + retry - 1) == []
    a.collect("c")
    assert a.step(PERIOD + retry) == [_ask("b")]
    assert a.step(PERIOD + retry + 1) == []


def test_a_query_about_one_replica_does_not_count_for_another() -> None:
    a = _Node("a", named=[OLD_B, C_OLD])  # c restarted too
    _until(a, 0.0, PERIOD)
    both = frozenset({OLD_B, C_OLD})
    assert a.step(PERIOD) == [
        Initialize(OLD_B, "a"),
        Initialize(C_OLD, "a"),
        Collect("b", both),
        Collect("c", both),
    ]
    assert a.collect("b", replicas=[OLD_B]) == (See(OLD_B, "b", "a"),)
    a.collect("c")
    assert a.step(PERIOD + 1) == [_perform(PERIOD + 1)]
    assert a.collect("b", replicas=[C_OLD]) != ()
    assert a.step(PERIOD + 2)[0] == _perform(PERIOD + 2, C_OLD)


def test_a_replica_newly_wanted_of_a_member_is_asked_for_at_once_and_alone() -> None:
    a = _Node("a", query_retry=10 * PERIOD)  # no asking again
    _initialized(a)
    a.named.add(C_OLD)  # c's earlier life is named from now on
    _until(a, PERIOD + 1, 2 * PERIOD + 1)
    assert a.step(2 * PERIOD + 1) == _started(C_OLD, "b", "c")


def test_collected_refuses_a_ticket_it_did_not_give_and_ignores_itself() -> None:
    a = _Node("a")
    _initialized(a)
    with pytest.raises(OperationError):
        a.pruner.collected("b", {OLD_B}, a.pruner.query_ticket() + 1, their=a.markers)
    with pytest.raises(OperationError):
        a.pruner.collected("b", {OLD_B}, -1, their=a.markers)
    assert a.collect("a") == ()


def test_a_performed_marker_expires_after_the_ttl() -> None:
    c = _Node("c", marker_ttl=3600.0)
    c.markers.perform(OLD_B, _stamp(0))
    assert c.step(1.0) == [Drop(OLD_B)]
    c.named.add(OLD_B)  # a stale copy names it again: dropped again
    assert c.step(3600.0) == [Drop(OLD_B)]  # exactly the ttl old: kept
    assert c.step(3601.0) == [Expire(_stamp(3601.0), 3600 * 10**9)]
    assert c.markers.get(OLD_B) is None
    c.named.add(OLD_B)
    assert c.step(3602.0) == []  # no marker: no longer dropped


def test_the_config_is_checked() -> None:
    assert PruningConfig().marker_ttl_ns == 6 * 3600 * 10**9
    for bad in ({"dissemination_period": -1.0}, {"marker_ttl": 0.0}, {"query_retry": "1"}):
        with pytest.raises(ConfigError):
            PruningConfig(**bad)
    with pytest.raises(ConfigError):
        PruningConfig(marker_ttl=float("inf"))
    with pytest.raises(OperationError):
        Pruner("")
    a = _Node("a")
    for bad_replica, bad_stamp in (("", 0), (REPLICAS["a"], -1), (REPLICAS["a"], 2**64)):
        with pytest.raises(OperationError):
            a.pruner.step(
                members=_rows(), named=set(), markers=PruningMarkers(),
                local_replica=bad_replica, now=0.0, stamp=bad_stamp,
            )  # fmt: skip


# ---- random schedules ---------------------------------------------------------------------

# Weighted so that schedules often get through a period and a prune: ticks and answers to
# queries are common, pauses and restarts rarer.
_tick = st.tuples(st.just("tick"), st.sampled_from([0.0, 30.0, 120.0, 400.0]))
_end = st.tuples(st.just("end"), st.integers(0, 7))  # which query under way is answered
_status = st.sampled_from([ALIVE, ALIVE, ALIVE, LEFT, SUSPECT, DEAD])
_events = st.lists(
    st.one_of(
        *[_tick] * 3,
        *[_end] * 2,
        # a query the engine begins on its own: about some of the lives known so far
        st.tuples(st.just("begin"), st.sampled_from("bcd"), st.integers(0, 255)),
        st.tuples(st.just("status"), st.sampled_from("bcd"), _status),
        st.tuples(st.just("restart"), st.sampled_from("bc")),
    ),
    min_size=10,
    max_size=60,
)


class _Schedule:
    """Node a (lowest, always alive) among b, c, d, whose lives and statuses change at
    random; queries begin (as asked, or at random, as an engine's queue could hold stale
    ones), are answered in any order, and every step is checked against the rules."""

    def __init__(self) -> None:
        self.a = _Node("a", named=("b.0", "b.1", "c.0", "d.0"))
        self.lives = {"b": ["b.0", "b.1"], "c": ["c.0"], "d": ["d.0"]}  # b.0 retired
        self.status = {"b": ALIVE, "c": ALIVE, "d": ALIVE}
        self.now, self.events = 0.0, 0
        self.prompt = False  # whether a query asked for is answered at once
        self.retired_at = {"b.0": 0.0}  # when each earlier life was retired
        self.first_initialized: dict[str, int] = {}
        # queries under way: node, replicas, ticket, when it began; and those answered
        self.pending: list[tuple[str, frozenset[str], int, int]] = []
        self.done: dict[str, list[tuple[int, frozenset[str]]]] = {"b": [], "c": [], "d": []}

    def rows(self) -> list[MemberRow]:
        rows = [(node, self.status[node], lives[-1]) for node, lives in self.lives.items()]
        return [("a", ALIVE, self.a.replica), *rows]

    def run(self, event: tuple[object, ...]) -> None:
        self.events += 1
        match event:
            case ("tick", float(dt)):
                self.now += dt
                self.tick()
            case ("status", str(node), Status() as status):
                self.status[node] = status
            case ("restart", str(node)):
                self.retired_at[self.lives[node][-1]] = self.now
                self.lives[node].append(f"{node}.{len(self.lives[node])}")
                self.a.named.add(self.lives[node][-1])
            case ("begin", str(node), int(mask)):
                known = sorted(life for lives in self.lives.values() for life in lives)
                some = frozenset(life for i, life in enumerate(known) if mask >> i & 1)
                self.begin(node, some)
            case ("end", int(which)) if self.pending:
                self.answer(self.pending.pop(which % len(self.pending)))

    def begin(self, node: str, replicas: frozenset[str]) -> None:
        self.events += 1  # after anything the same tick did before
        self.pending.append((node, replicas, self.a.pruner.query_ticket(), self.events))

    def answer(self, query: tuple[str, frozenset[str], int, int]) -> None:
        node, replicas, ticket, began = query
        self.a.collect(node, ticket, replicas)
        self.done[node].append((began, replicas))

    def tick(self) -> None:
        rows = self.rows()
        actions = self.a.step(self.now, rows)
        paused = any(status not in (ALIVE, LEFT) for _, status, _ in rows)
        alive = {node for node, status, _ in rows if status is ALIVE} - {"a"}
        for action in actions:
            if isinstance(action, Collect):
                self.begin(action.node_id, action.replicas)
                if self.prompt:
                    self.answer(self.pending.pop())
            if paused:
                assert isinstance(action, Drop | Expire), action
            if isinstance(action, Initialize | Perform):
                node = action.replica.rpartition(".")[0]
                assert action.replica != self.a.replica
                assert action.replica != self.lives[node][-1], action
                assert node in alive, action
            if isinstance(action, Initialize):
                self.first_initialized.setdefault(action.replica, self.events)
                assert self.now - self.retired_at[action.replica] >= PERIOD, action
            if isinstance(action, Perform):
                initialized = self.first_initialized[action.replica]
                for member in alive:  # answered a query about it begun after the marker
                    assert any(
                        began > initialized and action.replica in replicas
                        for began, replicas in self.done[member]
                    ), member


@settings(max_examples=60)
@given(events=_events)
def test_random_schedules_keep_the_rules_and_end_pruned(events: list[tuple[object, ...]]) -> None:
    schedule = _Schedule()
    a = schedule.a
    for event in [*events, ("tick", 0.0)]:
        schedule.run(event)
    # Then the queries under way are answered, everyone is alive for good, and every
    # query asked for is answered at once: each earlier life is pruned within the period
    # and a few steps.
    while schedule.pending:
        schedule.run(("end", 0))
    schedule.status = dict.fromkeys(schedule.status, ALIVE)
    schedule.prompt = True
    for _ in range(int(PERIOD // 60) + 4):
        schedule.run(("tick", 60.0))
    for lives in schedule.lives.values():
        for replica in lives[:-1]:  # pruned once, its marker performed or expired since
            assert a.pruned.count(replica) == 1, replica
            assert replica not in a.named, replica
            assert isinstance(a.markers.get(replica), Performed | None), replica
        assert lives[-1] not in a.pruned
        assert a.markers.get(lives[-1]) is None

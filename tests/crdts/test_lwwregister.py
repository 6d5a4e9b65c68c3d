"""LWWRegister: the highest (timestamp, replica) wins, the same on every replica.

Default timestamps are ``max(now_ns, highest seen + 1)``; these tests replace the clock
(``now_ns`` as imported by the module) to put it behind, ahead, or stopped.
"""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given
from hypothesis import strategies as st

import crdtgossip.crdts.lwwregister as lwwregister_module
from crdtgossip import LWWRegister, MergeError, MVRegister, OperationError
from crdtgossip.crdts._values import MAX_STR_BYTES


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """A settable clock: ``clock[0]`` is what ``now_ns()`` returns."""
    now = [0]
    monkeypatch.setattr(lwwregister_module, "now_ns", lambda: now[0])
    return now


def test_empty_register() -> None:
    register: LWWRegister[str] = LWWRegister()
    assert register.value is None
    assert register.timestamp == 0
    assert register.replica == ""


def test_higher_timestamp_wins_in_either_order() -> None:
    old = LWWRegister[str]().set("old", "z", timestamp=10)
    new = LWWRegister[str]().set("new", "a", timestamp=20)
    for first, second in [(old, new), (new, old)]:
        register: LWWRegister[str] = LWWRegister()
        register.merge(first)
        register.merge(second)
        assert (register.value, register.timestamp, register.replica) == ("new", 20, "a")


def test_same_timestamp_higher_replica_wins_whatever_the_merge_order() -> None:
    writes = [
        LWWRegister[str]().set(value, replica, timestamp=10)
        for value, replica in [("from-a", "a"), ("from-c", "c"), ("from-b", "b")]
    ]
    for order in itertools.permutations(writes):
        register: LWWRegister[str] = LWWRegister()
        for write in order:
            register.merge(write)
        assert register.value == "from-c"
        assert register.replica == "c"


def test_same_timestamp_and_replica_break_by_value_deterministically() -> None:
    # Only possible with explicit timestamps; merge must still commute.
    a, b = LWWRegister[str](), LWWRegister[str]()
    from_a = a.set("apple", "r", timestamp=7)
    from_b = b.set("banana", "r", timestamp=7)
    a.merge(from_b)
    b.merge(from_a)
    assert a.value == b.value
    assert a == b


def test_explicit_lower_timestamp_loses() -> None:
    register: LWWRegister[str] = LWWRegister()
    register.set("first", "a", timestamp=100)
    late = register.set("second", "a", timestamp=99)
    assert register.value == "first"
    assert late.value == "second"  # the delta is the write, and it loses elsewhere too
    other: LWWRegister[str] = LWWRegister()
    other.set("first", "a", timestamp=100)
    other.merge(late)
    assert other.value == "first"


def test_delta_is_just_the_write() -> None:
    register: LWWRegister[str] = LWWRegister()
    register.set("x", "a", timestamp=1)
    delta = register.set("y", "b", timestamp=2)
    assert (delta.value, delta.timestamp, delta.replica) == ("y", 2, "b")
    assert delta == register


def test_default_timestamp_is_the_clock(clock: list[int]) -> None:
    clock[0] = 1_000
    register: LWWRegister[str] = LWWRegister()
    assert register.set("x", "a").timestamp == 1_000


def test_clock_behind_still_wins_over_what_it_saw(clock: list[int]) -> None:
    ahead: LWWRegister[str] = LWWRegister()
    seen = ahead.set("from the future", "z", timestamp=5_000)
    behind: LWWRegister[str] = LWWRegister()
    behind.merge(seen)
    clock[0] = 10  # far behind the write it has seen, and with a lower replica id
    mine = behind.set("mine", "a")
    assert mine.timestamp == 5_001
    assert behind.value == "mine"
    ahead.merge(mine)
    assert ahead.value == "mine"


def test_stopped_clock_still_orders_local_writes(clock: list[int]) -> None:
    clock[0] = 50
    register: LWWRegister[str] = LWWRegister()
    stamps = [register.set(str(i), "a").timestamp for i in range(3)]
    assert stamps == [50, 51, 52]
    assert register.value == "2"


def test_clock_ahead_is_used(clock: list[int]) -> None:
    register: LWWRegister[str] = LWWRegister()
    register.set("x", "a", timestamp=10)
    clock[0] = 1_000_000
    assert register.set("y", "a").timestamp == 1_000_000


def test_value_is_a_copy() -> None:
    written = [1, 2]
    register: LWWRegister[list[int]] = LWWRegister()
    register.set(written, "a", timestamp=1)
    written.append(3)
    read = register.value
    assert read == [1, 2]
    assert read is not None
    read.append(4)
    assert register.value == [1, 2]


@pytest.mark.parametrize("timestamp", [True, False, -1, 1.0, "1", 2**64])
def test_bad_timestamp_is_refused(timestamp: object) -> None:
    register: LWWRegister[str] = LWWRegister()
    with pytest.raises(OperationError):
        register.set("x", "a", timestamp=timestamp)  # type: ignore[arg-type]
    assert register == LWWRegister()


def test_empty_replica_is_refused() -> None:
    with pytest.raises(OperationError):
        LWWRegister[str]().set("x", "", timestamp=1)


@pytest.mark.parametrize(
    ("value", "replica"),
    [
        ("x", ""),  # an empty replica id, with and without a default stamp below
        ("x", 7),
        ("x", "\ud800"),  # a lone surrogate cannot be encoded
        ("\ud800", "a"),
        (2**64, "a"),
        (-(2**63) - 1, "a"),
        ("x" * (MAX_STR_BYTES + 1), "a"),
        ("é" * (MAX_STR_BYTES // 2 + 1), "a"),  # short in characters, long in UTF-8
        (float("nan"), "a"),
    ],
)
@pytest.mark.parametrize("timestamp", [None, 5])
def test_a_write_the_codec_cannot_encode_is_refused_and_changes_nothing(
    value: object, replica: object, timestamp: int | None
) -> None:
    register: LWWRegister[object] = LWWRegister()
    register.set("before", "a", timestamp=1)
    with pytest.raises(OperationError):
        register.set(value, replica, timestamp=timestamp)  # type: ignore[arg-type]
    assert (register.value, register.timestamp, register.replica) == ("before", 1, "a")


@pytest.mark.parametrize("value", ["é", "x" * MAX_STR_BYTES, 2**64 - 1, -(2**63), None, True])
def test_values_at_the_edges_of_the_fast_checks_are_written(value: object) -> None:
    register: LWWRegister[object] = LWWRegister()
    register.set(value, "réplica-ü")
    assert (register.value, register.replica) == (value, "réplica-ü")


def test_merge_of_another_type_is_refused() -> None:
    with pytest.raises(MergeError):
        LWWRegister().merge(MVRegister())  # type: ignore[arg-type]


# Writes with distinct (timestamp, replica): the winner is then named by those alone.
writes = st.lists(
    st.tuples(st.integers(0, 5), st.sampled_from("abcd"), st.integers(-(2**63), 2**64 - 1)),
    min_size=1,
    max_size=8,
    unique_by=lambda write: (write[0], write[1]),
)


@given(writes, st.data())
def test_every_merge_order_picks_the_highest_timestamp_then_replica(
    drawn: list[tuple[int, str, int]], data: st.DataObject
) -> None:
    deltas = [LWWRegister[int]().set(value, replica, timestamp=ts) for ts, replica, value in drawn]
    expected_ts, expected_replica, expected_value = max(drawn, key=lambda w: (w[0], w[1]))
    for _ in range(3):
        order = data.draw(st.permutations(deltas))
        register: LWWRegister[int] = LWWRegister()
        for delta in order:
            register.merge(delta)
        assert register.value == expected_value
        assert (register.timestamp, register.replica) == (expected_ts, expected_replica)


# ---- integer edges and values -------------------------------------------------------------

MAX = 2**64 - 1


def test_no_default_timestamp_after_the_largest_one(clock: list[int]) -> None:
    peer: LWWRegister[str] = LWWRegister()
    seen = peer.set("hostile", "z", timestamp=MAX)
    mine: LWWRegister[str] = LWWRegister()
    mine.merge(seen)
    before = mine.copy()
    clock[0] = 5
    with pytest.raises(OperationError, match="largest timestamp"):
        mine.set("mine", "a")
    assert mine == before
    mine.set("loses", "a", timestamp=3)  # an explicit stamp still works (and loses)
    assert mine.value == "hostile"


@pytest.mark.parametrize("timestamp", [MAX + 1, -1])
def test_an_explicit_timestamp_outside_64_bits_is_refused(timestamp: int) -> None:
    register: LWWRegister[str] = LWWRegister()
    with pytest.raises(OperationError):
        register.set("v", "a", timestamp=timestamp)
    assert register == LWWRegister()
    register.set("v", "a", timestamp=MAX)
    assert register.timestamp == MAX


def test_a_value_the_codec_cannot_encode_is_refused() -> None:
    register: LWWRegister[object] = LWWRegister()
    with pytest.raises(OperationError, match="a value cannot be"):
        register.set({"k": {1, 2}}, "a", timestamp=1)
    assert register == LWWRegister()


class _Name(str):
    """A str subclass: the codec refuses it as a replica id, equal or not."""


@pytest.mark.parametrize("value", [2**64, -(2**63) - 1, float("nan"), "\ud800", True, None, 7])
def test_the_in_line_value_check_agrees_with_check_value(value: object) -> None:
    from crdtgossip.crdts._values import check_value

    register: LWWRegister[object] = LWWRegister()
    try:
        check_value(value)
    except OperationError:
        with pytest.raises(OperationError):
            register.set(value, "r1")
        assert register.timestamp == 0
    else:
        register.set(value, "r1")
        assert register.timestamp > 0


def test_a_checked_replica_id_does_not_let_an_equal_str_subclass_through() -> None:
    register: LWWRegister[int] = LWWRegister()
    register.set(1, "writer")  # checked, and remembered as checked
    with pytest.raises(OperationError, match="replica"):
        register.set(2, _Name("writer"))
    for bad in ("", 5, None):
        with pytest.raises(OperationError):
            register.set(3, bad)  # type: ignore[arg-type]
    assert register.value == 1


def test_the_checked_replica_ids_stay_bounded() -> None:
    register: LWWRegister[int] = LWWRegister()
    for n in range(3 * lwwregister_module.MAX_CHECKED_REPLICAS):
        register.set(n, f"replica-{n}")
    assert len(lwwregister_module._checked_replicas) <= lwwregister_module.MAX_CHECKED_REPLICAS
    assert register.replica == f"replica-{3 * lwwregister_module.MAX_CHECKED_REPLICAS - 1}"

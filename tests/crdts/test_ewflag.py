"""EWFlag: enable wins over a concurrent disable.

The model-based property checks the rule in general: the flag is on exactly when some
enable was seen by no disable.
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import EWFlag, MergeError, OperationError, ORSet


def test_new_flag_is_off() -> None:
    assert EWFlag().value is False


def test_enable_wins_over_a_concurrent_disable() -> None:
    a = EWFlag()
    a.enable("a")
    b = a.copy()
    off = b.disable()
    on = a.enable("a")  # concurrent with b's disable
    assert b.value is False
    a.merge(off)
    b.merge(on)
    assert a.value is True
    assert b.value is True
    assert a == b


def test_disable_that_saw_the_enable_turns_it_off_everywhere() -> None:
    a = EWFlag()
    on = a.enable("a")
    b = EWFlag()
    b.merge(on)
    off = b.disable()
    a.merge(off)
    assert a.value is False
    assert b.value is False
    a.merge(on)  # a late duplicate changes nothing
    assert a.value is False


def test_disable_that_saw_one_of_two_concurrent_enables_leaves_it_on() -> None:
    a, b = EWFlag(), EWFlag()
    on_a = a.enable("a")
    on_b = b.enable("b")
    off = a.disable()  # saw only a's enable
    b.merge(on_a)
    b.merge(off)
    assert b.value is True
    a.merge(on_b)
    assert a.value is True
    off_both = a.disable()
    b.merge(off_both)
    assert a.value is False
    assert b.value is False


def test_disable_of_a_flag_never_enabled_is_empty() -> None:
    flag = EWFlag()
    assert flag.disable() == EWFlag()
    assert flag == EWFlag()


def test_enable_again_keeps_one_dot_per_replica() -> None:
    flag = EWFlag()
    for _ in range(10):
        flag.enable("a")
    assert flag.context.vector == {"a": 10}
    delta = flag.disable()
    assert delta.context.cloud == {"a": {10}}  # only the live dot is covered


def test_empty_replica_is_refused() -> None:
    with pytest.raises(OperationError):
        EWFlag().enable("")


def test_merge_of_another_type_is_refused() -> None:
    with pytest.raises(MergeError):
        EWFlag().merge(ORSet())  # type: ignore[arg-type]


REPLICAS = ("a", "b", "c")


@dataclass(frozen=True)
class Event:
    """An enable, or a disable that saw the events ``seen``."""

    enable: bool
    seen: frozenset[int]


replica_index = st.integers(0, len(REPLICAS) - 1)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("enable"), replica_index, replica_index),
        st.tuples(st.just("disable"), replica_index, replica_index),
        st.tuples(st.just("sync"), replica_index, replica_index),
    ),
    max_size=40,
)


def enable_wins_value(events: list[Event], seen: set[int]) -> bool:
    """The specification: on when a known enable was seen by no known disable."""
    return any(
        events[enable].enable
        and not any(not events[other].enable and enable in events[other].seen for other in seen)
        for enable in seen
    )


@given(operations)
def test_value_is_enable_wins_for_any_history(ops: list[tuple[str, int, int]]) -> None:
    flags = [EWFlag() for _ in REPLICAS]
    seen: list[set[int]] = [set() for _ in REPLICAS]
    events: list[Event] = []
    deltas: list[EWFlag] = []
    for kind, index, destination in ops:
        if kind == "sync":
            flags[destination].merge(flags[index])
            seen[destination] |= seen[index]
            target = destination
        else:
            if kind == "enable":
                deltas.append(flags[index].enable(REPLICAS[index]))
            else:
                deltas.append(flags[index].disable())
            events.append(Event(kind == "enable", frozenset(seen[index])))
            seen[index].add(len(events) - 1)
            target = index
        assert flags[target].value is enable_wins_value(events, seen[target])

    everything = EWFlag()
    for flag in flags:
        everything.merge(flag)
    assert everything.value is enable_wins_value(events, set(range(len(events))))
    from_deltas = EWFlag()
    for delta in reversed(deltas):
        from_deltas.merge(delta)
    assert from_deltas == everything


def test_an_exhausted_replica_changes_nothing() -> None:
    from crdtgossip.crdts import CausalContext

    peer = EWFlag()
    peer._context = CausalContext.from_dots([("a", 2**64 - 1)])
    mine = EWFlag()
    mine.enable("b")
    mine.merge(peer)
    before = mine.copy()
    with pytest.raises(OperationError, match="every dot counter"):
        mine.enable("a")
    assert mine == before

"""The checks every caller of an update function shares: state_of and delta_of."""

from __future__ import annotations

import pytest

from crdtgossip import GCounter, ORMap, ORSet, PNCounter
from crdtgossip.crdts._base import delta_of, state_of
from crdtgossip.errors import ConfigError, MergeError


def test_state_of_gives_an_empty_state_for_a_missing_key() -> None:
    assert state_of("k", None, GCounter) == GCounter()
    assert state_of("k", None, ORMap(ORSet)) == ORMap(ORSet)


def test_state_of_refuses_another_type_or_another_nesting() -> None:
    with pytest.raises(MergeError, match="key 'k' holds a GCounter, not a PNCounter"):
        state_of("k", GCounter(), PNCounter)
    with pytest.raises(MergeError):
        state_of("k", ORMap(ORSet), ORMap(GCounter))
    with pytest.raises(ConfigError):
        state_of("k", None, 3)  # type: ignore[arg-type]


def test_delta_of_returns_the_mutators_delta() -> None:
    counter = GCounter()
    delta = delta_of(counter, lambda c: c.increment("a", 2))
    assert delta == GCounter().increment("a", 2)
    assert counter.value == 2


def test_delta_of_refuses_what_is_not_the_delta() -> None:
    with pytest.raises(MergeError, match="must return the delta its mutator returned"):
        delta_of(GCounter(), lambda c: None)  # the mutator's return value was dropped
    with pytest.raises(MergeError, match="a GCounter"):
        delta_of(GCounter(), lambda c: PNCounter().increment("a"))


def test_replica_ids_timestamps_and_steps_stay_inside_64_bits_and_utf8() -> None:
    import pytest

    from crdtgossip import OperationError
    from crdtgossip.crdts._base import (
        check_amount,
        check_counter,
        check_replica,
        check_timestamp,
        next_timestamp,
    )

    assert check_replica("ünïcode") == "ünïcode"
    for bad in ["", "\ud800", 3, None]:
        with pytest.raises(OperationError):
            check_replica(bad)
    assert check_timestamp(2**64 - 1) == 2**64 - 1
    assert check_amount(2**64 - 1) == 2**64 - 1
    for check in (check_timestamp, check_amount):
        with pytest.raises(OperationError):
            check(2**64)
    assert next_timestamp(5, now=3) == 6
    assert next_timestamp(5, now=30) == 30
    assert next_timestamp(2**64 - 2, now=0) == 2**64 - 1
    with pytest.raises(OperationError, match="largest timestamp"):
        next_timestamp(2**64 - 1, now=0)
    assert check_counter(2**64 - 1, "a slot") == 2**64 - 1
    with pytest.raises(OperationError, match="a slot would pass"):
        check_counter(2**64, "a slot")

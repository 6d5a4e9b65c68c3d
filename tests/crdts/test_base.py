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

"""The member state transition table."""

from __future__ import annotations

import itertools

import pytest

from crdtgossip.protocol.states import TRANSITIONS, Order, Rumor, Status, next_status, order_of


def test_order_of() -> None:
    assert order_of(1, 2) is Order.OLDER
    assert order_of(2, 2) is Order.SAME
    assert order_of(3, 2) is Order.NEWER


@pytest.mark.parametrize(("status", "rumor"), list(itertools.product(Status, Rumor)))
def test_an_older_incarnation_never_changes_anything(status: Status, rumor: Rumor) -> None:
    assert next_status(status, rumor, Order.OLDER) is None


@pytest.mark.parametrize("status", list(Status))
def test_a_newer_alive_revives_from_any_state(status: Status) -> None:
    # memberlist#311: a member back with a higher incarnation is never stuck.
    assert next_status(status, Rumor.ALIVE, Order.NEWER) is Status.ALIVE
    assert next_status(status, Rumor.ALIVE, Order.SAME) is None


@pytest.mark.parametrize("status", [Status.DEAD, Status.LEFT])
@pytest.mark.parametrize("order", [Order.SAME, Order.NEWER])
def test_suspicion_and_death_never_touch_the_departed(status: Status, order: Order) -> None:
    assert next_status(status, Rumor.SUSPECT, order) is None
    assert next_status(status, Rumor.DEAD, order) is None


def test_left_overrides_dead_but_not_the_reverse() -> None:
    assert next_status(Status.DEAD, Rumor.LEFT, Order.SAME) is Status.LEFT
    assert next_status(Status.LEFT, Rumor.DEAD, Order.NEWER) is None


def test_every_entry_targets_the_state_its_rumor_names() -> None:
    expected = {
        Rumor.ALIVE: Status.ALIVE,
        Rumor.SUSPECT: Status.SUSPECT,
        Rumor.DEAD: Status.DEAD,
        Rumor.LEFT: Status.LEFT,
    }
    for (_, rumor, _), target in TRANSITIONS.items():
        assert target is expected[rumor]

"""The simulator pauses the cyclic collector for a run and puts it back as it was."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from crdtgossip.testing import Simulation
from crdtgossip.testing._sim_gc import collector_paused


@pytest.fixture(autouse=True)
def _restore_collector() -> Iterator[None]:
    was_enabled = gc.isenabled()
    yield
    if was_enabled:
        gc.enable()
    else:
        gc.disable()


def test_a_run_pauses_the_collector_and_enables_it_again() -> None:
    gc.enable()
    sim = Simulation(3, 1, formed=True)
    seen: list[bool] = []
    sim.run_until(lambda: seen.append(gc.isenabled()) or False, 1.0, check_interval=0.5)
    assert seen
    assert not any(seen)
    assert gc.isenabled()


def test_a_collector_the_caller_disabled_stays_disabled() -> None:
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


def test_the_collector_comes_back_after_an_error() -> None:
    gc.enable()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()

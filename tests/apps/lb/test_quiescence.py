"""--wait parsing and the quiescence arithmetic."""

from __future__ import annotations

import pytest

from crdtgossip.apps.lb import DEFAULT_WAIT, Quiescence, Wait
from crdtgossip.apps.lb._quiescence import MAX_WAIT
from crdtgossip.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "minimum", "maximum"),
    [
        ("2s:10s", 2.0, 10.0),
        ("500ms:3s", 0.5, 3.0),
        ("0:0", 0.0, 0.0),
        ("1.5:2", 1.5, 2.0),
        ("1m:2m", 60.0, 120.0),
        ("5", 5.0, 20.0),
        ("20m", 1200.0, MAX_WAIT),
        (DEFAULT_WAIT, 1.0, 4.0),
    ],
)
def test_parse(text: str, minimum: float, maximum: float) -> None:
    assert Wait.parse(text) == Wait(minimum, maximum)


@pytest.mark.parametrize("text", ["", ":", "2s:", "a:b", "-1:2", "3:2", "1h:2h", "2s:10x", "2 s"])
def test_parse_refuses(text: str) -> None:
    with pytest.raises(ConfigError, match="--wait"):
        Wait.parse(text)


def test_nothing_waiting_is_never_due() -> None:
    quiet = Quiescence(Wait(1.0, 4.0))
    assert quiet.due() is None


def test_each_change_pushes_the_render_back_by_the_minimum() -> None:
    quiet = Quiescence(Wait(1.0, 4.0))
    quiet.changed(10.0)
    assert quiet.due() == 11.0
    quiet.changed(10.5)
    assert quiet.due() == 11.5


def test_a_change_that_never_settles_renders_at_the_maximum() -> None:
    quiet = Quiescence(Wait(1.0, 4.0))
    for step in range(10):
        quiet.changed(10.0 + step * 0.5)
    assert quiet.due() == 14.0


def test_clear_starts_the_next_burst_afresh() -> None:
    quiet = Quiescence(Wait(1.0, 4.0))
    quiet.changed(10.0)
    quiet.clear()
    assert quiet.due() is None
    quiet.changed(20.0)
    assert quiet.due() == 21.0


def test_zero_wait_is_due_at_once() -> None:
    quiet = Quiescence(Wait(0.0, 0.0))
    quiet.changed(5.0)
    assert quiet.due() == 5.0

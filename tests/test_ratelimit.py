"""Tests of crdtgossip._ratelimit: the log limiter a flooding peer cannot get past."""

from __future__ import annotations

import logging

import pytest

from crdtgossip._ratelimit import MAX_KINDS, LogLimiter


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_burst_passes_then_lines_are_held_and_counted_until_the_next_window() -> None:
    clock = Clock()
    limiter = LogLimiter(burst=3, interval=5.0, clock=clock)
    assert [limiter.allow("x") for _ in range(5)] == [0, 0, 0, None, None]
    clock.now = 4.9
    assert limiter.allow("x") is None
    clock.now = 5.0
    assert limiter.allow("x") == 3  # the three held back are reported once
    assert limiter.allow("x") == 0


def test_kinds_are_limited_separately_and_their_number_is_bounded() -> None:
    clock = Clock()
    limiter = LogLimiter(burst=1, interval=5.0, clock=clock)
    assert limiter.allow("a") == 0
    assert limiter.allow("a") is None
    assert limiter.allow("b") == 0
    for index in range(MAX_KINDS + 10):
        limiter.allow(f"peer-{index}")
    assert len(limiter._windows) <= MAX_KINDS


def test_log_says_how_many_lines_were_held_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    limiter = LogLimiter(burst=1, interval=1.0, clock=clock)
    logger = logging.getLogger("crdtgossip.test_ratelimit")
    with caplog.at_level(logging.INFO, logger=logger.name):
        logged = [limiter.log(logger, logging.INFO, "k", "line %d", n) for n in range(1000)]
        clock.now = 1.0
        limiter.log(logger, logging.INFO, "k", "line %d", 1000)
    assert logged.count(True) == 1
    messages = [record.getMessage() for record in caplog.records]
    assert messages == ["line 0", "line 1000 (999 similar lines held back)"]


def test_a_disabled_level_costs_nothing_and_counts_nothing() -> None:
    limiter = LogLimiter(burst=1, interval=1.0, clock=Clock())
    logger = logging.getLogger("crdtgossip.test_ratelimit.quiet")
    logger.setLevel(logging.ERROR)
    assert not limiter.log(logger, logging.INFO, "k", "hidden")
    assert limiter.allow("k") == 0

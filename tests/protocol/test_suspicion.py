"""Suspicion timeouts with memberlist's formulas and numbers."""

from __future__ import annotations

import math

import pytest

from crdtgossip.protocol.suspicion import (
    Suspicion,
    confirmations_wanted,
    remaining_timeout,
    suspicion_min_timeout,
)


@pytest.mark.parametrize(
    ("members", "expected"),
    [(1, 4.0), (5, 4.0), (10, 4.0), (100, 8.0), (1000, 12.0), (10_000, 16.0)],
)
def test_minimum_grows_with_log10_of_the_cluster(members: int, expected: float) -> None:
    # memberlist LAN: SuspicionMult 4, ProbeInterval 1 s.
    assert suspicion_min_timeout(4, members, 1.0) == pytest.approx(expected)


def test_confirmations_wanted() -> None:
    assert confirmations_wanted(4, 100) == 2
    assert confirmations_wanted(4, 4) == 2
    assert confirmations_wanted(4, 3) == 0  # nobody else could confirm
    assert confirmations_wanted(2, 100) == 0


def test_remaining_timeout_shrinks_logarithmically_to_the_minimum() -> None:
    lo, hi = 4.0, 24.0
    assert remaining_timeout(0, 3, lo, hi) == hi
    one = hi - math.log(2) / math.log(4) * (hi - lo)
    assert remaining_timeout(1, 3, lo, hi) == pytest.approx(one)
    assert remaining_timeout(3, 3, lo, hi) == pytest.approx(lo)
    assert remaining_timeout(9, 3, lo, hi) == lo
    assert remaining_timeout(0, 0, lo, hi) == lo


def test_a_suspicion_counts_each_accuser_once() -> None:
    suspicion = Suspicion("a", wanted=2, minimum=4.0, maximum=24.0, start=100.0)
    assert suspicion.deadline == 124.0
    assert not suspicion.confirm("a")  # the first accuser cannot confirm itself
    assert suspicion.confirm("b")
    assert not suspicion.confirm("b")
    middle = suspicion.deadline
    assert 104.0 < middle < 124.0
    assert suspicion.confirm("c")
    assert suspicion.deadline == pytest.approx(104.0)
    assert not suspicion.confirm("d")  # already at the minimum
    assert suspicion.confirmations == 2

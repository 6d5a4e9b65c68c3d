"""Tests of crdtgossip.consistency: how many members each level asks for."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import All, AtLeast, Majority, MajorityPlus
from crdtgossip.errors import ConfigError


@given(members=st.integers(min_value=1, max_value=10_000), n=st.integers(0, 100))
def test_majority_plus_is_between_majority_and_all(members: int, n: int) -> None:
    needed = MajorityPlus(n).required(members)
    assert Majority().required(members) <= needed <= All().required(members)
    assert needed == min(Majority().required(members) + n, members)
    assert MajorityPlus(0).required(members) == Majority().required(members)


@pytest.mark.parametrize(("members", "n", "needed"), [(5, 1, 4), (5, 2, 5), (5, 9, 5), (4, 1, 4)])
def test_majority_plus_examples(members: int, n: int, needed: int) -> None:
    assert MajorityPlus(n).required(members) == needed


@pytest.mark.parametrize("bad", [-1, True, 1.5, "1"])
def test_majority_plus_refuses_a_bad_n(bad: object) -> None:
    with pytest.raises(ConfigError):
        MajorityPlus(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        MajorityPlus(1, timeout=0)
    assert AtLeast(2).required(9) == 2

"""The change index and the blocking query parameters."""

from __future__ import annotations

import asyncio
import random

import pytest

from crdtgossip.apps.registry.index import (
    DEFAULT_WAIT,
    JITTER_DIVISOR,
    MAX_WAIT,
    BlockingQuery,
    ChangeIndex,
    parse_blocking,
)
from crdtgossip.apps.registry.model import RegistryError

#: A failure guard: a wait that should end at once must not hang the suite.
GUARD = 30.0


def test_no_index_means_no_blocking() -> None:
    assert parse_blocking({}) is None
    assert parse_blocking({"wait": "10s"}) is None


@pytest.mark.parametrize(
    ("wait", "seconds"),
    [
        (None, DEFAULT_WAIT),
        ("10s", 10.0),
        ("10", 10.0),
        ("250ms", 0.25),
        ("1.5m", 90.0),
        ("0s", 0.0),
        ("1h", MAX_WAIT),
        ("99999999999999999999s", MAX_WAIT),
    ],
)
def test_wait_durations(wait: str | None, seconds: float) -> None:
    query = {"index": "7"} if wait is None else {"index": "7", "wait": wait}
    assert parse_blocking(query) == BlockingQuery(index=7, wait=seconds)


@pytest.mark.parametrize(
    "query",
    [
        {"index": ""},
        {"index": "-1"},
        {"index": "+1"},
        {"index": "1e3"},
        {"index": "٣"},  # a digit, but not an ASCII one
        {"index": str(2**63)},
        {"index": "1", "wait": ""},
        {"index": "1", "wait": "ten"},
        {"index": "1", "wait": "10 s"},
        {"index": "1", "wait": "1d"},
        {"index": "1", "wait": "-1s"},
        {"wait": "ten"},  # no index: the read would not block, but the wait is wrong
    ],
)
def test_bad_parameters(query: dict[str, str]) -> None:
    with pytest.raises(RegistryError) as caught:
        parse_blocking(query)
    assert caught.value.status == 400


def test_jitter_stays_within_a_sixteenth() -> None:
    query = BlockingQuery(index=1, wait=160.0)
    rng = random.Random(5)
    draws = [query.jittered_wait(rng) for _ in range(200)]
    assert all(160.0 <= draw <= 160.0 + 160.0 / JITTER_DIVISOR for draw in draws)
    assert len(set(draws)) > 1


async def test_wait_past_wakes_on_bump() -> None:
    index = ChangeIndex()
    assert index.value == 1
    waiter = asyncio.create_task(index.wait_past(1, timeout=MAX_WAIT))
    await asyncio.sleep(0)
    assert not waiter.done()
    index.bump()
    await asyncio.wait_for(waiter, GUARD)
    assert index.value == 2


async def test_wait_past_returns_at_once_when_behind_or_ahead() -> None:
    index = ChangeIndex()
    index.bump()
    await asyncio.wait_for(index.wait_past(0, timeout=MAX_WAIT), GUARD)
    await asyncio.wait_for(index.wait_past(1, timeout=MAX_WAIT), GUARD)
    await asyncio.wait_for(index.wait_past(50, timeout=MAX_WAIT), GUARD)


async def test_wait_past_ends_with_its_timeout() -> None:
    index = ChangeIndex()
    await asyncio.wait_for(index.wait_past(1, timeout=0.01), GUARD)
    assert index.value == 1


async def test_close_releases_every_waiter_for_good() -> None:
    index = ChangeIndex()
    waiters = [asyncio.create_task(index.wait_past(1, timeout=MAX_WAIT)) for _ in range(3)]
    await asyncio.sleep(0)
    index.close()
    assert index.closed
    await asyncio.wait_for(asyncio.gather(*waiters), GUARD)
    await asyncio.wait_for(index.wait_past(1, timeout=MAX_WAIT), GUARD)

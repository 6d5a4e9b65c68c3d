"""The hybrid logical clock (crdtgossip/protocol/clock.py) and the engine's check of
received stamps against ``GossipConfig.max_clock_offset``."""

from __future__ import annotations

import logging
import random
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.config import GossipConfig
from crdtgossip.crdts import LWWMap, LWWRegister, ORMap
from crdtgossip.crdts._base import delta_of
from crdtgossip.errors import ConfigError, OperationError
from crdtgossip.protocol.clock import (
    HLC,
    LOGICAL_BITS,
    LOGICAL_MASK,
    logical,
    max_stamp,
    physical_ns,
)

from .cluster import VirtualCluster

SECOND = 10**9
OFFSET = SECOND // 2
INT_MAX = 2**64 - 1
START = 1_700_000_000 * SECOND


class FakeWall:
    """A settable physical clock in ns."""

    def __init__(self, now: int = START) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


def test_layout_splits_physical_ticks_and_the_logical_counter() -> None:
    stamp = (12345 << LOGICAL_BITS) | 7
    assert logical(stamp) == 7
    assert physical_ns(stamp) == 12345 << LOGICAL_BITS
    wall = FakeWall(START + 999)  # inside one tick: the stamp is the tick's start
    clock = HLC(wall, OFFSET)
    assert clock.stamp() == START + 999 - ((START + 999) & LOGICAL_MASK)


def test_stamps_rise_while_the_wall_clock_stands_still_or_goes_back() -> None:
    wall = FakeWall()
    clock = HLC(wall, OFFSET)
    first = clock.stamp()
    assert clock.stamp() == first + 1
    wall.now -= 10 * SECOND  # NTP stepped the clock back
    assert clock.stamp() == first + 2
    wall.now += 20 * SECOND
    assert clock.stamp() == physical_ns(wall.now)


# Operations on a clock: the wall clock moves (even backwards), a stamp is received
# (up to twice the offset ahead, so some are refused), or a local stamp is made.
_ops = st.lists(
    st.one_of(
        st.tuples(st.just("wall"), st.integers(-SECOND, SECOND)),
        st.tuples(st.just("observe"), st.integers(-10 * SECOND, 2 * OFFSET)),
        st.tuples(st.just("stamp"), st.integers(0, 2**40)),
    ),
    max_size=60,
)


@given(_ops)
def test_a_stamp_made_after_observing_one_is_ordered_after_it(ops: list[tuple[str, int]]) -> None:
    wall = FakeWall()
    clock = HLC(wall, OFFSET)
    highest = 0  # the highest stamp made or admitted so far
    for op, amount in ops:
        if op == "wall":
            wall.now += amount
        elif op == "observe":
            received = max(0, wall.now + amount)
            last = clock.last
            admitted = clock.observe(received)
            # Admitted: within the offset of the wall clock, or no newer than a stamp
            # already taken (harmless, whatever the wall clock now says).
            assert admitted == (received <= wall.now + OFFSET or received <= last)
            if admitted:
                highest = max(highest, received)
        else:
            seen = max(0, wall.now - amount)  # the key's own stamp, at or before now
            stamp = clock.stamp(seen)
            assert stamp > highest
            assert stamp > seen
            highest = stamp
        assert clock.last <= wall.now + OFFSET or clock.last == highest


def test_the_logical_counter_stays_below_its_bound_under_a_million_skewed_stamps() -> None:
    # Three peers, clocks skewed by up to the offset either way, exchanging stamps with
    # every event; the physical clocks advance a microsecond per event (a node makes
    # far fewer stamps than that). Bounded: 10**6 events.
    rng = random.Random(14)
    skews = [-OFFSET + 1, 0, OFFSET - 1]
    base = FakeWall()
    walls = [lambda skew=skew: base.now + skew for skew in skews]
    clocks = [HLC(wall, OFFSET) for wall in walls]
    last_sent = [0, 0, 0]
    top_logical = 0
    for _ in range(10**6):
        base.now += 1000
        i = rng.randrange(3)
        source = rng.randrange(3)
        if source != i and last_sent[source]:
            clocks[i].observe(last_sent[source])
        stamp = clocks[i].stamp()
        last_sent[i] = stamp
        top_logical = max(top_logical, logical(stamp))
        # Never further ahead of its own wall clock than the offset plus the skew.
        assert physical_ns(stamp) <= walls[i]() + 2 * OFFSET
    assert top_logical < 1 << LOGICAL_BITS
    assert all(clock.carries == 0 for clock in clocks)


def test_a_frozen_clock_carries_rather_than_reuse_a_stamp() -> None:
    wall = FakeWall(START)
    clock = HLC(wall, OFFSET)
    stamps = {clock.stamp() for _ in range(LOGICAL_MASK + 3)}
    assert len(stamps) == LOGICAL_MASK + 3
    assert clock.carries == 1


def test_no_stamp_after_the_largest_is_an_operation_error_not_an_overflow() -> None:
    clock = HLC(FakeWall(), OFFSET)
    with pytest.raises(OperationError):
        clock.stamp(INT_MAX)
    assert clock.stamp() < INT_MAX  # the clock itself was not dragged along
    assert not clock.observe(INT_MAX)


def test_an_outlier_key_does_not_drag_the_clock() -> None:
    wall = FakeWall()
    clock = HLC(wall, OFFSET)
    far = wall.now + 3600 * SECOND
    assert clock.stamp(far) == far + 1
    assert clock.stamp() < wall.now + OFFSET


def test_delta_of_gives_the_node_clock_to_lww_writes_at_every_depth() -> None:
    wall = FakeWall()
    clock = HLC(wall, OFFSET)
    clock.observe(wall.now + OFFSET)  # a peer's stamp, just within the offset
    register: LWWRegister[str] = LWWRegister()
    delta_of(register, lambda r: r.set("v", "a"), clock.stamp)
    assert register.timestamp == wall.now + OFFSET + 1
    lww_map: LWWMap[str, int] = LWWMap()
    delta_of(lww_map, lambda m: m.set("k", 1, "a"), clock.stamp)
    assert lww_map.entries()["k"].timestamp == wall.now + OFFSET + 2
    nested: ORMap[str] = ORMap(LWWRegister)
    delta_of(nested, lambda m: m.update("k", "a", lambda r: r.set("x", "a")), clock.stamp)
    assert nested["k"].timestamp == wall.now + OFFSET + 3
    assert max_stamp(nested) == (wall.now + OFFSET + 3, "a")
    # Outside delta_of: the wall clock, as before.
    plain: LWWRegister[str] = LWWRegister()
    plain.set("v", "a")
    assert abs(plain.timestamp - time.time_ns()) < 60 * SECOND


def test_explicit_timestamps_still_win_as_given() -> None:
    clock = HLC(FakeWall(), OFFSET)
    register: LWWRegister[str] = LWWRegister()
    delta_of(register, lambda r: r.set("v", "a", timestamp=5), clock.stamp)
    assert register.timestamp == 5


def test_max_clock_offset_is_checked() -> None:
    assert GossipConfig().max_clock_offset == 0.5
    with pytest.raises(ConfigError, match="max_clock_offset"):
        GossipConfig(max_clock_offset=0)


# --- the engine ---------------------------------------------------------------------------


def _three() -> VirtualCluster:
    cluster = VirtualCluster(seed=14)
    names = cluster.start(3)
    assert cluster.run_until(lambda: cluster.sees_all(names), 30.0)
    return cluster


@pytest.mark.parametrize(
    "delta",
    [
        lambda stamp: LWWRegister[str]().set("future", "n1-0", timestamp=stamp),
        lambda stamp: LWWMap[str, str]().set("k", "future", "n1-0", timestamp=stamp),
        lambda stamp: ORMap[str](LWWRegister).update(
            "k", "n1-0", lambda r: r.set("future", "n1-0", timestamp=stamp)
        ),
    ],
    ids=["LWWRegister", "LWWMap", "ORMap(LWWRegister)"],
)
def test_a_write_stamped_a_year_ahead_is_refused_and_counted(delta: object) -> None:
    cluster = _three()
    ahead = time.time_ns() + 365 * 24 * 3600 * SECOND
    cluster.engines["n1"].update("k", delta(ahead), cluster.now)  # type: ignore[operator]
    cluster.run(2 * cluster.config.push_pull_interval)
    for name in ("n0", "n2"):
        engine = cluster.engines[name]
        assert engine.get("k") is None
        stats = engine.stats()
        assert stats["drop_clock_ahead"] >= 1
        assert stats["clock_behind"] == 0  # one writer of two ahead: its clock, not ours
        assert engine.clock.last < time.time_ns() + OFFSET


def test_an_honest_write_within_the_offset_is_merged_and_advances_the_clock() -> None:
    cluster = _three()
    stamp = time.time_ns() + OFFSET // 2
    cluster.engines["n1"].update(
        "k", LWWRegister[str]().set("v", "n1-0", timestamp=stamp), cluster.now
    )
    cluster.run(1.0)
    engine = cluster.engines["n0"]
    assert engine.get("k") == cluster.engines["n1"].get("k")
    assert engine.clock.last >= stamp
    assert engine.clock.stamp() > stamp


def test_a_node_whose_clock_is_behind_says_so(caplog: pytest.LogCaptureFixture) -> None:
    cluster = _three()
    late = cluster.engines["n0"]
    late.clock = HLC(lambda: time.time_ns() - 3600 * SECOND, OFFSET)
    with caplog.at_level(logging.WARNING, logger="crdtgossip.clock"):
        for name in ("n1", "n2"):
            engine = cluster.engines[name]
            register = LWWRegister[str]().set(name, f"{name}-0", timestamp=time.time_ns())
            engine.update(f"k-{name}", register, cluster.now)
        cluster.run(1.0)
    assert late.stats()["clock_behind"] == 1
    assert late.stats()["drop_clock_ahead"] >= 2
    assert "clock looks behind" in caplog.text
    assert cluster.engines["n1"].stats()["clock_behind"] == 0


@pytest.mark.parametrize("kind", ["LWWRegister", "LWWMap"])
def test_a_repair_patch_stamped_ahead_is_refused(kind: str) -> None:
    # Both sides hold the key, so anti-entropy repairs it by Diff (not a whole State).
    cluster = _three()

    def write(engine_name: str, stamp: int) -> None:
        engine = cluster.engines[engine_name]
        if kind == "LWWRegister":
            engine.update("k", LWWRegister[str]().set("v", "n1-0", timestamp=stamp), cluster.now)
        else:
            engine.update(
                "k", LWWMap[str, str]().set("x", "v", "n1-0", timestamp=stamp), cluster.now
            )

    write("n1", time.time_ns())
    cluster.run(2.0)
    assert cluster.engines["n0"].get("k") is not None
    before = cluster.engines["n0"].get("k")
    assert before is not None
    kept = before.copy()
    write("n1", time.time_ns() + 3600 * SECOND)
    cluster.run(2 * cluster.config.push_pull_interval)
    engine = cluster.engines["n0"]
    assert engine.get("k") == kept
    assert engine.stats()["drop_clock_ahead"] >= 2  # the delta, then the repair patch
    assert engine.stats()["repair_steps"] >= 1


def test_stamps_at_every_integer_edge_decode_or_raise_decode_error_only() -> None:
    import msgpack

    from crdtgossip.codec import decode, encode
    from crdtgossip.errors import DecodeError

    wire = msgpack.unpackb(encode(LWWRegister._from_parts("v", 1, "r")), raw=False)
    clock = HLC(time.time_ns, OFFSET)
    edges = [-(2**63), -(2**31), -1, 0, 2**31, 2**32, 2**63, 2**64 - 1, time.time_ns()]
    decoded = refused = errors = 0
    for edge in edges:
        for step in range(-500, 501):  # bounded: about 9,000 stamps
            stamp = edge + step
            if not -(2**63) <= stamp <= INT_MAX:
                continue  # msgpack itself cannot carry it
            wire[2][1] = stamp
            try:
                register = decode(msgpack.packb(wire, use_bin_type=True))
            except DecodeError:
                errors += 1
                assert stamp < 0
                continue
            assert isinstance(register, LWWRegister)
            assert register.timestamp == stamp
            decoded += 1
            refused += not clock.observe(register.timestamp)
    assert errors > 0
    assert decoded > 0
    assert refused > 0

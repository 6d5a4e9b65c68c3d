"""How the benchmarks measure time and memory, in one place so every benchmark agrees.

Time: on a monotonic wall clock (``perf_counter_ns``) by default, or on the thread's CPU
clock for pure computation on a shared machine. Each sample gets fresh inputs built
*before* the clock starts (the code under test
may mutate them, as ``merge`` mutates its receiver); the cyclic garbage collector is off
while the clock runs, so a collection triggered by earlier allocations is not charged to
the code under test, and is restored afterwards. Cases that a ratio compares are timed
in turn, one sample of each per round, so a busy spell on the machine hits both. The
median of the samples is the figure (robust to a stray slow sample); the least is kept
as ``best`` (the run with the least interference). Memory: :mod:`tracemalloc` counts
the bytes allocated by the Python allocators and still alive, after a full collection.
"""

from __future__ import annotations

import gc
import statistics
import time
import tracemalloc
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

__all__ = [
    "CPU_CLOCK",
    "ENGINE_FILES",
    "NS_PER_S",
    "WALL_CLOCK",
    "Case",
    "Clock",
    "Timing",
    "engine_memory",
    "most_held",
    "retained_bytes",
    "time_cases",
]

NS_PER_S = 1_000_000_000

#: A clock returning integer nanoseconds.
Clock = Callable[[], int]
#: Wall time: everything the action waited for, other processes' turns on the CPU
#: included. Right for work that waits on I/O or timers.
WALL_CLOCK: Clock = time.perf_counter_ns
#: CPU time of the calling thread (user and system): what the action itself cost,
#: without the time the scheduler gave to other processes. Right for pure computation
#: on a shared machine: with two cores and four to six other busy processes, nine
#: wall-time samples of one 50,000-element loop spread over 4.3x (median 12.6 ms, best
#: 2.9 ms), nine CPU-time samples over 1.5x. Nanosecond resolution on Linux and macOS;
#: on Windows it ticks every ~15 ms, too coarse for the shorter samples.
CPU_CLOCK: Clock = time.thread_time_ns

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Timing:
    """The samples of one timed action.

    Attributes:
        samples_ns: Wall time of each sample, in nanoseconds.
        ops: Operations per sample (the work divides by it).
    """

    samples_ns: tuple[int, ...]
    ops: int

    @property
    def median_ns_per_op(self) -> float:
        """The median sample divided by the operations in it."""
        return statistics.median(self.samples_ns) / self.ops

    @property
    def best_ns_per_op(self) -> float:
        """The least sample divided by the operations in it."""
        return min(self.samples_ns) / self.ops


class Case(Generic[T]):
    """One thing to time: how to build its inputs, and the work to time on them.

    Args:
        prepare: Builds the inputs of one sample; not timed.
        action: The timed work; receives what ``prepare`` returned and may mutate it.
        ops: Operations ``action`` performs per call, to report time per operation.
            Time many small operations in one call rather than one each: a call of
            ``perf_counter_ns`` itself costs tens of nanoseconds.

    Raises:
        ValueError: ``ops`` is below 1.
    """

    __slots__ = ("action", "ops", "prepare")

    def __init__(
        self, prepare: Callable[[], T], action: Callable[[T], object], ops: int = 1
    ) -> None:
        if ops < 1:
            raise ValueError(f"ops must be at least 1, not {ops}")
        self.prepare = prepare
        self.action = action
        self.ops = ops

    def sample(self, clock: Clock) -> int:
        """Build fresh inputs, then time one call of the action on them (nanoseconds)."""
        subject = self.prepare()
        # Garbage left by earlier samples is collected now, off the clock.
        gc.collect()
        was_enabled = gc.isenabled()
        gc.disable()
        try:
            start = clock()
            self.action(subject)
            return clock() - start
        finally:
            if was_enabled:
                gc.enable()


def time_cases(
    cases: Mapping[str, Case[Any]], *, repeats: int, clock: Clock = WALL_CLOCK
) -> dict[str, Timing]:
    """Time every case ``repeats`` times, interleaved: one sample of each per round.

    Interleaving matters on a shared machine: when other work comes and goes, it slows
    the samples of one round alike, so a ratio of two cases' medians stays fair where
    timing one case after the other would charge a busy spell to one of them only.

    Args:
        cases: The cases, by name; each round samples them in this order.
        repeats: Samples per case (at least 1).
        clock: :data:`WALL_CLOCK` (the default) or :data:`CPU_CLOCK`; record which one in
            the result's params, so runs on different clocks are never compared.

    Returns:
        Each case's samples, by name.

    Raises:
        ValueError: ``repeats`` is below 1.
    """
    if repeats < 1:
        raise ValueError(f"repeats must be at least 1, not {repeats}")
    samples: dict[str, list[int]] = {name: [] for name in cases}
    for _ in range(repeats):
        for name, case in cases.items():
            samples[name].append(case.sample(clock))
    return {name: Timing(tuple(samples[name]), case.ops) for name, case in cases.items()}


def retained_bytes(build: Callable[[], R]) -> tuple[int, int, R]:
    """Memory kept alive by what ``build()`` returns, and the peak while it ran.

    Tracing slows allocation-heavy code several times over, so ``build`` should do only
    what is to be measured. Everything ``build`` allocated and still alive counts: keep
    it from caching objects elsewhere.

    Returns:
        ``(retained, peak, built)``: bytes still allocated after ``build`` returned and
        a full collection; the most bytes allocated at once while it ran (both counted
        from the start of tracing); and what ``build`` returned, alive until the caller
        drops it.

    Raises:
        RuntimeError: tracemalloc was already tracing (another measurement is running
            and the two would count each other's allocations).
    """
    if tracemalloc.is_tracing():
        raise RuntimeError("tracemalloc is already tracing; nested measurements would mix")
    gc.collect()
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        built = build()
        gc.collect()
        after, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return after - before, peak - before, built


ENGINE_FILES = (
    "*/crdtgossip/protocol/*",
    "*/crdtgossip/crdts/*",
    "*/crdtgossip/_codec/*",
    "*/crdtgossip/keylife.py",
)
"""Where the memory counted as the engines' is allocated: the engine, the states and
the codec (not a simulator's own bookkeeping)."""


def engine_memory() -> int:
    """Bytes allocated by the engines' code and the states' (:data:`ENGINE_FILES`),
    still live; ``tracemalloc`` must be tracing."""
    gc.collect()
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, pattern) for pattern in ENGINE_FILES]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


def most_held(engines: Iterable[Any], counts: Callable[[Any], Mapping[str, int]]) -> dict[str, int]:
    """The largest of each count ``counts(engine)`` gives over ``engines`` (what the
    member that holds the most holds, per kind of record)."""
    most: dict[str, int] = {}
    for engine in engines:
        for name, count in counts(engine).items():
            most[name] = max(most.get(name, 0), count)
    return most

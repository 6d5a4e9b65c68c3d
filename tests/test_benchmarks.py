"""Smoke tests of the issue-12 benchmarks: each runs at its tiny ``--quick`` size.

They check that every point was measured (nothing skipped, every repair done), never
how fast: timing belongs to ``python -m benchmarks``, not to tests.
"""

from __future__ import annotations

import os

from benchmarks import bench_clock, bench_registry, bench_repair, bench_riemann, bench_writepath
from benchmarks._result import BenchResult
from benchmarks.bench_writepath import KINDS, MODES, QUICK_SIZES, _fits, _name, _Series


def names(result: BenchResult) -> set[str]:
    return {figure.name for figure in result.figures}


def test_writepath_measures_every_point_of_its_quick_run() -> None:
    result = bench_writepath.run(quick=True)
    expected = {
        _name(operation, kind, mode, n)
        for operation in ("update", "get")
        for kind in KINDS
        for mode in MODES
        for n in QUICK_SIZES
    }
    assert expected <= names(result)
    assert not [note for note in result.notes if "skipped" in note]
    ratios = {ratio.name for ratio in result.ratios}
    assert "Local update, empty key / encode + seal + sendto" in ratios
    assert "GCounter / dict per replica, 10,000 increments" in ratios


def test_writepath_skips_a_point_predicted_past_the_bound() -> None:
    result = BenchResult("t")
    known = _Series(last_size=1_000, setup_seconds=10.0, op_seconds=0.01)
    assert not _fits(result, known, "ORSet", "memory", 10_000)  # 100 s predicted
    assert "skipped from 10,000 entries" in known.stopped
    assert not _fits(result, known, "ORSet", "memory", 100_000)  # stays stopped
    quick = _Series(last_size=1_000, setup_seconds=1.0, op_seconds=0.01)
    assert _fits(result, quick, "ORSet", "memory", 10_000)
    assert not quick.stopped


def test_repair_mends_every_quick_difference() -> None:
    result = bench_repair.run(quick=True)
    for k in bench_repair.QUICK_DIFFERENCES:
        sent = result.get_figure(f"repair bytes 1e3, k={k}")
        assert sent.value > 0
    assert not [note for note in result.notes if "not repaired" in note]


def test_registry_registers_and_lists_every_quick_instance() -> None:
    result = bench_registry.run(quick=True)
    (n,) = bench_registry.QUICK_SIZES
    assert result.get_figure("registered 2e1").value == n
    for index in (1, 2):
        assert f"listed by agent {index} after the last PUT 2e1" in names(result)
    assert not [note for note in result.notes if "stopped" in note or "listed" in note]


def test_clock_times_every_case() -> None:
    result = bench_clock.run(quick=True)
    for name in ("raw tuples", "LWWRegister, HLC", "LWWRegister, wall clock"):
        assert result.get_figure(name).value > 0


def test_riemann_takes_every_quick_event_each_way() -> None:
    result = bench_riemann.run(quick=True)
    for way in ("rest", "tcp", "tcp batched", "udp"):
        assert result.get_figure(f"events per second, {way}").value > 0
    assert result.get_figure("udp blast, share taken").value > 0
    assert not result.notes  # no way stopped short, no datagram of the paced way lost


def test_cpu_ticks_agree_with_os_times() -> None:
    sum(i * i for i in range(300_000))  # some CPU time, so a wrong field shows
    ticks = bench_registry._cpu_ticks(os.getpid())
    times = os.times()
    # Both read the kernel's counters of this process; they differ by a few ticks.
    assert abs(ticks / os.sysconf("SC_CLK_TCK") - (times.user + times.system)) < 0.1

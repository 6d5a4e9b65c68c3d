"""Compare a run's ratios with the committed baseline.

Only ratios are compared, never absolute figures: a ratio divides the code under test by
a floor measured in the same run, so it moves when our code gets slower or bigger, not
when the machine does. A ratio *regresses* when it is worse than the baseline's by more
than its tolerance: ``now > baseline * (1 + tolerance)`` for a cost (lower is better),
``now < baseline / (1 + tolerance)`` for a speed-up (higher is better).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any

from benchmarks._result import FORMAT_VERSION

__all__ = ["DEFAULT_TOLERANCE", "Comparison", "IncomparableError", "Status", "compare"]

#: How much worse than the baseline a ratio may get before --compare fails: 25%.
#: Measured: four full runs of the ORSet benchmark on this project's two-vCPU machine,
#: with four to six other processes busy, kept each 50,000-element ratio within about
#: 25% from lowest to highest and within 8% of the baseline in the --compare run; a real
#: regression in a pure-Python hot path (an extra lookup, call or allocation per
#: element) costs 30% or more. (pyperf's ``compare_to`` likewise calls small differences
#: "not significant" rather than a change.) A noisier ratio states its own tolerance in
#: its benchmark.
DEFAULT_TOLERANCE = 0.25


class Status(Enum):
    """The outcome for one ratio."""

    OK = "ok"
    IMPROVED = "improved"
    REGRESSED = "REGRESSED"
    MISSING = "MISSING"  # in the baseline, not in this run: fails (rename = new baseline)
    NEW = "new"  # in this run, not in the baseline: reported, does not fail


@dataclass(frozen=True)
class Comparison:
    """One ratio, now and in the baseline.

    Attributes:
        name: The ratio's name.
        baseline: Its baseline value (None when NEW).
        now: Its value in this run (None when MISSING).
        change: How many times worse (>1) or better (<1) than the baseline, whichever
            direction is better for this ratio; None when either side is missing.
        tolerance: The tolerance applied.
        status: The verdict.
    """

    name: str
    baseline: float | None
    now: float | None
    change: float | None
    tolerance: float
    status: Status

    @property
    def fails(self) -> bool:
        """Whether this entry makes --compare exit non-zero."""
        return self.status in (Status.REGRESSED, Status.MISSING)


class IncomparableError(Exception):
    """The baseline cannot be compared with this run (format or parameters differ)."""


def compare(current: Mapping[str, Any], baseline: Mapping[str, Any]) -> list[Comparison]:
    """Compare the ratios of two JSON documents written by the harness.

    Args:
        current: This run's document.
        baseline: The baseline's document.

    Returns:
        One entry per ratio of either document: the baseline's order, then new ones.

    Raises:
        IncomparableError: The documents have different format versions or were made
            with different parameters (sizes, repeat counts): their ratios need not
            agree, so a comparison would mislead.
    """
    if baseline.get("format") != FORMAT_VERSION:
        raise IncomparableError(
            f"baseline format {baseline.get('format')!r}, this harness writes "
            f"{FORMAT_VERSION}; write a new baseline with --update-baseline"
        )
    if baseline.get("params") != current.get("params"):
        raise IncomparableError(
            f"baseline parameters {baseline.get('params')!r} differ from this run's "
            f"{current.get('params')!r} (--quick runs cannot be compared)"
        )
    now_by_name = {ratio["name"]: ratio for ratio in current.get("ratios", [])}
    base_by_name = {ratio["name"]: ratio for ratio in baseline.get("ratios", [])}
    results: list[Comparison] = []
    for name, base in base_by_name.items():
        now = now_by_name.get(name)
        if now is None:
            tolerance = _tolerance(base)
            results.append(Comparison(name, base["value"], None, None, tolerance, Status.MISSING))
            continue
        results.append(_judge(name, base, now))
    for name, now in now_by_name.items():
        if name not in base_by_name:
            tolerance = _tolerance(now)
            results.append(Comparison(name, None, now["value"], None, tolerance, Status.NEW))
    return results


def _tolerance(ratio: Mapping[str, Any]) -> float:
    tolerance = ratio.get("tolerance")
    return DEFAULT_TOLERANCE if tolerance is None else float(tolerance)


def _judge(name: str, base: Mapping[str, Any], now: Mapping[str, Any]) -> Comparison:
    # The current run's tolerance applies: the code that measures states how noisy it is.
    tolerance = _tolerance(now)
    base_value, now_value = base["value"], now["value"]
    if base_value is None or now_value is None or base_value <= 0 or now_value <= 0:
        # Not a number on one side (it was not finite): cannot judge, so do not pass it.
        return Comparison(name, base_value, now_value, None, tolerance, Status.MISSING)
    if now.get("higher_is_better", False):
        change = base_value / now_value
    else:
        change = now_value / base_value
    if change > 1 + tolerance:
        status = Status.REGRESSED
    elif change < 1 / (1 + tolerance):
        status = Status.IMPROVED
    else:
        status = Status.OK
    return Comparison(name, float(base_value), float(now_value), change, tolerance, status)

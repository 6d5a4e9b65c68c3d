"""What a benchmark returns: named figures, ratios between them, and their JSON form.

A *figure* is an absolute measurement (nanoseconds, operations per second, bytes): it
depends on the machine and is printed for reading, never compared between runs. A
*ratio* divides one figure by another measured in the same run on the same machine (the
code under test over a floor that does the least possible work), so most of the
machine's speed cancels out: ratios are what a baseline records and ``--compare``
checks.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from benchmarks._measure import NS_PER_S, Timing

__all__ = ["FORMAT_VERSION", "BenchResult", "Figure", "Param", "Ratio"]

#: Version of the JSON layout written to results/ and baseline/. Raise it when a field
#: changes meaning, so --compare refuses a baseline it would misread.
FORMAT_VERSION = 1

#: A benchmark parameter (sizes, repeat counts): recorded so --compare can refuse to
#: compare runs made with different sizes, whose ratios need not agree.
Param = int | float | str | bool


@dataclass(frozen=True)
class Figure:
    """An absolute measurement.

    Attributes:
        name: Unique within its benchmark; ratios refer to figures by this name.
        value: The typical value (for timings, the median of the samples).
        unit: ``"ns/op"``, ``"ops/s"``, ``"bytes"``, ``"count"``...
        best: For timings, the best sample (least time, or most operations per
            second); None for figures measured once.
        note: What exactly was measured, in a few words.
    """

    name: str
    value: float
    unit: str
    best: float | None = None
    note: str = ""

    @classmethod
    def time_per_op(cls, name: str, timing: Timing, note: str = "") -> Figure:
        """Nanoseconds per operation: the median sample, and the least as ``best``."""
        return cls(name, timing.median_ns_per_op, "ns/op", timing.best_ns_per_op, note)

    @classmethod
    def throughput(cls, name: str, timing: Timing, note: str = "") -> Figure:
        """Operations per second: from the median sample, and the fastest as ``best``."""
        return cls(
            name,
            NS_PER_S / timing.median_ns_per_op,
            "ops/s",
            NS_PER_S / timing.best_ns_per_op,
            note,
        )


@dataclass(frozen=True)
class Ratio:
    """One figure divided by another of the same run (same unit).

    Attributes:
        name: Unique within its benchmark; --compare matches baseline entries by name,
            so renaming one needs a new baseline.
        numerator: Name of the figure divided.
        denominator: Name of the figure it is divided by.
        value: ``numerator.value / denominator.value`` (medians, for timings).
        best: The same quotient of the ``best`` values, when both have one.
        target: The goal, if the project states one (at most this, or at least this
            when ``higher_is_better``); printed beside the value, never enforced.
        higher_is_better: False (the default) for costs, True for speed-ups.
        tolerance: How much worse than the baseline counts as a regression, as a
            fraction; None means the harness default (see benchmarks._compare).
        note: Why this ratio matters, or how to read it.
    """

    name: str
    numerator: str
    denominator: str
    value: float
    best: float | None = None
    target: float | None = None
    higher_is_better: bool = False
    tolerance: float | None = None
    note: str = ""

    def meets_target(self) -> bool | None:
        """Whether ``value`` meets ``target`` (None when there is no target)."""
        if self.target is None:
            return None
        if self.higher_is_better:
            return self.value >= self.target
        return self.value <= self.target


@dataclass
class BenchResult:
    """Everything one benchmark measured in one run.

    Build it with :meth:`figure` and :meth:`ratio`, in the order the table should show.

    Attributes:
        title: One line saying what the benchmark measures.
        params: Sizes and repeat counts the run used.
        figures: The absolute measurements.
        ratios: The comparable results.
        notes: Caveats a reader needs (what was skipped, and why).
    """

    title: str
    params: dict[str, Param] = field(default_factory=dict)
    figures: list[Figure] = field(default_factory=list)
    ratios: list[Ratio] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def figure(self, figure: Figure) -> Figure:
        """Record ``figure`` and return it.

        Raises:
            ValueError: A figure of that name was already recorded.
        """
        if any(known.name == figure.name for known in self.figures):
            raise ValueError(f"duplicate figure name {figure.name!r}")
        self.figures.append(figure)
        return figure

    def get_figure(self, name: str) -> Figure:
        """The figure called ``name``.

        Raises:
            KeyError: There is none.
        """
        for figure in self.figures:
            if figure.name == name:
                return figure
        raise KeyError(name)

    def ratio(
        self,
        name: str,
        numerator: str,
        denominator: str,
        *,
        target: float | None = None,
        higher_is_better: bool = False,
        tolerance: float | None = None,
        note: str = "",
    ) -> Ratio:
        """Record the ratio of two recorded figures and return it.

        Raises:
            KeyError: Either figure is missing.
            ValueError: The units differ, the denominator is not positive, or the name
                is taken.
        """
        top, bottom = self.get_figure(numerator), self.get_figure(denominator)
        if top.unit != bottom.unit:
            raise ValueError(f"ratio {name!r} divides {top.unit} by {bottom.unit}")
        if bottom.value <= 0:
            raise ValueError(f"ratio {name!r}: {denominator!r} is {bottom.value}")
        if any(known.name == name for known in self.ratios):
            raise ValueError(f"duplicate ratio name {name!r}")
        best = None
        if top.best is not None and bottom.best is not None and bottom.best > 0:
            best = top.best / bottom.best
        ratio = Ratio(
            name,
            numerator,
            denominator,
            top.value / bottom.value,
            best,
            target,
            higher_is_better,
            tolerance,
            note,
        )
        self.ratios.append(ratio)
        return ratio

    # ---- JSON ------------------------------------------------------------------------
    def to_json(self, name: str, machine: Mapping[str, object]) -> dict[str, Any]:
        """The JSON document for benchmark ``name`` run on ``machine``."""
        return {
            "format": FORMAT_VERSION,
            "benchmark": name,
            "title": self.title,
            "params": dict(self.params),
            "machine": dict(machine),
            "figures": [_clean(vars(figure)) for figure in self.figures],
            "ratios": [_clean(vars(ratio)) for ratio in self.ratios],
            "notes": list(self.notes),
        }


def _clean(fields: Mapping[str, object]) -> dict[str, object]:
    """Fields as JSON can hold them: NaN and infinities (invalid JSON) become None."""
    return {
        key: None if isinstance(value, float) and not math.isfinite(value) else value
        for key, value in fields.items()
    }

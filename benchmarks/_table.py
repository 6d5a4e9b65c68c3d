"""Aligned plain-text tables for the terminal (no dependency: the output is read in CI logs)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from benchmarks._compare import Comparison
from benchmarks._result import BenchResult

__all__ = ["format_comparison", "format_number", "format_result", "format_table"]

# Column gap: two spaces keep columns apart without wasting a narrow terminal's width.
_GAP = "  "


def format_number(value: float | None) -> str:
    """A figure as people read it: thousands separated, else three significant digits."""
    if value is None or not math.isfinite(value):
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]) -> str:
    """Lay out ``rows`` under ``headers``, right-aligning the columns in ``numeric``."""
    widths = [len(header) for header in headers]
    for row in rows:
        for column, cell in enumerate(row):
            widths[column] = max(widths[column], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [
            cell.rjust(widths[column]) if column in numeric else cell.ljust(widths[column])
            for column, cell in enumerate(cells)
        ]
        return _GAP.join(parts).rstrip()

    rule = _GAP.join("-" * width for width in widths)
    return "\n".join([line(headers), rule, *(line(row) for row in rows)])


def format_result(name: str, result: BenchResult) -> str:
    """The figures, the ratios and the notes of one benchmark run."""
    params = ", ".join(f"{key}={value}" for key, value in result.params.items())
    figure_rows = [
        [
            figure.name,
            format_number(figure.value),
            format_number(figure.best),
            figure.unit,
            figure.note,
        ]
        for figure in result.figures
    ]
    ratio_rows = []
    for ratio in result.ratios:
        met = ratio.meets_target()
        if ratio.target is None:
            target = verdict = ""
        else:
            target = ("≥ " if ratio.higher_is_better else "≤ ") + format_number(ratio.target)
            verdict = "met" if met else "MISSED"
        ratio_rows.append(
            [ratio.name, format_number(ratio.value), format_number(ratio.best), target, verdict]
        )
    parts = [f"== {name}: {result.title}"]
    if params:
        parts.append(f"   ({params})")
    parts += [
        "",
        format_table(["figure", "median", "best", "unit", "what"], figure_rows, {1, 2}),
        "",
        format_table(
            ["ratio (lower is better unless marked ≥)", "median", "best", "target", ""],
            ratio_rows,
            {1, 2},
        ),
    ]
    parts += [f"note: {note}" for note in result.notes]
    return "\n".join(parts) + "\n"


def format_comparison(name: str, comparisons: Sequence[Comparison]) -> str:
    """The --compare verdict for each ratio of one benchmark."""
    rows = [
        [
            entry.name,
            format_number(entry.baseline),
            format_number(entry.now),
            "-" if entry.change is None else f"{entry.change:.2f}x",
            f"{entry.tolerance:.0%}",
            entry.status.value,
        ]
        for entry in comparisons
    ]
    headers = ["ratio", "baseline", "now", "worse by (>1)", "tolerance", "verdict"]
    return f"== {name}: compared with the baseline\n" + format_table(headers, rows, {1, 2, 3, 4})

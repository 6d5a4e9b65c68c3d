"""PNG plots of growth curves for the documentation, in one place so every plot agrees.

matplotlib is optional: ``nox -s bench`` installs it, the tests and users never need it.
Without it, :func:`write_plots` writes nothing and says so in the result's notes. Full
runs only call it: a quick run never overwrites the committed images.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from benchmarks._result import BenchResult

__all__ = ["PLOT_DIR", "Drawing", "line", "write_plots"]

#: Where the plots go; the documentation's benchmarks page shows them from there.
PLOT_DIR = Path(__file__).resolve().parent.parent / "docs" / "_static" / "benchmarks"

#: One plot: the PNG's file name, and what draws on the axes (title, labels, lines).
Drawing = tuple[str, Callable[[Any], None]]

#: Size in inches and resolution of every plot: readable on the page at its width.
FIGURE_SIZE = (7.0, 4.5)
DPI = 110


def write_plots(result: BenchResult, drawings: Sequence[Drawing]) -> None:
    """Write each drawing as a PNG into PLOT_DIR, or note why not (no matplotlib)."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")  # no display: render to files only
        import matplotlib.pyplot as plt
    except ImportError:
        result.notes.append("matplotlib is not installed: plots not written")
        return
    PLOT_DIR.mkdir(parents=True, exist_ok=True)
    for file_name, draw in drawings:
        figure, axes = plt.subplots(figsize=FIGURE_SIZE, layout="constrained")
        draw(axes)
        axes.grid(True, which="major", alpha=0.4)
        axes.legend()
        figure.savefig(PLOT_DIR / file_name, dpi=DPI)
        plt.close(figure)
    result.notes.append(f"plots written to {PLOT_DIR}")


def line(axes: Any, points: Mapping[int, float], label: str, style: str) -> None:
    """Plot ``points`` (x -> y) in x order; nothing when there are none (a skipped series)."""
    xs = sorted(points)
    if xs:
        axes.plot(xs, [points[x] for x in xs], style, label=label)

"""The crdtgossip benchmarks and their harness (not part of the installed package).

``python -m benchmarks [names...] [--quick] [--compare | --update-baseline]
[--json-dir DIR]`` runs every ``benchmarks/bench_<name>.py`` (or those named), prints
each result as a table and writes ``benchmarks/results/<name>.json``. A benchmark
module exposes ``run(quick: bool) -> BenchResult``; it times :class:`Case` objects with
:func:`time_cases`, measures memory with :func:`retained_bytes`, and reports figures
(absolute, per machine) and ratios (a figure over a floor measured in the same run:
what baselines record and ``--compare`` checks). See benchmarks/README.md.
"""

from benchmarks._compare import DEFAULT_TOLERANCE
from benchmarks._measure import Case, Timing, retained_bytes, time_cases
from benchmarks._result import BenchResult, Figure, Ratio

__all__ = [
    "DEFAULT_TOLERANCE",
    "BenchResult",
    "Case",
    "Figure",
    "Ratio",
    "Timing",
    "retained_bytes",
    "time_cases",
]

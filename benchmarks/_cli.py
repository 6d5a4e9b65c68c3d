"""``python -m benchmarks``: find, run, print, record and compare the benchmarks.

Exit status: 0 when every benchmark ran (and, with --compare, no ratio regressed); 1 when
a ratio regressed beyond its tolerance; 2 when something could not be done at all (bad
arguments, a benchmark raised, a baseline is missing or was made with other parameters).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import platform
import sys
import traceback
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchmarks._compare import IncomparableError, compare
from benchmarks._result import BenchResult
from benchmarks._table import format_comparison, format_result

__all__ = ["BASELINE_DIR", "RESULTS_DIR", "discover", "machine_info", "main"]

PACKAGE_DIR = Path(__file__).resolve().parent
#: Where each run writes <name>.json (overridden by --json-dir).
RESULTS_DIR = PACKAGE_DIR / "results"
#: Where the committed baselines live (<name>.json), read by --compare.
BASELINE_DIR = PACKAGE_DIR / "baseline"
#: A benchmark is a module benchmarks/bench_<name>.py with ``run(quick) -> BenchResult``.
MODULE_PREFIX = "bench_"

EXIT_OK = 0
EXIT_REGRESSED = 1
EXIT_ERROR = 2

Runner = Callable[[bool], BenchResult]


def discover() -> list[str]:
    """The names of the benchmarks (``orset`` for ``bench_orset.py``), sorted."""
    return sorted(
        module.name.removeprefix(MODULE_PREFIX)
        for module in pkgutil.iter_modules([str(PACKAGE_DIR)])
        if module.name.startswith(MODULE_PREFIX)
    )


def load(name: str) -> Runner:
    """The ``run`` function of benchmark ``name``.

    Raises:
        TypeError: The module has no callable ``run``.
    """
    module = importlib.import_module(f"{__package__}.{MODULE_PREFIX}{name}")
    runner = getattr(module, "run", None)
    if not callable(runner):
        raise TypeError(f"{module.__name__} has no run(quick: bool) -> BenchResult")
    return runner  # type: ignore[no-any-return]  # checked callable; signature by contract


def machine_info() -> dict[str, object]:
    """What the figures depend on, recorded beside them: interpreter, OS, CPU, date."""
    import crdtgossip

    return {
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "crdtgossip": crdtgossip.__version__,
    }


def _cpu_model() -> str:
    # platform.processor() is empty on most Linux systems; /proc/cpuinfo names the model.
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor()


def write_json(path: Path, document: Mapping[str, Any]) -> None:
    """Write ``document`` to ``path`` atomically (a reader never sees half a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def _parser(available: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run the crdtgossip benchmarks; print tables and write JSON results.",
        epilog=f"Benchmarks: {', '.join(available) or '(none)'}. Only ratios are compared; "
        "see benchmarks/README.md.",
    )
    parser.add_argument("names", nargs="*", help="benchmarks to run (default: all)")
    parser.add_argument(
        "--quick", action="store_true", help="small sizes: a smoke test, not a measurement"
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--compare",
        action="store_true",
        help="compare ratios with benchmarks/baseline/ and exit 1 if any got worse "
        "by more than its tolerance",
    )
    action.add_argument(
        "--update-baseline",
        action="store_true",
        help="also write this run's results as the new baseline",
    )
    parser.add_argument(
        "--json-dir",
        type=Path,
        default=RESULTS_DIR,
        help="where to write <name>.json (default: benchmarks/results)",
    )
    parser.add_argument(
        "--baseline-dir",
        type=Path,
        default=BASELINE_DIR,
        help="where baselines are read and written (default: benchmarks/baseline)",
    )
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (see the module docstring)."""
    available = discover()
    parser = _parser(available)
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(available))
        return EXIT_OK
    if args.quick and args.update_baseline:
        parser.error("--update-baseline needs full sizes: drop --quick")
    names = [name.removeprefix(MODULE_PREFIX) for name in args.names] or available
    unknown = [name for name in names if name not in available]
    if unknown:
        parser.error(f"unknown benchmark(s) {', '.join(unknown)}; have {', '.join(available)}")

    machine = machine_info()
    status = EXIT_OK
    for name in names:
        try:
            result = load(name)(args.quick)
        except Exception:  # one broken benchmark must not hide the others' results
            traceback.print_exc()
            print(f"benchmark {name} failed", file=sys.stderr)
            status = EXIT_ERROR
            continue
        print(format_result(name, result), flush=True)
        document = result.to_json(name, machine)
        write_json(args.json_dir / f"{name}.json", document)
        if args.update_baseline:
            write_json(args.baseline_dir / f"{name}.json", document)
            print(f"baseline written: {args.baseline_dir / f'{name}.json'}\n")
        if args.compare:
            status = max(status, _compare_one(name, document, args.baseline_dir))
    return status


def _compare_one(name: str, document: Mapping[str, Any], baseline_dir: Path) -> int:
    path = baseline_dir / f"{name}.json"
    try:
        baseline = json.loads(path.read_text(encoding="utf-8"))
        comparisons = compare(document, baseline)
    except FileNotFoundError:
        print(f"{name}: no baseline at {path}; write one with --update-baseline", file=sys.stderr)
        return EXIT_ERROR
    except (ValueError, IncomparableError) as error:  # json's errors are ValueErrors
        print(f"{name}: cannot compare with {path}: {error}", file=sys.stderr)
        return EXIT_ERROR
    print(format_comparison(name, comparisons) + "\n")
    failed = [entry.name for entry in comparisons if entry.fails]
    if failed:
        print(f"{name}: worse than the baseline: {', '.join(failed)}", file=sys.stderr)
        return EXIT_REGRESSED
    return EXIT_OK

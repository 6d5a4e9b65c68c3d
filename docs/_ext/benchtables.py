"""``.. bench-table:: NAME``: the tables of one benchmark, read from its committed baseline.

The benchmarks page shows the figures of the reference run, which is the baseline that
``python -m benchmarks --update-baseline`` writes to ``benchmarks/baseline/NAME.json``
and ``--compare`` checks later runs against. Reading the tables from those files at
build time keeps the page and the baseline one and the same: a new baseline updates the
page, and the page cannot quote a figure the baseline does not hold.

Options: ``:figures:`` also lists the absolute figures (after the ratios);
``:notes:`` also lists the benchmark's notes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, ClassVar

from docutils import nodes
from docutils.parsers.rst import directives
from docutils.statemachine import StringList
from sphinx.application import Sphinx
from sphinx.util.docutils import SphinxDirective

BASELINE_DIR = Path(__file__).resolve().parents[2] / "benchmarks" / "baseline"


def _number(value: float | None) -> str:
    """A figure as the benchmark tables print it: three significant digits, grouped."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if math.isinf(value):
        return "inf"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _cell(text: str) -> str:
    """Table cell text: one line, no characters that would start rst markup."""
    return " ".join(text.split()).replace("|", "/").replace("*", "\\*") or " "


def _table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {_cell(row[0])}")
        lines.extend(f"     - {_cell(cell)}" for cell in row[1:])
    return [*lines, ""]


def _target(ratio: dict[str, Any]) -> str:
    target = ratio.get("target")
    if target is None:
        return ""
    met = ratio["value"] >= target if ratio.get("higher_is_better") else ratio["value"] <= target
    sign = ">=" if ratio.get("higher_is_better") else "<="
    return f"{sign} {_number(target)} ({'met' if met else 'missed'})"


class BenchTable(SphinxDirective):
    """Render the ratios (and optionally figures and notes) of one baseline file."""

    required_arguments = 1
    option_spec: ClassVar[dict[str, Any]] = {"figures": directives.flag, "notes": directives.flag}

    def run(self) -> list[nodes.Node]:
        name = self.arguments[0]
        path = BASELINE_DIR / f"{name}.json"
        self.env.note_dependency(str(path))
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            raise self.error(f"bench-table: cannot read the baseline {path}: {error}") from None
        machine = document.get("machine", {})
        lines = [
            f"*Reference run: {machine.get('date', '?')[:10]}, Python "
            f"{machine.get('python', '?')}, {machine.get('cpu_count', '?')} CPUs "
            f"({machine.get('cpu', '?')}), crdtgossip {machine.get('crdtgossip', '?')}.*",
            "",
        ]
        ratios = document.get("ratios", [])
        if ratios:
            rows = [
                [r["name"], _number(r["value"]), _number(r.get("best")), _target(r), r["note"]]
                for r in ratios
            ]
            lines += _table(
                f"{document['title']}: ratios (lower is better unless the target says >=)",
                ["ratio", "median", "best", "target", "what"],
                rows,
            )
        if "figures" in self.options:
            rows = [
                [f["name"], _number(f["value"]), _number(f.get("best")), f["unit"], f["note"]]
                for f in document.get("figures", [])
            ]
            lines += _table("figures", ["figure", "value", "best", "unit", "what"], rows)
        if "notes" in self.options:
            lines += [f"* {' '.join(note.split())}" for note in document.get("notes", [])]
            lines.append("")
        container = nodes.container()
        self.state.nested_parse(StringList(lines, source=str(path)), self.content_offset, container)
        return container.children


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("bench-table", BenchTable)
    return {"parallel_read_safe": True, "parallel_write_safe": True, "version": "1"}

"""No module of crdtgossip imports, directly or through others, a module that imports it.

Every ``import`` and ``from ... import`` statement of the package's source counts,
whether at the top of a module, inside a function or under ``TYPE_CHECKING``: an import
put inside a function to dodge a circle is still a circle. The implicit import of a
parent package (``crdtgossip.testing`` when ``crdtgossip.testing.laws`` loads) does not
count: Python runs it for every submodule, so it cannot express a dependency; but a
name imported from a package (``from crdtgossip.testing import check_laws``) is an
import of the package's ``__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import crdtgossip

PACKAGE = Path(crdtgossip.__file__).parent


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in PACKAGE.rglob("*.py")}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                # ``from crdtgossip.testing import strategies`` imports the submodule (and
                # its parent package only implicitly); ``from crdtgossip.testing import
                # check_laws`` imports the package itself.
                submodule = f"{base}.{alias.name}"
                found.add(submodule if submodule in modules else base)
    return {imported for imported in found if imported in modules and imported != name}


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One path per module that reaches itself again, found by depth-first search."""
    found: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        seen: set[str] = set()
        while stack:
            node, path = stack.pop()
            for nxt in sorted(graph[node]):
                if nxt == start:
                    found.append([*path, start])
                    stack.clear()
                    break
                if nxt not in seen:
                    seen.add(nxt)
                    stack.append((nxt, [*path, nxt]))
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    cycles = _cycles(_graph())
    assert not cycles, "import circles:\n" + "\n".join(" -> ".join(c) for c in cycles)


def test_the_checker_sees_a_circle() -> None:
    # It must see what it is there to refuse, including a circle through a third module.
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _cycles(graph) == [["a", "b", "c", "a"], ["b", "c", "a", "b"], ["c", "a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_graph_holds_the_package() -> None:
    graph = _graph()
    assert "crdtgossip.testing.strategies" in graph["crdtgossip.testing.laws"]
    assert "crdtgossip.testing._law" in graph["crdtgossip.testing.strategies"]
    assert "crdtgossip.codec" in graph["crdtgossip.node"]

"""Sphinx configuration for the crdtgossip documentation.

Built by ``nox -s docs`` twice: as HTML, and with the doctest builder, which runs every
``>>>`` example on these pages and in the docstrings that autodoc pulls in.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sphinx.application import Sphinx

# Document the working tree, not whatever copy of crdtgossip happens to be installed.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
# Our own Sphinx extensions (the benchmark tables).
sys.path.insert(0, str(REPO_ROOT / "docs" / "_ext"))

from crdtgossip._version import __version__  # noqa: E402

project = "crdtgossip"
author = "The crdtgossip developers"
copyright = "the crdtgossip developers"
release = __version__
version = ".".join(__version__.split(".")[:2])

# No intersphinx: the docs build must not need the network.
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.doctest",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
    "benchtables",
]

exclude_patterns = ["_build"]

# Docstrings are Google style (Args / Returns / Raises).
napoleon_google_docstring = True
napoleon_numpy_docstring = False

autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}

# Examples count only if they run: a plain ``>>>`` block is a doctest too.
doctest_test_doctest_blocks = "default"

html_theme = "furo"
html_title = f"crdtgossip {release}"


def _own_doc(name: str, value: object) -> list[str]:
    """The doc comment of the module-level name ``name``, from the module that defines it.

    ``name`` is ``package.ATTR``; the comment is looked up in ``package`` and its
    submodules, in the one that holds the very same object under that name. A package
    that re-exports a constant or a type alias has no comment for it in its own source,
    and autodoc would otherwise show the docstring of the value's type (``int``,
    ``tuple`` ...) in its place.
    """
    from sphinx.errors import PycodeError
    from sphinx.pycode import ModuleAnalyzer

    package, _, attr = name.rpartition(".")
    for modname in sorted(sys.modules):
        if modname != package and not modname.startswith(package + "."):
            continue
        if getattr(sys.modules[modname], attr, None) is not value:
            continue
        try:
            comment = ModuleAnalyzer.for_module(modname).find_attr_docs().get(("", attr))
        except PycodeError:
            continue
        if comment:
            return list(comment)
    return []


def _data_doc(
    app: Sphinx, what: str, name: str, obj: object, options: object, lines: list[str]
) -> None:
    """Document a crdtgossip constant or type alias by its own comment, never its type's."""
    if what == "data" and name.startswith("crdtgossip."):
        lines[:] = _own_doc(name, obj)


def setup(app: Sphinx) -> None:
    """Connect :func:`_data_doc` to autodoc."""
    app.connect("autodoc-process-docstring", _data_doc)

"""Sphinx configuration for the crdtgossip documentation.

Built by ``nox -s docs`` twice: as HTML, and with the doctest builder, which runs every
``>>>`` example on these pages and in the docstrings that autodoc pulls in.
"""

from __future__ import annotations

import sys
from pathlib import Path

# Document the working tree, not whatever copy of crdtgossip happens to be installed.
REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

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

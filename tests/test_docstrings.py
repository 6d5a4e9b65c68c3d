"""Every example in the package's docstrings runs and prints what it shows.

The Sphinx doctest build runs the examples of the modules the API reference renders;
this runs those of every module, rendered or not, so an example cannot rot unseen.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil
from types import ModuleType

import pytest

import crdtgossip

# ``__main__`` modules run a program on import.
MODULES = sorted(
    info.name
    for info in pkgutil.walk_packages(crdtgossip.__path__, prefix="crdtgossip.")
    if not info.name.endswith("__main__")
)


def test_the_walk_finds_the_package() -> None:
    assert {"crdtgossip.node", "crdtgossip.crdts.orset", "crdtgossip.apps.lb"} <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for test in finder.find(module, name):
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples in {name} failed"

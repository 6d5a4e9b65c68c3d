"""Developer and CI tasks for crdtgossip.

``nox`` runs every session but ``bench``: lint, typecheck, docs and tests, each in a
fresh virtual environment built with the interpreter nox itself runs on, so CI checks
exactly what a clean install gives. ``nox -s bench -- ARGS`` runs the benchmarks.
Arguments after ``--`` go to the tool a session runs (pytest, ``python -m benchmarks``).
"""

from __future__ import annotations

import nox

nox.needs_version = ">=2024.3.2"
# The benchmarks take minutes and are for people comparing runs, not a gate. The quick
# checks run first; the tests last, so pytest's summary is what a CI log ends with.
nox.options.sessions = ["lint", "typecheck", "docs", "tests"]

# One place for what each session puts in its environment.
PACKAGE_WITH_TESTS = ".[apps,test]"
PACKAGE_WITH_DOCS = ".[apps,test,docs]"
# The checkers are pinned: a new release can add rules or inferences, and CI should fail
# on a change to our code, not on a tool upgrade. Raise the pins on purpose.
LINT_TOOLS = ("ruff==0.17.6",)
# types-protobuf: protobuf ships no annotations (the registry's Riemann listener uses it).
TYPECHECK_TOOLS = ("mypy==2.4.1", "types-protobuf==7.35.1.20261122")
BENCH_TOOLS = ("matplotlib", "crdts==0.0.4", "python3-crdt==1.0.3")

DOCS_SOURCE = "docs"
DOCS_BUILD = "docs/_build"


@nox.session
def tests(session: nox.Session) -> None:
    """Run the test suite; ``nox -s tests -- -k orset -x`` passes options to pytest."""
    session.install(PACKAGE_WITH_TESTS)
    session.run("pytest", *session.posargs)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Check the package with ``mypy --strict``, against the real dependencies' types."""
    # The package and its extras are installed so mypy sees aiohttp's, jinja2's and
    # hypothesis's own annotations rather than treating them as Any.
    session.install(PACKAGE_WITH_TESTS, *TYPECHECK_TOOLS)
    session.run("mypy", "--strict", "crdtgossip")


@nox.session
def lint(session: nox.Session) -> None:
    """Check style and formatting with ruff (configured in pyproject.toml)."""
    session.install(*LINT_TOOLS)
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the HTML docs with warnings as errors, then run every example in them."""
    session.install(PACKAGE_WITH_DOCS)
    common = ("-W", "--keep-going")
    session.run("sphinx-build", *common, "-b", "html", DOCS_SOURCE, f"{DOCS_BUILD}/html")
    session.run("sphinx-build", *common, "-b", "doctest", DOCS_SOURCE, f"{DOCS_BUILD}/doctest")
    # The README is the first page most people read: its examples must run too.
    session.run("python", "-m", "doctest", "README.md")


@nox.session
def bench(session: nox.Session) -> None:
    """Run the benchmarks: ``nox -s bench -- ARGS`` passes ARGS to ``python -m benchmarks``."""
    # matplotlib (the plots) and the peer libraries compared against are only for the
    # benchmarks, so only this session installs them: users and tests never need them.
    session.install(PACKAGE_WITH_TESTS, *BENCH_TOOLS)
    session.run("python", "-m", "benchmarks", *session.posargs)


@nox.session
def soak(session: nox.Session) -> None:
    """Run the chaos soak: ``nox -s soak -- --soak 10000`` (10,000 seeded scenarios).

    Not a default session: it takes minutes. A failure prints its seed and the one-line
    command that replays it.
    """
    session.install(PACKAGE_WITH_TESTS)
    args = session.posargs or ["--soak", "10000"]
    session.run("python", "-m", "crdtgossip.testing.chaos", *args)

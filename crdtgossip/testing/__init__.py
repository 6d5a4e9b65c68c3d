"""Test helpers for users of crdtgossip and for its own suite.

* :func:`check_laws`: a hypothesis-driven checker that a convergent type obeys the laws
  of a delta-state CRDT (see :mod:`crdtgossip.testing.laws`), with the lower-level
  checks it is built from;
* :mod:`~crdtgossip.testing.strategies`: hypothesis strategies for elements, values,
  replica ids, timestamps, and operations on each of crdtgossip's types;
* :class:`Simulation` (from :mod:`crdtgossip.testing.simulation`): the deterministic
  cluster simulator, imported on first use.

Example (in a test module; ``check_laws`` runs hypothesis itself):
    >>> from crdtgossip import ORSet
    >>> from crdtgossip.testing import check_laws, strategies
    >>> def test_orset_is_a_crdt() -> None:
    ...     check_laws(ORSet, strategies.orset_ops(), max_examples=10)
    >>> test_orset_is_a_crdt()
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from crdtgossip.testing import strategies
from crdtgossip.testing.laws import (
    Law,
    Operation,
    assert_canonical_encoding,
    assert_codec_round_trip,
    assert_converged,
    assert_copy_independent,
    assert_delta_law,
    assert_merge_identity,
    assert_merge_laws,
    assert_pruning_laws,
    assert_registered_codec,
    check_laws,
    join,
    strictly_equal,
)

if TYPE_CHECKING:
    from crdtgossip.testing.chaos import ChaosOutcome, run_chaos
    from crdtgossip.testing.simulation import RunResult, Simulation

__all__ = [
    "ChaosOutcome",
    "Law",
    "Operation",
    "RunResult",
    "Simulation",
    "assert_canonical_encoding",
    "assert_codec_round_trip",
    "assert_converged",
    "assert_copy_independent",
    "assert_delta_law",
    "assert_merge_identity",
    "assert_merge_laws",
    "assert_pruning_laws",
    "assert_registered_codec",
    "check_laws",
    "join",
    "run_chaos",
    "strategies",
    "strictly_equal",
]


# The simulator is imported on first use: checking laws does not load it, and
# ``python -m crdtgossip.testing.chaos`` does not import it twice.
_LAZY = frozenset({"ChaosOutcome", "RunResult", "Simulation", "run_chaos"})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        if name in ("ChaosOutcome", "run_chaos"):
            from crdtgossip.testing import chaos

            return getattr(chaos, name)
        from crdtgossip.testing import simulation

        return getattr(simulation, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

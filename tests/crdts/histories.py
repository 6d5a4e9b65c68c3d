"""Random histories of three replicas: the states anti-entropy has to compare.

A history interleaves operations on three replicas with deliveries of single deltas
(in any order, so causal contexts grow dot clouds) and whole-state syncs, so two
replicas end with shared history, concurrent adds, and removes the other has not seen.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hypothesis import strategies as st

from crdtgossip import ORMap, ORSet, PNCounter
from crdtgossip.testing import Operation
from crdtgossip.testing import strategies as ops

REPLICAS = ("r0", "r1", "r2")

# A step: ("op", replica, operation), ("deliver", replica, delta number) or
# ("sync", source, target).
Step = tuple[str, int, Any]


def steps(operations: st.SearchStrategy[Operation[Any]]) -> st.SearchStrategy[list[Step]]:
    """Histories of up to 40 steps over :data:`REPLICAS`."""
    replica = st.integers(0, len(REPLICAS) - 1)
    step = st.one_of(
        st.tuples(st.just("op"), replica, operations),
        st.tuples(st.just("deliver"), replica, st.integers(0, 1000)),
        st.tuples(st.just("sync"), replica, replica),
    )
    return st.lists(step, max_size=40)


def replay(
    factory: Callable[[], Any],
    history: list[Step],
    *,
    each: Callable[[Any], None] | None = None,
) -> list[Any]:
    """Run a history; return the three replicas' states.

    Args:
        factory: makes an empty state.
        history: the steps.
        each: called on every replica after every step (to exercise what the types
            keep up to date as they change).
    """
    states = [factory() for _ in REPLICAS]
    deltas: list[Any] = []
    for kind, index, argument in history:
        if kind == "op":
            deltas.append(argument(states[index], REPLICAS[index]))
        elif kind == "deliver" and deltas:
            states[index].merge(deltas[argument % len(deltas)])
        elif kind == "sync":
            states[argument].merge(states[index])
        if each is not None:
            for state in states:
                each(state)
    return states


#: The types whose repair by difference is tested, with their operations.
CAUSAL_CASES: list[tuple[str, Callable[[], Any], st.SearchStrategy[Operation[Any]]]] = [
    ("ORSet", ORSet, ops.orset_ops()),
    ("ORMap(ORSet)", lambda: ORMap(ORSet), ops.ormap_ops(ops.orset_ops())),
    ("ORMap(PNCounter)", lambda: ORMap(PNCounter), ops.ormap_ops(ops.pncounter_ops())),
    (
        "ORMap(ORMap(ORSet))",
        lambda: ORMap(ORMap(ORSet)),
        ops.ormap_ops(ops.ormap_ops(ops.orset_ops())),
    ),
]

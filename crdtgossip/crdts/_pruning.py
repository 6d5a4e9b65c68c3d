"""Pruning removed replicas: the per-type half of forgetting a replica that has left.

A replica that leaves for good (a node removed from the cluster, or restarted without
its state under a new replica id) stays named in every state it wrote to: its counter
slot, its dots in a causal type's store and context. Nothing else ever removes that
name, so a cluster whose nodes restart statelessly grows every state by one name per
restart. Pruning takes it out again, in two steps that every :class:`Prunable` type
implements:

* ``prune(removed, into)``, run once, by one live replica (the *pruner*, ``into``) that
  has seen everything ``removed`` ever wrote: every contribution of ``removed`` is
  folded into ``into`` so that ``value`` is unchanged and ``removed`` is named nowhere.
  A counter adds the removed slot to the pruner's; a causal type gives each live dot of
  ``removed`` a fresh dot of ``into`` (one past every counter of ``into`` the context
  has seen, so no other replica holds it) and drops ``removed`` from its context.
* ``drop_replica(removed)``, run by every other copy once the pruning is performed:
  forget everything of ``removed`` (its slot, its dots, elements only its dots held).
  The pruned state brings back what mattered, under the pruner's dots, when the two
  merge.

Neither step is safe on its own: the cluster protocol decides when they run (see the
concepts page "Pruning removed replicas"). The laws they keep are checked by
:func:`crdtgossip.testing.laws.assert_pruning_laws`.

G-Set, LWW-Register and LWW-Map are not :class:`Prunable`: a G-Set names no replica,
and an LWW write names its writer only to break a tie between equal timestamps. That
name is part of the order every replica agrees on (rewriting it on one copy could make
two copies pick different winners), and it costs one id per entry, whatever the
number of restarts: it is bounded by the entries, not by the replicas that ever
existed.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from crdtgossip.crdts._base import check_replica
from crdtgossip.errors import OperationError

__all__ = ["Prunable", "check_prune"]


@runtime_checkable
class Prunable(Protocol):
    """A state that names replicas and can forget a removed one (see the module doc)."""

    def replicas(self) -> frozenset[str]:
        """Every replica id the state names: counter slots, live dots, the context."""

    def prune(self, removed: str, into: str) -> None:
        """Fold every contribution of ``removed`` into ``into``, in place.

        ``value`` is unchanged and ``removed`` is named nowhere afterwards; nothing
        happens when the state does not name ``removed``.

        Raises:
            OperationError: an invalid replica id, ``removed == into``, or a slot or
                dot counter of ``into`` would pass 2**64 - 1 (the state is unchanged).
        """

    def drop_replica(self, removed: str) -> None:
        """Forget everything of ``removed`` in place (the clean-up of a copy once the
        pruning is performed); nothing happens when the state does not name it.

        Raises:
            OperationError: ``removed`` is not a valid replica id.
        """


def check_prune(removed: object, into: object) -> tuple[str, str]:
    """Validate the replica ids of a prune: two different valid ids.

    Returns:
        ``(removed, into)``.

    Raises:
        OperationError: either id is invalid, or they are the same replica (a replica
            cannot be folded into itself).
    """
    removed_id, into_id = check_replica(removed), check_replica(into)
    if removed_id == into_id:
        raise OperationError(
            f"cannot prune replica {removed_id!r:.60} into itself: pass the pruner's own id as into"
        )
    return removed_id, into_id

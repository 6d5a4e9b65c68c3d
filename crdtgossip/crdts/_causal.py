"""The causal kernel shared by ORSet, EWFlag, MVRegister and ORMap.

A *dot* ``(replica, counter)`` names one write: the ``counter``-th event of ``replica``.
A causal type is a *dot store* (which dots are live, and what each carries) plus a
:class:`CausalContext`: the set of every dot the state has seen. A dot that the context
has seen but the store no longer holds was removed, so a removal needs no tombstone: the
context remembers it in compressed form.

The context is a version vector (``replica -> n``: dots ``1..n`` seen) plus a *dot cloud*
of dots seen out of order (``replica -> {counters above n + 1}``). Gaps fill as deltas
arrive, and :meth:`CausalContext.compact` folds the cloud back into the vector, so a
context costs one integer per replica once a replica's history is contiguous. This
compaction is also what makes the representation canonical: equal sets of dots always
give equal vectors and clouds, so equal states compare and encode equally.

A replica that has left stays named by its dots until it is pruned:
:meth:`CausalCRDT.prune` gives its live dots fresh dots of the pruner and drops it from
the context, :meth:`CausalCRDT.drop_replica` forgets it in a copy (see
:mod:`crdtgossip.crdts._pruning`).

Join of dot stores (Almeida et al., "Delta State Replicated Data Types", 2018): a dot
present on both sides stays; a dot present on one side stays unless the other side's
context has seen it (then the other side removed it).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from typing import Self

from crdtgossip.crdts._base import check_replica
from crdtgossip.crdts._digest import DotHashes, digest_of
from crdtgossip.crdts._pruning import check_prune
from crdtgossip.crdts._values import INT_MAX
from crdtgossip.errors import MergeError, OperationError

__all__ = ["CausalCRDT", "CausalContext", "Dot", "join_dot_sets"]

#: ``(replica, counter)``: the ``counter``-th write of ``replica``; counters start at 1.
Dot = tuple[str, int]


class CausalContext:
    """A compressed set of dots: version vector plus dot cloud.

    Invariants (kept by every method, relied on by equality and encoding):
    ``vector[r] >= 1``; every counter in ``cloud[r]`` is greater than
    ``vector.get(r, 0) + 1``; no empty cloud set is stored.
    """

    __slots__ = ("cloud", "vector")

    def __init__(
        self,
        vector: dict[str, int] | None = None,
        cloud: dict[str, set[int]] | None = None,
    ) -> None:
        self.vector: dict[str, int] = vector if vector is not None else {}
        self.cloud: dict[str, set[int]] = cloud if cloud is not None else {}

    @classmethod
    def from_dots(cls, dots: Iterable[Dot]) -> CausalContext:
        """Build the context holding exactly ``dots``."""
        context = cls()
        for replica, counter in dots:
            context.cloud.setdefault(replica, set()).add(counter)
        context.compact(list(context.cloud))
        return context

    def __contains__(self, dot: Dot) -> bool:
        replica, counter = dot
        if counter <= self.vector.get(replica, 0):
            return True
        cloud = self.cloud.get(replica)
        return cloud is not None and counter in cloud

    def covers(self, replica: str, counter: int) -> bool:
        """Whether the dot ``(replica, counter)`` has been seen."""
        if counter <= self.vector.get(replica, 0):
            return True
        cloud = self.cloud.get(replica)
        return cloud is not None and counter in cloud

    def knows(self, replica: str) -> bool:
        """Whether any dot of ``replica`` has been seen."""
        return replica in self.vector or replica in self.cloud

    def max_counter(self, replica: str) -> int:
        """The highest counter of ``replica`` seen (0 when none)."""
        cloud = self.cloud.get(replica)
        base = self.vector.get(replica, 0)
        return max(base, *cloud) if cloud else base

    def size(self, replica: str) -> int:
        """An upper bound on the work of enumerating the dots of ``replica``."""
        cloud = self.cloud.get(replica)
        return self.vector.get(replica, 0) + (len(cloud) if cloud else 0)

    def dots_of(self, replica: str) -> Iterator[int]:
        """Every counter of ``replica`` seen, in no particular order."""
        yield from range(1, self.vector.get(replica, 0) + 1)
        yield from self.cloud.get(replica, ())

    def dots(self) -> Iterator[Dot]:
        """Every dot seen, in no particular order (O(number of dots))."""
        for replica in self.vector.keys() | self.cloud.keys():
            for counter in self.dots_of(replica):
                yield (replica, counter)

    def has_room(self, replica: str, count: int) -> bool:
        """Whether ``count`` more dots of ``replica`` fit in 64-bit counters."""
        return self.max_counter(replica) + count <= INT_MAX

    def next_dot(self, replica: str) -> Dot:
        """Make, record and return a new dot for ``replica``: one past all seen.

        Raises:
            OperationError: the replica's counter is at 2**64 - 1 (only a hostile or
                broken peer gets it there): the context is unchanged.
        """
        counter = self.max_counter(replica) + 1
        if counter > INT_MAX:
            raise OperationError(
                f"replica {replica!r:.60} has used every dot counter up to 2**64 - 1; "
                "nothing changed (a node then needs a fresh replica id)"
            )
        if counter == self.vector.get(replica, 0) + 1:
            self.vector[replica] = counter
        else:
            self.cloud.setdefault(replica, set()).add(counter)
        return (replica, counter)

    def add(self, replica: str, counter: int) -> None:
        """Record that the dot ``(replica, counter)`` has been seen."""
        if counter <= self.vector.get(replica, 0):
            return
        self.cloud.setdefault(replica, set()).add(counter)
        self.compact((replica,), pruned=False)

    def merge(self, other: CausalContext) -> None:
        """Union ``other`` into ``self`` in place.

        Costs O(size of ``other``'s cloud + dots folded), plus one pass over this
        side's cloud of a replica only when ``other``'s vector moves past it: merging a
        delta into a context with a large cloud stays cheap.
        """
        vector, cloud = self.vector, self.cloud
        pruned: list[str] = []
        for replica, counter in other.vector.items():
            if counter > vector.get(replica, 0):
                vector[replica] = counter
                if replica in cloud:
                    pruned.append(replica)
        touched: list[str] = []
        for replica, counters in other.cloud.items():
            base = vector.get(replica, 0)
            fresh = [counter for counter in counters if counter > base]
            if not fresh:
                continue
            mine = cloud.get(replica)
            if mine is None:
                cloud[replica] = set(fresh)
            else:
                mine.update(fresh)
            touched.append(replica)
        if pruned:
            self.compact(pruned)
        if touched:
            self.compact(touched, pruned=False)

    def compact(self, replicas: Iterable[str], *, pruned: bool = True) -> None:
        """Fold the cloud of ``replicas`` into the vector where it has become contiguous.

        Args:
            replicas: the replicas whose cloud may have changed.
            pruned: also drop cloud counters at or below the vector (a pass over the
                cloud); callers that only added counters above it pass False.
        """
        for replica in replicas:
            counters = self.cloud.get(replica)
            if counters is None:
                continue
            base = self.vector.get(replica, 0)
            if pruned and any(counter <= base for counter in counters):
                counters = {counter for counter in counters if counter > base}
            while base + 1 in counters:
                base += 1
                counters.discard(base)
            if base:
                self.vector[replica] = base
            if counters:
                self.cloud[replica] = counters
            else:
                del self.cloud[replica]

    def forget(self, replica: str) -> None:
        """Forget every dot of ``replica`` (a removed replica, once pruned)."""
        self.vector.pop(replica, None)
        self.cloud.pop(replica, None)

    def copy(self) -> CausalContext:
        """An independent copy."""
        return CausalContext(
            dict(self.vector), {replica: set(c) for replica, c in self.cloud.items()}
        )

    def is_empty(self) -> bool:
        """Whether no dot has been seen."""
        return not self.vector and not self.cloud

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CausalContext):
            return NotImplemented
        return self.vector == other.vector and self.cloud == other.cloud

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"CausalContext(vector={self.vector!r}, cloud={self.cloud!r})"


def join_dot_sets(
    mine: set[Dot], my_context: CausalContext, theirs: set[Dot], their_context: CausalContext
) -> None:
    """Join the dot set ``theirs`` into ``mine`` in place (the dot-set join rule)."""
    if theirs is mine:
        return
    removed = [dot for dot in mine if dot not in theirs and their_context.covers(*dot)]
    for dot in removed:
        mine.discard(dot)
    for dot in theirs:
        if dot not in mine and not my_context.covers(*dot):
            mine.add(dot)


class CausalCRDT:
    """Base of the causal types: a dot store plus a :class:`CausalContext`.

    Subclasses implement the store half; this class does the rest. When nested in an
    :class:`~crdtgossip.crdts.ormap.ORMap`, the nested object's ``_context`` is the map's
    own context object (shared), so every dot made anywhere in the map is unique and one
    context covers the whole map.
    """

    __slots__ = ("_context",)

    def __init__(self) -> None:
        self._context = CausalContext()

    # ---- the store half, implemented by each subclass -------------------------------
    def _join_store(
        self, other: Self, my_context: CausalContext, their_context: CausalContext
    ) -> None:
        """Join ``other``'s store into ``self``'s (contexts are not touched)."""
        raise NotImplementedError

    def _store_dots(self) -> Iterator[Dot]:
        """Every dot live in the store."""
        raise NotImplementedError

    def _store_is_empty(self) -> bool:
        """Whether the store holds no dot."""
        raise NotImplementedError

    def _store_has(self, dot: Dot) -> bool:
        """Whether ``dot`` is live in the store (O(1))."""
        raise NotImplementedError

    def _store_equal(self, other: Self) -> bool:
        """Whether both stores hold the same dots with the same payloads."""
        raise NotImplementedError

    def _copy_store_into(self, target: Self) -> None:
        """Deep-copy this store into ``target`` (an empty instance)."""
        raise NotImplementedError

    def _store_replicas(self) -> set[str]:
        """The replicas of the live dots (and, in a map, of nested contributions)."""
        return {replica for replica, _ in self._store_dots()}

    def _prune_cost(self, removed: str) -> int:
        """An upper bound on the fresh dots :meth:`_prune_store` makes for ``removed``."""
        return sum(1 for replica, _ in self._store_dots() if replica == removed)

    def _check_prune_store(self, removed: str, into: str) -> None:
        """Raise OperationError if pruning the store would fail (nothing is changed)."""

    def _prune_store(self, removed: str, into: str) -> None:
        """Give each live dot of ``removed`` a fresh dot of ``into`` from the (shared)
        context, in counter order; the context itself keeps ``removed``'s dots."""
        raise NotImplementedError

    def _drop_store(self, removed: str) -> None:
        """Forget the live dots of ``removed`` (and what only they held)."""
        raise NotImplementedError

    def _empty_bound(self, context: CausalContext) -> Self:
        """A new empty instance (same nested configuration) bound to ``context``."""
        fresh = self._blank()
        fresh._context = context
        return fresh

    def _blank(self) -> Self:
        """A new empty instance with the same configuration as ``self``."""
        return type(self)()

    def _copy_bound(self, context: CausalContext) -> Self:
        """A deep copy of the store bound to ``context``."""
        fresh = self._empty_bound(context)
        self._copy_store_into(fresh)
        return fresh

    def _rebind(self, context: CausalContext) -> None:
        """Point this object (and anything nested) at ``context``."""
        self._context = context

    def _same_kind(self, other: object) -> bool:
        return type(other) is type(self)

    # ---- the CRDT contract -----------------------------------------------------------
    def merge(self, other: Self) -> None:
        """Join ``other`` into ``self`` in place; ``other`` is unchanged."""
        if not self._same_kind(other):
            raise MergeError(f"cannot merge {other!r:.80} into {type(self).__name__}")
        if other is self:
            return
        self._join_store(other, self._context, other._context)
        self._context.merge(other._context)

    def copy(self) -> Self:
        """An independent deep copy."""
        return self._copy_bound(self._context.copy())

    @property
    def context(self) -> CausalContext:
        """A copy of the causal context (every dot this state has seen)."""
        return self._context.copy()

    # ---- pruning removed replicas (see crdtgossip.crdts._pruning) ---------------------
    def replicas(self) -> frozenset[str]:
        """Every replica named: by a live dot, a nested contribution, or the context."""
        context = self._context
        return frozenset(context.vector.keys() | context.cloud.keys() | self._store_replicas())

    def prune(self, removed: str, into: str) -> None:
        """Fold ``removed`` into ``into``, in place: each live dot of ``removed`` is
        replaced by a fresh dot of ``into`` (one past every counter of ``into`` seen,
        so that no other replica holds it), and ``removed`` leaves the context.

        The value is unchanged, and nothing happens when ``removed`` is not named.

        Raises:
            OperationError: an invalid replica id, ``removed == into``, or the dot
                counter of ``into`` (or a nested counter slot) would pass 2**64 - 1;
                the state is unchanged then.
        """
        check_prune(removed, into)
        if removed not in self.replicas():
            return
        if not self._context.has_room(into, self._prune_cost(removed)):
            raise OperationError(
                f"pruning {removed!r:.60} would take replica {into!r:.60}'s dot counter "
                "past 2**64 - 1; nothing changed"
            )
        self._check_prune_store(removed, into)
        self._prune_store(removed, into)
        self._context.forget(removed)

    def drop_replica(self, removed: str) -> None:
        """Forget everything of ``removed``, in place: its live dots (an element, a
        value or a key held only by them vanishes from this copy) and its dots in the
        context. Merged afterwards, the pruned state brings back what they carried,
        under the pruner's dots.

        Raises:
            OperationError: ``removed`` is not a valid replica id.
        """
        check_replica(removed)
        self._drop_store(removed)
        self._context.forget(removed)

    def __eq__(self, other: object) -> bool:
        if not self._same_kind(other):
            return NotImplemented
        assert isinstance(other, CausalCRDT)
        return self._context == other._context and self._store_equal(other)

    __hash__ = None  # type: ignore[assignment]  # mutable

    # ---- digests and repair by difference (used by anti-entropy) ----------------------
    # Defaults for small stores (a flag's or a register's few dots), recomputed on each
    # call; ORSet and ORMap keep theirs up to date as they change.
    def _dot_hashes(self) -> DotHashes:
        """The hashes of the live dots: running sum, and per bucket of counters."""
        return DotHashes.of(self._store_dots())

    def _live_sum(self) -> int:
        """The sum of the hashes of the live dots (the store half of the digest)."""
        return self._dot_hashes().total

    def _digest(self) -> bytes:
        """A canonical digest of the state: equal states give equal digests."""
        return digest_of(type(self).__name__.encode(), self._live_sum(), self._context)

    def _live_of(self, replica: str) -> Collection[int]:
        """The counters of the live dots of ``replica`` (a read-only view)."""
        return {counter for owner, counter in self._store_dots() if owner == replica}

    def _subset(self, dots: Iterable[Dot], context: CausalContext) -> Self:
        """A new state bound to ``context`` holding those of ``dots`` that are live here,
        with their payloads (the part of a join decomposition they make up)."""
        raise NotImplementedError

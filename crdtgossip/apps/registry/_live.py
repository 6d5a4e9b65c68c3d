"""Read-only access to the live nested objects of an ORMap, without copying them.

``ORMap[key]`` and ``ORMap.value`` copy what they return, which costs the size of the
whole nested value (for ``registry/instances``, a service with all its instances). The
registry only needs to *look* at one instance, so these helpers read the live objects
the map holds (:meth:`ORMap.get_view <crdtgossip.crdts.ORMap.get_view>` where it
suffices). This is the only module of the registry that knows how
:class:`~crdtgossip.crdts.ORMap` keeps its entries: the keys without a list of them,
and the dots that tag a key, which the view's dot index needs.

Everything returned here is the map's own object: callers must not mutate it, and must
not keep it past the next change of the map.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable
from typing import Any

from crdtgossip.crdts import CausalContext, Dot, LWWRegister, ORMap

__all__ = ["context_of", "leaf", "nested", "nested_keys"]


def nested(ormap: ORMap[Any], key: Hashable) -> Any | None:
    """The live nested map at ``key`` of a map of causal values (None when absent).

    Read-only: the object is the map's own.
    """
    return ormap.get_view(key)


def nested_keys(ormap: ORMap[Any]) -> Iterable[Any]:
    """The keys present in ``ormap``, without building a list of them."""
    return ormap._entries.keys()


def leaf(ormap: ORMap[Any], key: Hashable) -> tuple[LWWRegister[Any], tuple[Dot, ...]] | None:
    """The register at ``key`` of an ``ORMap(LWWRegister)``, and the dots that tag it.

    With one writer (the common case) the register is the map's own contribution
    object, not a copy; with concurrent writers it is their join (a new register).
    The dots are what a remove of ``key`` would cover: a change whose causal context
    covers one of them can have changed or removed this key.

    Returns:
        ``(register, dots)``, or None when ``key`` is absent.
    """
    entry = ormap._entries.get(key)
    if entry is None:
        return None
    contributions: list[LWWRegister[Any]] = list(entry.tags.values())
    if len(contributions) == 1:
        register = contributions[0]
    else:
        register = contributions[0].copy()
        for other in contributions[1:]:
            register.merge(other)
    return register, tuple(entry.tags)


def context_of(ormap: ORMap[Any]) -> CausalContext:
    """The live causal context of ``ormap`` (read-only; ``ormap.context`` copies it)."""
    context: CausalContext = ormap._context
    return context

"""Hypothesis strategies for crdtgossip's values and for operations on its data types.

Values: :func:`elements` (set elements and map keys), :func:`values` (register and map
values), :func:`replica_ids` and :func:`timestamps`.

Operations: one strategy per data type (:func:`gcounter_ops` ... :func:`ormap_ops`), each
drawing :class:`~crdtgossip.testing.laws.Operation` objects to feed
:func:`~crdtgossip.testing.laws.check_laws`; :func:`operations_for` picks the right one
for a type or a factory::

    check_laws(ORSet, orset_ops())
    check_laws(lambda: ORMap(ORSet), ormap_ops(orset_ops()))
    check_laws(lambda: ORMap(ORMap(ORSet)), operations_for(lambda: ORMap(ORMap(ORSet))))

Within one example, the operations draw their elements, keys and values from small pools
(at most :data:`POOL_SIZE` each, shared by every draw of the example), so removes hit
elements that were added, concurrent writes meet on the same key, and equal-timestamp
writes of different values happen. :func:`elements` and :func:`values` themselves are
not pooled.

**Why elements never mix 1, 1.0 and True.** Python says ``1 == 1.0 == True`` and
``0 == 0.0 == -0.0 == False``, with equal hashes, so a set or dict holds at most one of
them, and which one it keeps depends on the order of insertion. Two replicas that added
``1`` and ``True`` would then hold "equal" states with different contents and different
encodings, and no CRDT can converge on that: it is a property of Python's equality, not a
bug of a type. So within one example every two elements that compare equal have the same
type, recursively: integral floats (``2.0``, ``-0.0``, ``1e20``) are never drawn; NaN is
never drawn (it is not equal to itself, so it can never be found or removed); and each
example either draws bools and no ``0`` or ``1`` ints, or ints and no bools (a per-example
choice shared by every draw, see :func:`hypothesis.strategies.shared`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from hypothesis import strategies as st

from crdtgossip.crdts import (
    CRDT,
    Element,
    EWFlag,
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    Value,
)
from crdtgossip.testing._law import Operation

__all__ = [
    "POOL_SIZE",
    "elements",
    "ewflag_ops",
    "gcounter_ops",
    "gset_ops",
    "keys",
    "lwwmap_ops",
    "lwwregister_ops",
    "mvregister_ops",
    "operations_for",
    "ormap_ops",
    "orset_ops",
    "pncounter_ops",
    "replica_ids",
    "timestamps",
    "values",
]

T = TypeVar("T")

#: The most distinct elements (or keys, or values) one example uses. Small, so that
#: removes and concurrent writes hit the same few elements often; three still let two
#: elements interact while a third stays out of the way.
POOL_SIZE = 3

#: The integer range msgpack can carry (int64 below zero, uint64 above), which is what
#: crdtgossip's codec and every other msgpack implementation accept.
MIN_INT = -(2**63)
MAX_INT = 2**64 - 1

#: The bound of the small ints drawn half of the time.
SMALL_INT = 10

#: The largest explicit timestamp :func:`timestamps` draws: with a handful of values,
#: equal timestamps (ties broken by replica id, then value) are common.
MAX_SMALL_TIMESTAMP = 4

#: The largest counter step drawn: big enough to leave small-int encodings, small enough
#: that a long history of increments stays far from the 64-bit limit.
MAX_COUNTER_STEP = 2**32

#: Sizes of drawn strings, bytes and containers: small values shrink and print well;
#: size is not what these strategies test.
MAX_TEXT_SIZE = 6
MAX_CONTAINER_SIZE = 3
MAX_LEAVES = 6

_BOOL_MODE_KEY = "crdtgossip.testing.strategies.elements.bools"
_ELEMENT_POOL_KEY = "crdtgossip.testing.strategies.element_pool"
_KEY_POOL_KEY = "crdtgossip.testing.strategies.key_pool"
_VALUE_POOL_KEY = "crdtgossip.testing.strategies.value_pool"


def _text() -> st.SearchStrategy[str]:
    # utf-8 excludes lone surrogates, which no UTF-8 encoder (msgpack's included) takes.
    return st.text(st.characters(codec="utf-8"), max_size=MAX_TEXT_SIZE)


@functools.cache
def _elements_in_mode(with_bools: bool) -> st.SearchStrategy[Element]:
    # Small ints are what real keys and counters mostly are, and they collide with
    # each other often; the full msgpack range checks the codec's edges.
    integers = st.integers(-SMALL_INT, SMALL_INT) | st.integers(MIN_INT, MAX_INT)
    scalars: list[st.SearchStrategy[Element]] = [
        st.none(),
        # Integral floats equal ints (2.0 == 2), so only non-integral ones are drawn;
        # that also rules out -0.0 (== 0.0 with other bits); inf is not integral.
        st.floats(allow_nan=False).filter(lambda number: not number.is_integer()),
        _text(),
        st.binary(max_size=MAX_TEXT_SIZE),
    ]
    if with_bools:
        scalars += [st.booleans(), integers.filter(lambda number: number not in (0, 1))]
    else:
        scalars.append(integers)
    return st.recursive(
        st.one_of(scalars),
        lambda inner: st.lists(inner, max_size=MAX_CONTAINER_SIZE).map(tuple),
        max_leaves=MAX_LEAVES,
    )


def elements() -> st.SearchStrategy[Element]:
    """Set elements and map keys: None, bool, int, float, str, bytes and tuples of these.

    Within one example, equal elements always have equal types (see the module
    docstring for why): no integral float, no NaN, and bools or the ints 0 and 1 but
    not both.
    """
    return st.shared(st.booleans(), key=_BOOL_MODE_KEY).flatmap(_elements_in_mode)


@functools.cache
def keys() -> st.SearchStrategy[Element]:
    """G-Set elements, LWWMap keys and ORMap keys: :func:`elements` without bools.

    The codec refuses bools and ``-0.0`` in those positions (a G-Set or a map keeps one
    of ``1`` and ``True``, so equal states would have other bytes); ORSet elements,
    which are stored by their dots, take bools.
    """
    return _elements_in_mode(False)


@functools.cache
def _values() -> st.SearchStrategy[Value]:
    leaves: st.SearchStrategy[Value] = elements()
    return st.recursive(
        leaves,
        lambda inner: st.one_of(
            st.lists(inner, max_size=MAX_CONTAINER_SIZE),
            st.dictionaries(_text(), inner, max_size=MAX_CONTAINER_SIZE),
        ),
        max_leaves=MAX_LEAVES,
    )


def values() -> st.SearchStrategy[Value]:
    """Register and map values: :func:`elements`, and lists and str-keyed dicts of values."""
    return _values()


def replica_ids() -> st.SearchStrategy[str]:
    """Replica ids: non-empty strings, any Unicode (no lone surrogates)."""
    return st.text(st.characters(codec="utf-8"), min_size=1, max_size=MAX_TEXT_SIZE)


def timestamps() -> st.SearchStrategy[int]:
    """Explicit LWW timestamps: small non-negative ints, so that ties are common."""
    return st.integers(0, MAX_SMALL_TIMESTAMP)


def _pool(items: st.SearchStrategy[T], key: str) -> st.SearchStrategy[T]:
    """One item of a small pool shared by every draw (with the same key) of an example."""
    pool = st.lists(items, min_size=1, max_size=POOL_SIZE, unique_by=_pool_identity)
    return st.shared(pool, key=key).flatmap(st.sampled_from)


def _pool_identity(item: object) -> str:
    # Values may be lists and dicts (unhashable), so not ``unique=True``; within an
    # example equal items have equal types (see elements()), so equal items have equal
    # reprs and distinct ones distinct reprs.
    return repr(item)


def _pooled_elements() -> st.SearchStrategy[Element]:
    return _pool(elements(), _ELEMENT_POOL_KEY)


def _pooled_keys() -> st.SearchStrategy[Element]:
    return _pool(keys(), _KEY_POOL_KEY)


def _pooled_values() -> st.SearchStrategy[Value]:
    # Values are opaque payloads to the types; a few per example cover their
    # semantics, and drawing a fresh nested value per write is what made the
    # register and map law checks slow.
    return _pool(values(), _VALUE_POOL_KEY)


@dataclass(frozen=True)
class _Keyword:
    """Shows a keyword argument in an operation's repr: ``timestamp=3``."""

    name: str
    value: object

    def __repr__(self) -> str:
        return f"{self.name}={self.value!r}"


def _counter_step() -> st.SearchStrategy[int | None]:
    """None (use the default step of 1) or an explicit step."""
    return st.none() | st.integers(0, MAX_COUNTER_STEP)


def gcounter_ops() -> st.SearchStrategy[Operation[GCounter]]:
    """``increment(replica)`` and ``increment(replica, n)``."""

    def increment(n: int | None) -> Operation[GCounter]:
        if n is None:
            return Operation("increment", (), lambda state, replica: state.increment(replica))
        return Operation("increment", (n,), lambda state, replica: state.increment(replica, n))

    return _counter_step().map(increment)


def pncounter_ops() -> st.SearchStrategy[Operation[PNCounter]]:
    """``increment`` and ``decrement``, by 1 or an explicit step."""

    def change(name: str, n: int | None) -> Operation[PNCounter]:
        def apply(state: PNCounter, replica: str) -> PNCounter:
            mutator = state.increment if name == "increment" else state.decrement
            return mutator(replica) if n is None else mutator(replica, n)

        return Operation(name, () if n is None else (n,), apply)

    return st.builds(change, st.sampled_from(["increment", "decrement"]), _counter_step())


def gset_ops() -> st.SearchStrategy[Operation[GSet[Element]]]:
    """``add(element)`` over a small pool of elements."""

    def add(element: Element) -> Operation[GSet[Element]]:
        return Operation("add", (element,), lambda state, replica: state.add(element))

    return _pooled_keys().map(add)


def orset_ops() -> st.SearchStrategy[Operation[ORSet[Element]]]:
    """``add(element)``, ``remove(element)`` and ``clear()`` over a small pool of elements."""

    def add(element: Element) -> Operation[ORSet[Element]]:
        return Operation("add", (element,), lambda state, replica: state.add(element, replica))

    def remove(element: Element) -> Operation[ORSet[Element]]:
        return Operation("remove", (element,), lambda state, replica: state.remove(element))

    clear: Operation[ORSet[Element]] = Operation("clear", (), lambda state, replica: state.clear())
    # Adds first: hypothesis shrinks towards the first alternative, and a history of
    # adds is the simplest one to read.
    return st.one_of(_pooled_elements().map(add), _pooled_elements().map(remove), st.just(clear))


def ewflag_ops() -> st.SearchStrategy[Operation[EWFlag]]:
    """``enable(replica)`` and ``disable()``."""
    enable: Operation[EWFlag] = Operation(
        "enable", (), lambda state, replica: state.enable(replica)
    )
    disable: Operation[EWFlag] = Operation("disable", (), lambda state, replica: state.disable())
    return st.sampled_from([enable, disable])


def lwwregister_ops() -> st.SearchStrategy[Operation[LWWRegister[Value]]]:
    """``set(value)`` with an explicit small timestamp or none (the local clock)."""

    def write(value: Value, timestamp: int | None) -> Operation[LWWRegister[Value]]:
        return Operation(
            "set",
            (value, _Keyword("timestamp", timestamp)),
            lambda state, replica: state.set(value, replica, timestamp),
        )

    return st.builds(write, _pooled_values(), st.none() | timestamps())


def mvregister_ops() -> st.SearchStrategy[Operation[MVRegister[Value]]]:
    """``set(value)``."""

    def write(value: Value) -> Operation[MVRegister[Value]]:
        return Operation("set", (value,), lambda state, replica: state.set(value, replica))

    return _pooled_values().map(write)


def lwwmap_ops() -> st.SearchStrategy[Operation[LWWMap[Element, Value]]]:
    """``set(key, value)`` and ``remove(key)`` over a small pool of keys.

    Each with an explicit small timestamp or none (the local clock).
    """

    def write(
        key: Element, value: Value, timestamp: int | None
    ) -> Operation[LWWMap[Element, Value]]:
        return Operation(
            "set",
            (key, value, _Keyword("timestamp", timestamp)),
            lambda state, replica: state.set(key, value, replica, timestamp),
        )

    def remove(key: Element, timestamp: int | None) -> Operation[LWWMap[Element, Value]]:
        return Operation(
            "remove",
            (key, _Keyword("timestamp", timestamp)),
            lambda state, replica: state.remove(key, replica, timestamp),
        )

    stamps = st.none() | timestamps()
    return st.one_of(
        st.builds(write, _pooled_keys(), _pooled_values(), stamps),
        st.builds(remove, _pooled_keys(), stamps),
    )


def ormap_ops(
    nested_ops: st.SearchStrategy[Operation[Any]],
) -> st.SearchStrategy[Operation[ORMap[Element]]]:
    """``update(key, nested operation)`` and ``remove(key)`` over a small pool of keys.

    Args:
        nested_ops: the operations on the map's values, e.g. :func:`orset_ops` for an
            ``ORMap(ORSet)``, or ``ormap_ops(orset_ops())`` for ``ORMap(ORMap(ORSet))``.
    """

    def update(key: Element, nested: Operation[Any]) -> Operation[ORMap[Element]]:
        return Operation(
            "update",
            (key, nested),
            lambda state, replica: state.update(key, replica, lambda value: nested(value, replica)),
        )

    def remove(key: Element) -> Operation[ORMap[Element]]:
        return Operation("remove", (key,), lambda state, replica: state.remove(key))

    return st.one_of(st.builds(update, _pooled_keys(), nested_ops), _pooled_keys().map(remove))


_OPERATIONS_BY_TYPE: dict[type, Callable[[], st.SearchStrategy[Any]]] = {
    GCounter: gcounter_ops,
    PNCounter: pncounter_ops,
    GSet: gset_ops,
    ORSet: orset_ops,
    EWFlag: ewflag_ops,
    LWWRegister: lwwregister_ops,
    MVRegister: mvregister_ops,
    LWWMap: lwwmap_ops,
}


def operations_for(
    factory_or_type: type[CRDT] | Callable[[], CRDT] | CRDT,
) -> st.SearchStrategy[Operation[Any]]:
    """The operations strategy for one of crdtgossip's types.

    Args:
        factory_or_type: a type (``ORSet``), a factory (``lambda: ORMap(ORSet)``) or an
            empty instance (``ORMap(ORMap(ORSet))``). An ORMap's value type is found
            from the map's prototype, recursively.

    Returns:
        A strategy of operations on that type.

    Raises:
        TypeError: the type is not one of crdtgossip's (write a strategy for it), or is
            ``ORMap`` itself, which needs to know its value type.
    """
    if isinstance(factory_or_type, type):
        if factory_or_type is ORMap:
            raise TypeError(
                "operations_for(ORMap) needs the value type: pass a factory such as "
                "`lambda: ORMap(ORSet)`, or use ormap_ops(nested_ops)"
            )
        ops = _OPERATIONS_BY_TYPE.get(factory_or_type)
        if ops is None:
            raise TypeError(f"no operations strategy for {factory_or_type.__qualname__}")
        return ops()
    if isinstance(factory_or_type, ORMap):
        return ormap_ops(operations_for(factory_or_type.prototype))
    if callable(factory_or_type):
        return operations_for(factory_or_type())
    return operations_for(type(factory_or_type))

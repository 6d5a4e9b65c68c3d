"""Checks of decoded values, and of what may be a set element or a map key."""

from __future__ import annotations

import math

from crdtgossip._codec.limits import Limits, Wire
from crdtgossip._codec.table import REGISTERED_CLASSES
from crdtgossip.crdts._values import keyed_problem
from crdtgossip.errors import DecodeError

# Why keyed positions (KEYED_POSITIONS) refuse bools and -0.0: Python says ``1 == True``
# and ``0.0 == -0.0`` with equal hashes, so a G-Set or a map holds one of them,
# whichever came first; two replicas that added ``1`` and ``True`` would hold equal
# states with other bytes. The rule is the mutators' own (crdts._values.keyed_problem).


def _element_problem(value: object, *, keyed: bool) -> str | None:
    """Why ``value`` cannot be a set element or map key, or None when it can.

    Elements are hashable values: no lists, dicts or registered types. ``keyed``
    (G-Set elements, LWWMap and ORMap keys) also refuses bools and ``-0.0``, at any
    depth of tuples: the mutators' rule, ``crdts._values.keyed_problem``.
    """
    kind = type(value)
    if kind is tuple:  # callers checked the nesting depth first
        for item in value:  # type: ignore[attr-defined]
            problem = _element_problem(item, keyed=keyed)
            if problem is not None:
                return problem
        return None
    if kind is list or kind is dict or kind in REGISTERED_CLASSES:
        return f"a {kind.__name__} is not hashable: elements and keys are not lists or dicts"
    if keyed:
        return keyed_problem(value)
    return None


def _check_value(value: Wire, limits: Limits, *, hashable: bool, depth: int = 0) -> Wire:
    """Check a decoded value is of an allowed kind, within the depth limit."""
    kind = type(value)
    if kind is str or kind is bytes or kind is bool or kind is int or value is None:
        return value
    if kind is float:
        if math.isnan(value):
            raise DecodeError("NaN is not a valid element or value")
        return value
    if depth >= limits.max_depth:
        raise DecodeError(f"value nested deeper than {limits.max_depth} levels")
    if kind is tuple:
        for item in value:
            _check_value(item, limits, hashable=hashable, depth=depth + 1)
        return value
    if hashable:
        raise DecodeError(f"an element or key must be hashable, not a {kind.__name__}")
    if kind is list:
        for item in value:
            _check_value(item, limits, hashable=False, depth=depth + 1)
        return value
    if kind is dict:
        for key, item in value.items():
            if type(key) is not str:
                raise DecodeError("dict values need str keys")
            _check_value(item, limits, hashable=False, depth=depth + 1)
        return value
    if kind in REGISTERED_CLASSES:  # built by the reader from its extension
        return value
    raise DecodeError(f"unexpected {kind.__name__} in a value")


def _check_element(value: Wire, limits: Limits, *, keyed: bool) -> Wire:
    """:func:`_check_value` of a set element (``keyed``: a G-Set element or map key)."""
    _check_value(value, limits, hashable=True)
    problem = _element_problem(value, keyed=keyed)
    if problem is not None:
        raise DecodeError(problem)
    return value

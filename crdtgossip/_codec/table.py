"""The classes registered with :func:`crdtgossip.register_type`, for the value checks.

A leaf, so that the checks of decoded values (below the registry, which builds on
them) can tell a registered type's instance from anything else.
"""

from __future__ import annotations

from typing import Any

from crdtgossip.crdts._values import REGISTERED_VALUE_TYPES

#: Every registered class; kept by :mod:`crdtgossip._codec.registry`. The same set as
#: the mutators' (``crdts._values``), so that what a mutator accepts as a value and
#: what the codec writes are one rule.
REGISTERED_CLASSES: set[type[Any]] = REGISTERED_VALUE_TYPES

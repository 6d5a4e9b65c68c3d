"""The classes registered with :func:`crdtgossip.register_type`, for the value checks.

A leaf, so that the checks of decoded values (below the registry, which builds on
them) can tell a registered type's instance from anything else.
"""

from __future__ import annotations

from typing import Any

#: Every registered class; kept by :mod:`crdtgossip._codec.registry`.
REGISTERED_CLASSES: set[type[Any]] = set()

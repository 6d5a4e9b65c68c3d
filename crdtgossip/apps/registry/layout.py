"""The registry's node keys, their CRDT types, and the update functions that write them.

:mod:`.state` documents the layout and what concurrent writes do. Every update function
here touches one instance's state: none copies or scans a service or the registry, so
a write costs the size of the change whatever the registry holds.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crdtgossip.apps.registry._live import nested
from crdtgossip.crdts import LWWRegister, ORMap

__all__ = [
    "EVENTS_KEY",
    "EXPECTATIONS_KEY",
    "INSTANCES_KEY",
    "MAINTENANCE_KEY",
    "REGISTRY_KEYS",
    "RELEASES_KEY",
    "Update",
    "deregister_op",
    "instances_type",
    "keyed_type",
    "put_op",
    "register_op",
    "remove_op",
]

INSTANCES_KEY = "registry/instances"
MAINTENANCE_KEY = "registry/maintenance"
EVENTS_KEY = "registry/events"
RELEASES_KEY = "registry/releases"
EXPECTATIONS_KEY = "registry/expectations"

#: Every node key the registry uses.
REGISTRY_KEYS = (INSTANCES_KEY, MAINTENANCE_KEY, EVENTS_KEY, RELEASES_KEY, EXPECTATIONS_KEY)

Update = Callable[[Any], Any]


def instances_type() -> ORMap[str]:
    """An empty ``registry/instances`` state: service -> instance id -> record."""
    return ORMap(ORMap(LWWRegister))


def keyed_type() -> ORMap[tuple[str, str]]:
    """An empty state of the keys ``(service, instance) -> LWW record``."""
    return ORMap(LWWRegister)


def register_op(replica: str, service: str, instance: str, record: dict[str, Any]) -> Update:
    """The update that registers (or re-registers) ``instance`` of ``service``."""

    def apply(state: ORMap[str]) -> ORMap[str]:
        return state.update(
            service,
            replica,
            lambda instances: instances.update(
                instance, replica, lambda register: register.set(record, replica)
            ),
        )

    return apply


def deregister_op(replica: str, service: str, instance: str) -> Update:
    """The update that deregisters ``instance`` of ``service``.

    Removing the last instance removes the service entry itself, so the map does not
    keep an empty entry per service ever registered. Whether it is the last is read
    from the service's live map in O(1), never from a copy of it.
    """

    def apply(state: ORMap[str]) -> ORMap[str]:
        instances = nested(state, service)
        if instances is None or len(instances) == 0:
            return state.remove(service)
        if len(instances) == 1 and instance in instances:
            return state.remove(service)
        return state.update(service, replica, lambda found: found.remove(instance))

    return apply


def put_op(replica: str, key: tuple[str, str], value: dict[str, Any]) -> Update:
    """The update that writes ``value`` at ``key`` of a :func:`keyed_type` state."""

    def apply(state: ORMap[tuple[str, str]]) -> ORMap[tuple[str, str]]:
        return state.update(key, replica, lambda register: register.set(value, replica))

    return apply


def remove_op(key: tuple[str, str]) -> Update:
    """The update that removes ``key`` of a :func:`keyed_type` state, as observed."""

    def apply(state: ORMap[tuple[str, str]]) -> ORMap[tuple[str, str]]:
        return state.remove(key)

    return apply

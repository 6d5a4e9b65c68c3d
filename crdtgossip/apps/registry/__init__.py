"""The service registry: instances, health, maintenance and releases, all in CRDTs.

:class:`Registry` keeps the state on a :class:`~crdtgossip.node.Node`
(:mod:`.state` documents the layout and what concurrent writes do); :func:`make_app`
serves it as the REST API of the design (:mod:`.api`); :func:`run_agent` runs both
(``crdtgossip agent``). The reference is ``docs/apps/registry.rst``.
"""

from crdtgossip.apps.registry.agent import DEFAULT_HTTP, AgentOptions, run_agent
from crdtgossip.apps.registry.api import MAX_BODY_BYTES, make_app
from crdtgossip.apps.registry.health import CRITICAL, PASSING, WARNING, instance_health
from crdtgossip.apps.registry.index import ChangeIndex, parse_blocking
from crdtgossip.apps.registry.model import (
    HealthEvent,
    InstanceRecord,
    MaintenanceRequest,
    RegistryError,
    ReleaseRequest,
)
from crdtgossip.apps.registry.state import REGISTRY_KEYS, Registry
from crdtgossip.apps.registry.view import Snapshot

__all__ = [
    "CRITICAL",
    "DEFAULT_HTTP",
    "MAX_BODY_BYTES",
    "PASSING",
    "REGISTRY_KEYS",
    "WARNING",
    "AgentOptions",
    "ChangeIndex",
    "HealthEvent",
    "InstanceRecord",
    "MaintenanceRequest",
    "Registry",
    "RegistryError",
    "ReleaseRequest",
    "Snapshot",
    "instance_health",
    "make_app",
    "parse_blocking",
    "run_agent",
]

"""Deploy hooks: register, deregister, drain, undrain and release, over the agent's API.

:class:`AgentClient` is the library interface; ``crdtgossip deploy`` (:mod:`.cli`) the
shell one. The reference is ``docs/apps/deploy.rst``.
"""

from crdtgossip.apps.deploy.client import (
    DEFAULT_DRAIN_TIMEOUT,
    AgentClient,
    AgentError,
    normalize_url,
)

__all__ = ["DEFAULT_DRAIN_TIMEOUT", "AgentClient", "AgentError", "normalize_url"]

"""Load-balancer rendering: nginx upstreams, haproxy backends, jinja2 templates.

:class:`RenderLoop` watches an agent's REST API with blocking queries, renders the
healthy instances not in maintenance with a :class:`Renderer`, and puts the file live
only after the proxy's own binary accepted it (:class:`LiveFile`), then reloads the
proxy, once per burst of changes (:class:`Wait`). ``crdtgossip render`` is the command
line over it (:mod:`crdtgossip.apps.lb.cli`).

Renderers are plugins: anything that follows the :class:`Renderer` protocol, published
in the ``crdtgossip.renderers`` entry-point group, is a ``--format``.

Importing this package needs only the standard library; aiohttp and jinja2 (the
``apps`` extra) are imported when a client or a template is first built.
"""

from crdtgossip.apps.lb._client import (
    BLOCKING_WAIT,
    DAEMON_RETRY,
    ONCE_RETRY,
    AgentClient,
    RetryPolicy,
    Snapshot,
)
from crdtgossip.apps.lb._commands import CommandResult, run_command, substitute_path
from crdtgossip.apps.lb._haproxy import HAProxyRenderer
from crdtgossip.apps.lb._install import InstallResult, LiveFile
from crdtgossip.apps.lb._loop import RenderLoop
from crdtgossip.apps.lb._model import Instance, Services, endpoint, parse_instances, safe_name
from crdtgossip.apps.lb._nginx import EMPTY_UPSTREAM_SERVER, NginxRenderer
from crdtgossip.apps.lb._plugins import BUILTIN_RENDERERS, load_renderer, renderer_names
from crdtgossip.apps.lb._protocol import (
    ENTRY_POINT_GROUP,
    Renderer,
    RendererFactory,
    RenderOptions,
)
from crdtgossip.apps.lb._quiescence import DEFAULT_WAIT, Quiescence, Wait
from crdtgossip.apps.lb._report import ApplyReporter
from crdtgossip.apps.lb._select import Selected, Selection, select
from crdtgossip.apps.lb._template import TemplateRenderer

__all__ = [
    "BLOCKING_WAIT",
    "BUILTIN_RENDERERS",
    "DAEMON_RETRY",
    "DEFAULT_WAIT",
    "EMPTY_UPSTREAM_SERVER",
    "ENTRY_POINT_GROUP",
    "ONCE_RETRY",
    "AgentClient",
    "ApplyReporter",
    "CommandResult",
    "HAProxyRenderer",
    "InstallResult",
    "Instance",
    "LiveFile",
    "NginxRenderer",
    "Quiescence",
    "RenderLoop",
    "RenderOptions",
    "Renderer",
    "RendererFactory",
    "RetryPolicy",
    "Selected",
    "Selection",
    "Services",
    "Snapshot",
    "TemplateRenderer",
    "Wait",
    "endpoint",
    "load_renderer",
    "parse_instances",
    "renderer_names",
    "run_command",
    "safe_name",
    "select",
    "substitute_path",
]

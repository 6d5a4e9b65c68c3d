"""Finding renderers: the built-ins, and plugins in the ``crdtgossip.renderers`` group.

A plugin package declares, in its ``pyproject.toml``::

    [project.entry-points."crdtgossip.renderers"]
    caddy = "crdtgossip_caddy:CaddyRenderer"

and ``crdtgossip render --format caddy`` finds it once the package is installed. The
built-in names (``nginx``, ``haproxy``, ``template``) are reserved: an entry point
with one of them is ignored, so installing a package can never change what an existing
``--format`` renders. Only the requested plugin is imported.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from crdtgossip.apps.lb._haproxy import HAProxyRenderer
from crdtgossip.apps.lb._nginx import NginxRenderer
from crdtgossip.apps.lb._protocol import (
    ENTRY_POINT_GROUP,
    Renderer,
    RendererFactory,
    RenderOptions,
)
from crdtgossip.apps.lb._template import TemplateRenderer
from crdtgossip.errors import ConfigError

__all__ = ["BUILTIN_RENDERERS", "load_renderer", "renderer_names"]

#: The renderers that ship with crdtgossip, by ``--format`` name.
BUILTIN_RENDERERS: dict[str, RendererFactory] = {
    "nginx": NginxRenderer,
    "haproxy": HAProxyRenderer,
    "template": TemplateRenderer,
}


def _plugins() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for entry in entry_points(group=ENTRY_POINT_GROUP):
        # crdtgossip's own distribution lists the built-ins too; they are reserved.
        if entry.name not in BUILTIN_RENDERERS:
            found.setdefault(entry.name, entry)
    return found


def renderer_names() -> list[str]:
    """Every ``--format`` value available here: the built-ins, then plugins, sorted."""
    return [*BUILTIN_RENDERERS, *sorted(_plugins())]


def load_renderer(name: str, options: RenderOptions | None = None) -> Renderer:
    """Build the renderer called ``name``.

    Args:
        name: a built-in name or a plugin's entry-point name.
        options: what the command line gives the renderer.

    Returns:
        The renderer.

    Raises:
        ~crdtgossip.errors.ConfigError: no renderer has that name, a plugin failed to import, its
            factory refused the options, or it built something that is not a
            :class:`~crdtgossip.apps.lb.Renderer`.
    """
    options = options if options is not None else RenderOptions()
    factory = BUILTIN_RENDERERS.get(name)
    if factory is None:
        plugins = _plugins()
        entry = plugins.get(name)
        if entry is None:
            known = ", ".join(renderer_names())
            raise ConfigError(f"unknown format {name!r}: choose one of {known}")
        try:
            factory = entry.load()
        except Exception as exc:
            # Any import-time failure of third-party code is the plugin's, not ours.
            raise ConfigError(
                f"renderer plugin {name!r} ({entry.value}) failed to load: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if not callable(factory):
            raise ConfigError(f"renderer plugin {name!r} ({entry.value}) is not callable")
    renderer = factory(options)
    if not isinstance(renderer, Renderer):
        raise ConfigError(
            f"renderer {name!r} returned a {type(renderer).__name__!r} object, which "
            f"lacks name, render or check_command"
        )
    return renderer

"""The renderer plugin protocol: what a proxy needs to be supported.

A renderer turns the healthy instances of every service into the text of one
configuration file, and says how to validate that text with the proxy's own binary. It
does no I/O of its own in :meth:`Renderer.render`: the render loop fetches, compares,
validates, swaps the file and reloads, the same way for every renderer.

A plugin is a callable, usually the renderer class itself, that takes
:class:`RenderOptions` and returns a :class:`Renderer`, published under the entry-point
group ``crdtgossip.renderers``; the entry-point name is the ``--format`` value.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from crdtgossip.apps.lb._model import Services
from crdtgossip.errors import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "RenderOptions", "Renderer", "RendererFactory", "refuse_template"]

#: The entry-point group plugins are published under.
ENTRY_POINT_GROUP = "crdtgossip.renderers"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """What the command line passes to a renderer factory.

    New fields only ever come with a default, so a plugin written against this version
    keeps working.

    Attributes:
        template: the text of ``--template FILE``, or None when none was given. A
            renderer that has no use for a template should refuse one with
            :class:`~crdtgossip.errors.ConfigError` rather than ignore it.
        template_name: where the template came from, for error messages.
    """

    template: str | None = None
    template_name: str = "<template>"


@runtime_checkable
class Renderer(Protocol):
    """Renders one configuration file for one kind of proxy.

    Rules an implementation must follow:

    * :meth:`render` is a pure function of its argument: the same services give the same
      text, byte for byte (sort everything), or every poll would look like a change and
      reload the proxy;
    * nothing from the registry goes into the output unchecked: names and addresses
      must be validated or escaped for the target syntax
      (:func:`~crdtgossip.apps.lb.safe_name`, :func:`~crdtgossip.apps.lb.endpoint`);
    * a service with no instance still renders to something the proxy accepts, since
      the proxy's other configuration may refer to it by name.
    """

    @property
    def name(self) -> str:
        """The ``--format`` value, for messages (``nginx``, ``haproxy`` ...)."""
        ...

    def render(self, services: Services) -> str:
        """The whole text of the configuration file.

        Args:
            services: every service name to its healthy instances not in maintenance,
                possibly an empty list.

        Returns:
            The file's text.

        Raises:
            ~crdtgossip.errors.ConfigError: the services cannot be rendered (a template error, say);
                the live file is left as it was.
        """
        ...

    def check_command(self, candidate: Path, scratch: Path) -> str | None:
        """The shell command that validates a rendered file, or None for no check.

        Used when the user gives no ``--check``. It runs with ``/bin/sh -c`` before the
        live file changes; exit status 0 accepts the candidate, anything else refuses
        it, and the first error line of its output is shown to the operator.

        Args:
            candidate: the rendered file, not yet live, in the live file's directory.
            scratch: an empty private directory, deleted after the check, for any
                wrapper configuration the check needs (a rendered fragment is often
                not a whole configuration on its own).

        Returns:
            The command, with every path in it quoted for the shell
            (:func:`shlex.quote`).

        Raises:
            ~crdtgossip.errors.ConfigError: the check cannot run here (the proxy's binary is not
                installed); this stops the render command, since no candidate could ever be
                validated.
        """
        ...


class RendererFactory(Protocol):
    """What an entry point in ``crdtgossip.renderers`` must name."""

    def __call__(self, options: RenderOptions) -> Renderer:
        """Build a renderer.

        Raises:
            ~crdtgossip.errors.ConfigError: the options do not suit this renderer.
        """
        ...


def refuse_template(options: RenderOptions | None) -> None:
    """For renderers with a fixed output: refuse a ``--template`` instead of ignoring it.

    Raises:
        ~crdtgossip.errors.ConfigError: a template was given (only ``--format template``
            takes one).
    """
    if options is not None and options.template is not None:
        raise ConfigError("--template is only used with --format template")

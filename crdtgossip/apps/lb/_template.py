"""User templates: any configuration format, written in jinja2.

The template runs in jinja2's sandbox (:class:`jinja2.sandbox.SandboxedEnvironment`):
it can read the services it is given but cannot reach Python internals, so a template
is no more powerful than the text it produces. Undefined names are errors
(:class:`jinja2.StrictUndefined`): a typo fails the render, it does not silently drop a
line from a load balancer's configuration.

The template sees one variable, ``services``: service name to the list of its healthy
instances not in maintenance, filtered and sorted like the built-in renderers' (names
that are not safe left out), each an :class:`~crdtgossip.apps.lb.Instance` with an
``endpoint`` ready for a ``server`` line.

Tags and meta values are free text. Every ``{{ ... }}`` whose value is not a plain
word (letters, digits and ``_ . : / @ % + = , - [ ]``) is refused unless it went
through a quoting filter: ``nginx_quote`` (a double-quoted nginx string) or
``haproxy_quote`` (a single-quoted haproxy word). So ``weight={{ i.meta.weight }}``
with the meta value ``1; server 10.66.66.66:80`` fails the render instead of adding a
server, and the render loop leaves that instance out. Example templates that use the
filters ship in ``crdtgossip/apps/lb/templates/``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from crdtgossip.apps.lb._model import Instance, Services
from crdtgossip.apps.lb._protocol import RenderOptions
from crdtgossip.apps.lb._select import select
from crdtgossip.errors import ConfigError

if TYPE_CHECKING:
    import jinja2

__all__ = ["TEMPLATES_DIR", "Quoted", "TemplateRenderer", "haproxy_quote", "nginx_quote"]

#: Where the example templates ship.
TEMPLATES_DIR = Path(__file__).parent / "templates"

# What a template may write unquoted: no white space, ";", "{", "}", "#", quotes,
# backslash, "$" or control characters, so nothing can end a directive, open a
# block, start a comment or expand a variable in nginx or haproxy.
_WORD = re.compile(r"[A-Za-z0-9_.:/@%+=,\[\]-]*")


class Quoted(str):
    """Text a quoting filter made safe to write as it is."""

    __slots__ = ()


def _printable(value: object, filter_name: str) -> str:
    text = str(value)
    if not text.isprintable():
        raise ConfigError(f"{filter_name}: a value holds a line break or control character")
    return text


def nginx_quote(value: object) -> Quoted:
    """``value`` as an nginx double-quoted string (``\\`` and ``"`` escaped).

    Raises:
        ~crdtgossip.errors.ConfigError: the value holds a line break or a control
            character, which no quoting makes safe. A ``$`` stays a variable in
            directives that take variables.
    """
    text = _printable(value, "nginx_quote")
    return Quoted('"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"')


def haproxy_quote(value: object) -> Quoted:
    """``value`` as a haproxy single-quoted word: no escape or variable is expanded
    inside; a ``'`` is written ``'\\''`` (close, escaped quote, reopen).

    Raises:
        ~crdtgossip.errors.ConfigError: the value holds a line break or a control
            character.
    """
    text = _printable(value, "haproxy_quote")
    return Quoted("'" + text.replace("'", "'\\''") + "'")


def _finalize(value: object) -> object:
    """Refuse to write an unquoted value that is not a plain word (jinja2 ``finalize``)."""
    if isinstance(value, Quoted) or value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    if _WORD.fullmatch(text) is None:
        raise ConfigError(
            f"{text[:40]!r} is not a plain word: write it through nginx_quote or haproxy_quote"
        )
    return value


class TemplateRenderer:
    """Renders a user's jinja2 template; has no check of its own (give ``--check``).

    Example:
        >>> from crdtgossip.apps.lb import Instance, RenderOptions, TemplateRenderer
        >>> source = (
        ...     "{% for name, instances in services.items() %}"
        ...     "{{ name }}={{ instances | map(attribute='endpoint') | join(',') }}\\n"
        ...     "{% endfor %}"
        ... )
        >>> renderer = TemplateRenderer(RenderOptions(template=source))
        >>> print(renderer.render({"web": [Instance("web-1", "10.0.0.1", 80)]}), end="")
        web=10.0.0.1:80
    """

    name = "template"

    def __init__(self, options: RenderOptions) -> None:
        """Compile the template.

        Args:
            options: ``template`` must hold the template's text.

        Raises:
            ~crdtgossip.errors.ConfigError: no template was given, jinja2 is not installed, or the
                template has a syntax error (the message gives its line).
        """
        if options.template is None:
            raise ConfigError("--format template needs --template FILE")
        try:
            import jinja2
            from jinja2.sandbox import SandboxedEnvironment
        except ImportError as exc:  # pragma: no cover - jinja2 is in the apps extra
            raise ConfigError("templates need jinja2: pip install 'crdtgossip[apps]'") from exc
        self._source_name = options.template_name
        environment = SandboxedEnvironment(
            undefined=jinja2.StrictUndefined,
            # Configuration files, not HTML: HTML escaping would corrupt them.
            autoescape=False,
            keep_trailing_newline=True,
            finalize=_finalize,
        )
        environment.filters["nginx_quote"] = nginx_quote
        environment.filters["haproxy_quote"] = haproxy_quote
        try:
            self._template: jinja2.Template = environment.from_string(options.template)
        except jinja2.TemplateSyntaxError as exc:
            raise ConfigError(
                f"template {self._source_name}, line {exc.lineno}: {exc.message}"
            ) from exc

    def render(self, services: Services) -> str:
        """Render the template with ``services``; see the module docstring.

        Raises:
            ~crdtgossip.errors.ConfigError: the template failed (an undefined name, a sandbox
                violation, an error it raised); the message names the template.
        """
        import jinja2

        selection = select(services)
        visible: dict[str, list[Instance]] = {
            service.name: [instance for instance, _ in service.servers]
            for service in selection.services
        }
        try:
            return self._template.render(services=visible)
        except ConfigError as exc:
            raise ConfigError(f"template {self._source_name}: {exc}") from exc
        except jinja2.TemplateError as exc:
            raise ConfigError(f"template {self._source_name}: {exc}") from exc
        except Exception as exc:
            # A template expression can raise whatever Python raises ({{ 1 / 0 }}); it
            # is the template's failure, reported as such, never a crash of the loop.
            raise ConfigError(f"template {self._source_name}: {type(exc).__name__}: {exc}") from exc

    def check_command(self, candidate: Path, scratch: Path) -> None:
        """None: a template's output format is unknown; give ``--check`` to validate it."""
        return None

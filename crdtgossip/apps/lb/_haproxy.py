"""haproxy: one ``backend`` section per service, in a file loaded with a second ``-f``.

haproxy has no ``include``; it loads every ``-f`` file (or every file of a ``-f``
directory) in order, so the rendered file goes after the main one
(``haproxy -f /etc/haproxy/haproxy.cfg -f /etc/haproxy/backends.cfg``), whose
``defaults`` section (mode, balance, timeouts) the backends inherit.

A service with no healthy instance renders as a backend with no ``server`` line:
haproxy accepts it, and answers requests routed to it with 503 until an instance is
back, while a ``use_backend`` naming it stays valid.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from crdtgossip.apps.lb._commands import find_binary
from crdtgossip.apps.lb._model import Services
from crdtgossip.apps.lb._protocol import RenderOptions, refuse_template
from crdtgossip.apps.lb._select import Selected, render_sections

__all__ = ["HAProxyRenderer"]

_HEADER = "# Rendered by crdtgossip (haproxy); do not edit: every render replaces this file.\n"

# The check wrapper's frontend: haproxy -c exits 2 ("will not start, no listener") on
# backends alone. A ":" cannot occur in a service name, so it never clashes with one.
_CHECK_FRONTEND = "crdtgossip:check"

#: Timeouts of the check wrapper's ``defaults``; their values do not matter, their
#: absence would make haproxy warn on every rendered backend.
_CHECK_TIMEOUTS = ("connect 5s", "client 30s", "server 30s")


class HAProxyRenderer:
    """Renders ``backend <service>`` sections of ``server <id> address:port check`` lines.

    ``check`` turns on haproxy's own health checks as a second line of defence: the
    registry's health can be seconds behind. Services and servers are sorted by name.

    Example:
        >>> from crdtgossip.apps.lb import HAProxyRenderer, Instance
        >>> text = HAProxyRenderer().render({"web": [Instance("web-1", "::1", 8080)]})
        >>> print(text.split("\\n", 1)[1], end="")
        <BLANKLINE>
        backend web
            server web-1 [::1]:8080 check
    """

    name = "haproxy"

    def __init__(self, options: RenderOptions | None = None) -> None:
        """Create the renderer.

        Raises:
            ~crdtgossip.errors.ConfigError: a template was given (only ``--format template`` takes
                one).
        """
        refuse_template(options)

    def render(self, services: Services) -> str:
        """Render every service as a ``backend`` section; see the class docstring."""
        return render_sections(services, header=_HEADER, kind="backend", section=_backend)

    def check_command(self, candidate: Path, scratch: Path) -> str:
        """``haproxy -c`` on a minimal main configuration followed by the candidate.

        It validates the backends on their own (syntax, addresses, server names); to
        validate them with your main configuration, give
        ``--check 'haproxy -c -f /etc/haproxy/haproxy.cfg -f {path}'``.

        Raises:
            ~crdtgossip.errors.ConfigError: haproxy is not installed.
        """
        binary = find_binary("haproxy")
        wrapper = scratch / "haproxy.cfg"
        timeouts = "".join(f"    timeout {timeout}\n" for timeout in _CHECK_TIMEOUTS)
        # "-c" parses but never binds, so the listener's port is never taken or refused;
        # port 0 would be refused ("invalid port").
        wrapper.write_text(
            f"defaults\n{timeouts}frontend {_CHECK_FRONTEND}\n    bind 127.0.0.1:65535\n",
            encoding="utf-8",
        )
        return " ".join(
            shlex.quote(part) for part in (binary, "-c", "-f", str(wrapper), "-f", str(candidate))
        )


def _backend(service: Selected) -> list[str]:
    lines = [f"backend {service.name}"]
    lines.extend(f"    server {inst.id} {address} check" for inst, address in service.servers)
    if not service.servers:
        lines.append("    # no healthy instance: no server (haproxy answers 503)")
    return lines

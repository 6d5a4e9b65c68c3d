"""nginx: one ``upstream`` block per service, in a file to ``include`` inside ``http``.

A service with no healthy instance cannot be left out (a ``proxy_pass`` naming it
would break the whole configuration) nor rendered empty (nginx refuses an upstream with
no server: "no servers are inside upstream", consul-template#1648). It gets one
placeholder server marked ``down``: nginx accepts the file, never connects to the
placeholder, and answers requests for that service with 502 until an instance is back.
"""

from __future__ import annotations

import shlex
from pathlib import Path

from crdtgossip.apps.lb._commands import find_binary
from crdtgossip.apps.lb._model import Services
from crdtgossip.apps.lb._protocol import RenderOptions, refuse_template
from crdtgossip.apps.lb._select import Selected, render_sections
from crdtgossip.errors import ConfigError

__all__ = ["EMPTY_UPSTREAM_SERVER", "NginxRenderer"]

#: The placeholder of an upstream with no healthy instance; marked ``down`` it is never
#: contacted, so any address would do: loopback keeps it local even if someone drops
#: the ``down``, and 65535 is a port no one assigns to a service.
EMPTY_UPSTREAM_SERVER = "127.0.0.1:65535"

_HEADER = "# Rendered by crdtgossip (nginx); do not edit: every render replaces this file.\n"

# Temporary paths nginx wants writable even for "nginx -t"; pointed into the scratch
# directory so the check runs as a non-root user too.
_TEMP_PATH_DIRECTIVES = (
    "client_body_temp_path",
    "proxy_temp_path",
    "fastcgi_temp_path",
    "uwsgi_temp_path",
    "scgi_temp_path",
)


class NginxRenderer:
    """Renders ``upstream <service> { server address:port; ... }`` blocks.

    The output is a fragment for ``include`` inside nginx's ``http`` block (or
    ``stream`` block: the syntax is the same). Services and servers are sorted by name;
    each server line carries the instance id as a comment.

    Example:
        >>> from crdtgossip.apps.lb import Instance, NginxRenderer
        >>> text = NginxRenderer().render(
        ...     {"web": [Instance("web-1", "10.0.0.1", 8080)], "api": []}
        ... )
        >>> print(text.split("\\n", 1)[1], end="")
        <BLANKLINE>
        upstream api {
            # no healthy instance: a placeholder keeps the upstream valid (nginx answers 502)
            server 127.0.0.1:65535 down;
        }
        <BLANKLINE>
        upstream web {
            server 10.0.0.1:8080;  # web-1
        }
    """

    name = "nginx"

    def __init__(self, options: RenderOptions | None = None) -> None:
        """Create the renderer.

        Raises:
            ~crdtgossip.errors.ConfigError: a template was given (only ``--format template`` takes
                one).
        """
        refuse_template(options)

    def render(self, services: Services) -> str:
        """Render every service as an ``upstream`` block; see the class docstring."""
        return render_sections(
            services, header=_HEADER, kind="upstream", section=_upstream, closing="}"
        )

    def check_command(self, candidate: Path, scratch: Path) -> str:
        """``nginx -t`` on a minimal main configuration that includes the candidate.

        The rendered file is a fragment, not a whole configuration; the wrapper gives it
        an ``http`` block, and keeps the pid file, error log and temporary paths in
        ``scratch`` so the check needs no root and no writable ``/var``. It validates the
        fragment on its own (syntax, addresses, no empty upstream); to validate it
        together with the rest of your configuration, give ``--check``.

        Raises:
            ~crdtgossip.errors.ConfigError: nginx is not installed.
        """
        binary = find_binary("nginx")
        temp_paths = "".join(
            f"    {directive} {_quote(scratch / directive)};\n"
            for directive in _TEMP_PATH_DIRECTIVES
        )
        wrapper = scratch / "nginx.conf"
        wrapper.write_text(
            f"pid {_quote(scratch / 'nginx.pid')};\n"
            "error_log stderr;\n"
            "events {}\n"
            "http {\n"
            "    access_log off;\n"
            f"{temp_paths}"
            f"    include {_quote(candidate)};\n"
            "}\n",
            encoding="utf-8",
        )
        # -e (nginx >= 1.19.5): the error log before the configuration is read, which
        # is otherwise a path under /var/log that a non-root user cannot open.
        return " ".join(
            shlex.quote(part)
            for part in (binary, "-q", "-t", "-e", "stderr", "-p", str(scratch), "-c", str(wrapper))
        )


def _upstream(service: Selected) -> list[str]:
    lines = [f"upstream {service.name} {{"]
    lines.extend(f"    server {address};  # {inst.id}" for inst, address in service.servers)
    if not service.servers:
        lines.append(
            "    # no healthy instance: a placeholder keeps the upstream valid (nginx answers 502)"
        )
        lines.append(f"    server {EMPTY_UPSTREAM_SERVER} down;")
    return lines


def _quote(path: Path) -> str:
    """A path as an nginx double-quoted string."""
    text = str(path)
    if any(ord(char) < 0x20 for char in text):
        raise ConfigError(f"cannot validate with nginx: control character in path {text!r}")
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'

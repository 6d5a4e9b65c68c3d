"""The nginx renderer: golden output, sanitization, and the real ``nginx -t``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from crdtgossip.apps.lb import (
    EMPTY_UPSTREAM_SERVER,
    Instance,
    NginxRenderer,
    Services,
    run_command,
)
from tests.apps.lb.samples import SERVICES

GOLDEN = """\
# Rendered by crdtgossip (nginx); do not edit: every render replaces this file.

upstream api {
    server localhost:9000;  # api-1
}

upstream idle {
    # no healthy instance: a placeholder keeps the upstream valid (nginx answers 502)
    server 127.0.0.1:65535 down;
}

upstream web {
    server 10.0.0.1:8080;  # web-1
    server 10.0.0.2:8080;  # web-2
    server [2001:db8::6]:8080;  # web-6
}
"""


def test_golden_output() -> None:
    assert NginxRenderer().render(SERVICES) == GOLDEN


def test_nothing_from_the_registry_can_inject_a_directive() -> None:
    text = NginxRenderer().render(
        {
            "web": [
                Instance("web-1", "10.0.0.1", 80),
                Instance("web-2", "10.0.0.2;\n}\ninclude /etc/passwd;", 80),
                Instance("x;}include", "10.0.0.3", 80),
            ],
            "evil { } server": [Instance("e", "10.0.0.4", 80)],
        }
    )
    assert "include" not in text
    assert "passwd" not in text
    assert "evil" not in text
    assert text.count("{") == text.count("}") == 1
    assert "# web-2: left out, its address or port is not valid" in text
    assert "# 1 service(s) left out for names that are not valid upstream names" in text


def test_no_service_at_all_renders_only_the_header() -> None:
    assert NginxRenderer().render({}).splitlines() == [GOLDEN.splitlines()[0]]


def full_config(directory: Path, include: Path, upstreams: list[str]) -> Path:
    """A whole nginx.conf, everything writable inside ``directory``, that includes the
    rendered file and proxies to each upstream (so the references are checked too)."""
    locations = "".join(
        f"        location /{name}/ {{ proxy_pass http://{name}; }}\n" for name in upstreams
    )
    conf = directory / "nginx.conf"
    conf.write_text(
        f"pid {directory}/nginx.pid;\n"
        f"error_log {directory}/error.log;\n"
        "events {}\n"
        "http {\n"
        "    access_log off;\n"
        f"    client_body_temp_path {directory}/client_body;\n"
        f"    proxy_temp_path {directory}/proxy;\n"
        f"    fastcgi_temp_path {directory}/fastcgi;\n"
        f"    uwsgi_temp_path {directory}/uwsgi;\n"
        f"    scgi_temp_path {directory}/scgi;\n"
        f"    include {include};\n"
        "    server {\n"
        "        listen 127.0.0.1:8080;\n"
        f"{locations}"
        "    }\n"
        "}\n"
    )
    return conf


def nginx_t(nginx: str, conf: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [nginx, "-q", "-t", "-e", "stderr", "-p", str(conf.parent), "-c", str(conf)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_nginx_accepts_the_rendered_file_in_a_full_config(nginx: str, tmp_path: Path) -> None:
    services: Services = {
        **SERVICES,
        "db": [Instance("db-1", "127.0.0.1", 5432)],
    }
    rendered = tmp_path / "upstreams.inc"
    rendered.write_text(NginxRenderer().render(services))
    result = nginx_t(nginx, full_config(tmp_path, rendered, ["web", "idle", "db"]))
    assert result.returncode == 0, result.stderr


def test_nginx_refuses_an_empty_upstream_which_is_why_the_placeholder(
    nginx: str, tmp_path: Path
) -> None:
    rendered = tmp_path / "upstreams.inc"
    rendered.write_text("upstream idle {\n}\n")
    result = nginx_t(nginx, full_config(tmp_path, rendered, ["idle"]))
    assert result.returncode != 0
    assert "no servers are inside upstream" in result.stderr
    rendered.write_text(NginxRenderer().render({"idle": []}))
    assert f"server {EMPTY_UPSTREAM_SERVER} down;" in rendered.read_text()
    assert nginx_t(nginx, full_config(tmp_path, rendered, ["idle"])).returncode == 0


async def test_default_check_accepts_a_render_and_refuses_a_broken_file(
    nginx: str, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    candidate = tmp_path / "my dir" / ".upstreams.inc.tmp"
    candidate.parent.mkdir()
    candidate.write_text(NginxRenderer().render(SERVICES))
    command = NginxRenderer().check_command(candidate, scratch)
    assert (await run_command(command)).ok

    candidate.write_text("upstream web {\n    server 10.0.0.1:99999;\n}\n")
    result = await run_command(NginxRenderer().check_command(candidate, scratch))
    assert not result.ok
    assert "invalid port" in result.reason
    assert "[emerg]" in result.reason

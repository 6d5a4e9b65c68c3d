"""The haproxy renderer: golden output, sanitization, and the real ``haproxy -c``."""

from __future__ import annotations

import subprocess
from pathlib import Path

from crdtgossip.apps.lb import HAProxyRenderer, Instance, run_command
from tests.apps.lb.samples import SERVICES

GOLDEN = """\
# Rendered by crdtgossip (haproxy); do not edit: every render replaces this file.

backend api
    server api-1 localhost:9000 check

backend idle
    # no healthy instance: no server (haproxy answers 503)

backend web
    server web-1 10.0.0.1:8080 check
    server web-2 10.0.0.2:8080 check
    server web-6 [2001:db8::6]:8080 check
"""

MAIN_CONFIG = """\
global
    maxconn 100
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend www
    bind 127.0.0.1:8080
    use_backend api if { path_beg /api }
    use_backend idle if { path_beg /idle }
    default_backend web
"""


def test_golden_output() -> None:
    assert HAProxyRenderer().render(SERVICES) == GOLDEN


def test_nothing_from_the_registry_can_inject_a_line() -> None:
    text = HAProxyRenderer().render(
        {
            "web": [
                Instance("web-1", "10.0.0.1", 80),
                Instance("web-2", "10.0.0.2 check\n    server x 6.6.6.6:80", 80),
                Instance("a b", "10.0.0.3", 80),
            ],
            "evil\nfrontend x": [],
        }
    )
    assert "6.6.6.6" not in text
    assert "frontend" not in text
    assert [line for line in text.splitlines() if "server " in line] == [
        "    server web-1 10.0.0.1:80 check"
    ]


def haproxy_c(haproxy: str, *files: Path) -> subprocess.CompletedProcess[str]:
    arguments = [part for path in files for part in ("-f", str(path))]
    return subprocess.run(
        [haproxy, "-c", *arguments], capture_output=True, text=True, timeout=60, check=False
    )


def test_haproxy_accepts_the_rendered_file_after_a_full_config(
    haproxy: str, tmp_path: Path
) -> None:
    main = tmp_path / "haproxy.cfg"
    main.write_text(MAIN_CONFIG)
    backends = tmp_path / "backends.cfg"
    backends.write_text(HAProxyRenderer().render(SERVICES))
    result = haproxy_c(haproxy, main, backends)
    assert result.returncode == 0, result.stdout + result.stderr


def test_haproxy_accepts_an_empty_backend_and_refuses_a_missing_one(
    haproxy: str, tmp_path: Path
) -> None:
    main = tmp_path / "haproxy.cfg"
    main.write_text(MAIN_CONFIG)
    backends = tmp_path / "backends.cfg"
    backends.write_text(HAProxyRenderer().render({"web": [], "api": [], "idle": []}))
    assert haproxy_c(haproxy, main, backends).returncode == 0
    # Leaving a service out instead would break every use_backend that names it.
    backends.write_text(HAProxyRenderer().render({"web": [], "api": []}))
    assert haproxy_c(haproxy, main, backends).returncode != 0


async def test_default_check_accepts_a_render_and_refuses_a_broken_file(
    haproxy: str, tmp_path: Path
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    candidate = tmp_path / "my dir" / ".backends.cfg.tmp"
    candidate.parent.mkdir()
    candidate.write_text(HAProxyRenderer().render(SERVICES))
    assert (await run_command(HAProxyRenderer().check_command(candidate, scratch))).ok

    candidate.write_text("backend web\n    server a 10.0.0.1:99999 check\n")
    result = await run_command(HAProxyRenderer().check_command(candidate, scratch))
    assert not result.ok
    assert "invalid port" in result.reason
    assert "ALERT" in result.reason

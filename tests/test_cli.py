"""The crdtgossip command, run as a real process."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from crdtgossip.security import decode_key

# A step title as the demo prints it: "[ 1.23s] Title".
_STEP = re.compile(r"^\[\s*\d+\.\d+s\] (.*)$")

# The demo with aiohttp made unimportable, as on an installation without the extra.
_WITHOUT_APPS = (
    "import sys; sys.modules['aiohttp'] = None; "
    "from crdtgossip.cli import main; sys.exit(main(['demo']))"
)


def run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crdtgossip.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def sections(out: str) -> dict[str, list[str]]:
    """The demo's output as step title -> its detail lines (stripped)."""
    found: dict[str, list[str]] = {}
    current: list[str] = []
    for line in out.splitlines():
        match = _STEP.match(line)
        if match is not None:
            current = found.setdefault(match.group(1), [])
        elif line.strip():
            current.append(line.strip())
    return found


def section(out: str, title_start: str) -> list[str]:
    """The detail lines of the one step whose title starts with ``title_start``."""
    matching = [lines for title, lines in sections(out).items() if title.startswith(title_start)]
    assert len(matching) == 1, f"no single step {title_start!r} in:\n{out}"
    return matching[0]


@pytest.fixture(scope="module")
def demo() -> subprocess.CompletedProcess[str]:
    """One run of ``crdtgossip demo``, shared by the tests that read its output."""
    return run("demo")


def test_demo_runs_a_cluster_and_exits_zero(demo: subprocess.CompletedProcess[str]) -> None:
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    assert "every node sees 5 alive" in out
    assert "all replicas converged" in out
    assert "visits=50" in out
    assert "declared dead by every survivor" in out
    assert "marked left, not dead" in out
    assert out.rstrip().endswith("Done.")


def test_demo_shows_the_apps(demo: subprocess.CompletedProcess[str]) -> None:
    apps = pytest.importorskip("crdtgossip.apps.demo", reason="the apps extra is not installed")
    assert demo.returncode == 0, demo.stderr
    out = demo.stdout
    address = {i.id: f"server {i.address}:{i.port};  # {i.id}" for i in apps.DEMO_INSTANCES}

    # Registered through ams, read through ber.
    replicated = section(out, "Read through ber's API: replicated in")
    assert "GET /v1/services  web: web-1, web-2, web-3" in replicated
    assert "GET /v1/services  api: api-1, api-2" in replicated

    # The render holds the healthy instances' addresses, not the one that warned.
    rendered = section(out, "Render nginx upstreams through cph's API")
    for instance in ("web-1", "web-2", "api-1"):
        assert address[instance] in rendered
    assert not any("web-3" in line for line in rendered)
    if shutil.which("nginx"):
        assert any("nginx -t accepted it" in line for line in rendered)
    else:
        assert any("check was skipped" in line for line in rendered)
    written = next(line for line in rendered if line.startswith("written to "))
    live_file = Path(written.removeprefix("written to ").split(" (")[0])
    assert live_file.name == "upstreams.conf"
    assert not live_file.parent.exists()  # the temporary directory is gone

    # The 2 s event expired while the demo ran.
    expiry = section(out, "Waiting for api-2's 2 s ttl to run out")
    assert any(line.startswith("api-2 is critical") for line in expiry)

    # The drain removes exactly the drained server from the re-render.
    drained = section(out, "deploy drain web-1 through ams")
    changes = [line for line in drained if line.startswith(("- ", "+ "))]
    assert changes == [f"- {address['web-1']}"]

    released = section(out, "deploy release prod/web through edi")
    assert any(
        "prod/web current 1.4.3 (history, newest first: 1.4.3, 1.4.2)" in line for line in released
    )
    assert any(line.endswith("prod/web ran 1.4.2") for line in released)

    crashed = section(out, "Crashing dub")
    assert "GET /v1/members: dub is dead on ams, ber, cph, edi" in crashed


def test_demo_without_the_apps_extra_runs_the_core() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_APPS],
        capture_output=True,
        text=True,
        timeout=120.0,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert 'pip install "crdtgossip[apps]" shows the rest' in out
    assert "Render nginx" not in out
    assert "declared dead by every survivor" in out
    assert out.rstrip().endswith("Done.")


def test_keygen_prints_a_usable_key() -> None:
    result = run("keygen")
    assert result.returncode == 0
    assert len(decode_key(result.stdout.strip())) == 32


def test_help_everywhere_and_errors_exit_nonzero() -> None:
    for args in (["--help"], ["demo", "--help"], ["keygen", "--help"]):
        assert run(*args).returncode == 0
    bad = run("no-such-command")
    assert bad.returncode != 0
    assert "invalid choice" in bad.stderr

"""The crdtgossip command, run as a real process."""

from __future__ import annotations

import subprocess
import sys

from crdtgossip.security import decode_key


def run(*args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "crdtgossip.cli", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_demo_runs_a_cluster_and_exits_zero() -> None:
    result = run("demo")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "every node sees 5 alive" in out
    assert "all replicas converged" in out
    assert "visits=50" in out
    assert "declared dead by every survivor" in out
    assert "marked left, not dead" in out
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

"""Check and reload commands: {path} quoting, the one-line reason, the timeout."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from crdtgossip.apps.lb import run_command, substitute_path
from crdtgossip.apps.lb._commands import MAX_REASON_LENGTH, find_binary
from crdtgossip.errors import ConfigError


async def test_path_is_substituted_quoted_so_it_cannot_become_shell(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where an injected "touch pwned" would write
    hostile = tmp_path / "a b;touch pwned;'$(touch pwned2)'"
    hostile.write_text("x")
    result = await run_command(substitute_path("test -f {path} && echo ok {path}", hostile))
    assert result.ok
    assert result.reason == f"ok {hostile}"
    assert not list(tmp_path.glob("pwned*"))


def test_other_braces_are_left_alone() -> None:
    assert substitute_path("awk '{print}' {path}", Path("/f")) == "awk '{print}' /f"


async def test_reason_is_the_first_error_line_not_the_banner() -> None:
    result = await run_command(
        "echo '[NOTICE] version 2.6'; echo '[ALERT] parsing: invalid port' >&2; exit 3"
    )
    assert result.returncode == 3
    assert result.reason == "[ALERT] parsing: invalid port"


async def test_reason_drops_nginx_time_and_pid() -> None:
    result = await run_command(
        "echo '2024/05/01 12:00:00 [emerg] 123#123: no servers are inside upstream' >&2; false"
    )
    assert result.reason == "[emerg] no servers are inside upstream"


async def test_reason_is_bounded_and_empty_output_is_empty() -> None:
    long = await run_command(f"printf 'error %0{MAX_REASON_LENGTH * 2}d' 0; exit 1")
    assert len(long.reason) == MAX_REASON_LENGTH
    silent = await run_command("exit 4")
    assert (silent.returncode, silent.reason) == (4, "")


def _dead(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # An orphan nobody reaped yet (no init in a container) is dead too.
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


async def test_timeout_kills_the_command_and_its_children(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    result = await run_command(f"sleep 60 & echo $! > {pid_file}; wait", timeout=0.5)
    assert result.returncode == -1
    assert "killed after" in result.reason
    pid = int(pid_file.read_text())
    async with asyncio.timeout(10):
        while not _dead(pid):
            await asyncio.sleep(0.02)


def test_find_binary_finds_sh_and_explains_a_missing_one() -> None:
    assert Path(find_binary("sh")).is_absolute()
    with pytest.raises(ConfigError, match=r"no-such-proxy is not installed.*--check"):
        find_binary("no-such-proxy")

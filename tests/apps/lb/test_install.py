"""LiveFile: validate before the swap, atomic rename, reload after, nothing if unchanged."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from crdtgossip.apps.lb import LiveFile, Services
from crdtgossip.errors import ConfigError, StorageError


class StubRenderer:
    """Renders nothing itself; its check refuses any candidate containing "bad"."""

    name = "stub"

    def render(self, services: Services) -> str:
        return "".join(sorted(services))

    def check_command(self, candidate: Path, scratch: Path) -> str | None:
        assert scratch.is_dir()
        return f"! grep -q bad '{candidate}'"


def reloads(directory: Path) -> int:
    log = directory / "reloads.log"
    return len(log.read_text().splitlines()) if log.exists() else 0


def live_file(tmp_path: Path, *, check: str | None = None, reload: str | None = None) -> LiveFile:
    if reload is None:
        reload = f"echo reload >> '{tmp_path}/reloads.log'"
    return LiveFile(tmp_path / "live.conf", StubRenderer(), check=check, reload=reload)


def leftovers(directory: Path) -> list[str]:
    return sorted(path.name for path in directory.iterdir() if path.name.endswith(".tmp"))


async def test_a_new_file_is_written_then_reloaded(tmp_path: Path) -> None:
    live = live_file(tmp_path)
    assert live.current() is None
    result = await live.install("one\n")
    assert (result.changed, result.error) == (True, None)
    assert (tmp_path / "live.conf").read_text() == "one\n"
    assert stat.S_IMODE((tmp_path / "live.conf").stat().st_mode) == 0o644
    assert reloads(tmp_path) == 1
    assert leftovers(tmp_path) == []


async def test_unchanged_text_writes_nothing_and_does_not_reload(tmp_path: Path) -> None:
    (tmp_path / "live.conf").write_text("same\n")
    before = (tmp_path / "live.conf").stat()
    result = await live_file(tmp_path).install("same\n")
    assert (result.changed, result.error) == (False, None)
    after = (tmp_path / "live.conf").stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert reloads(tmp_path) == 0


async def test_a_refused_check_leaves_the_live_file_untouched(tmp_path: Path) -> None:
    (tmp_path / "live.conf").write_text("good\n")
    before = (tmp_path / "live.conf").stat()
    result = await live_file(tmp_path).install("bad\n")
    assert not result.changed
    assert result.error is not None
    assert result.error.startswith("stub check refused the new config (exit 1)")
    assert f"{tmp_path / 'live.conf'} left unchanged" in result.error
    assert (tmp_path / "live.conf").read_text() == "good\n"
    assert (tmp_path / "live.conf").stat().st_ino == before.st_ino
    assert reloads(tmp_path) == 0
    assert leftovers(tmp_path) == []


async def test_check_runs_on_a_hidden_candidate_beside_the_live_file(tmp_path: Path) -> None:
    check = f"cp {{path}} '{tmp_path}/seen'; echo {{path}} > '{tmp_path}/where'"
    result = await live_file(tmp_path, check=check).install("bad but user check says ok\n")
    assert result.changed
    assert (tmp_path / "seen").read_text() == "bad but user check says ok\n"
    where = Path((tmp_path / "where").read_text().strip())
    assert where.parent == tmp_path
    assert where.name.startswith(".live.conf.")
    assert where.name.endswith(".tmp")
    assert not where.exists()


async def test_a_user_check_replaces_the_renderers_and_can_refuse(tmp_path: Path) -> None:
    result = await live_file(tmp_path, check="echo 'nope: {path}' >&2; exit 2").install("x\n")
    assert not result.changed
    assert result.error is not None
    assert "--check refused the new config (exit 2)" in result.error
    assert "nope: " in result.error
    assert not (tmp_path / "live.conf").exists()


async def test_an_existing_files_permissions_are_kept(tmp_path: Path) -> None:
    (tmp_path / "live.conf").write_text("old\n")
    (tmp_path / "live.conf").chmod(0o600)
    assert (await live_file(tmp_path).install("new\n")).changed
    assert stat.S_IMODE((tmp_path / "live.conf").stat().st_mode) == 0o600


async def test_a_failed_reload_is_reported_after_the_swap(tmp_path: Path) -> None:
    live = live_file(tmp_path, reload="echo 'nginx: [error] invalid PID' >&2; exit 1")
    result = await live.install("new\n")
    assert result.changed
    assert result.error is not None
    assert "was updated but the reload command failed (exit 1)" in result.error
    assert "invalid PID" in result.error
    assert (tmp_path / "live.conf").read_text() == "new\n"


async def test_a_file_changed_behind_its_back_is_put_right(tmp_path: Path) -> None:
    live = live_file(tmp_path)
    await live.install("rendered\n")
    (tmp_path / "live.conf").write_text("edited by hand\n")
    assert (await live.install("rendered\n")).changed
    assert (tmp_path / "live.conf").read_text() == "rendered\n"


def test_the_directory_must_exist_and_out_must_not_be_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        LiveFile(tmp_path / "missing" / "live.conf", StubRenderer())
    with pytest.raises(ConfigError, match="is a directory"):
        LiveFile(tmp_path, StubRenderer())


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
async def test_an_unwritable_directory_is_a_storage_error(tmp_path: Path) -> None:
    live = live_file(tmp_path)
    tmp_path.chmod(0o500)
    try:
        with pytest.raises(StorageError, match="cannot write in"):
            await live.install("x\n")
    finally:
        tmp_path.chmod(0o700)

"""Putting a rendered file live: compare, write aside, validate, swap, reload.

The order is the point (confd's ``check_cmd``, not consul-template#329/#1060, where the
live file is written first and checked after):

1. the same text as the live file: nothing is written and nothing reloads;
2. the text goes to a temporary file in the live file's directory (same file system,
   so the swap below is one atomic rename); its name starts with ``.`` and ends with
   ``.tmp``, so an ``include conf.d/*.conf`` can never pick it up;
3. the check runs on that file: the renderer's own (``nginx -t``, ``haproxy -c``) or
   the user's ``--check`` with ``{path}`` replaced by the candidate; if it fails the
   candidate is deleted and the live file was never touched;
4. :func:`os.replace` swaps it in: a reader sees the old file or the new one, never a
   mix; the directory is synced so the swap survives a crash;
5. the reload command runs.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

from crdtgossip.apps.lb._commands import COMMAND_TIMEOUT, run_command, substitute_path
from crdtgossip.apps.lb._protocol import Renderer
from crdtgossip.errors import ConfigError, StorageError

__all__ = ["DEFAULT_FILE_MODE", "InstallResult", "LiveFile"]

#: Permissions of a file created where none existed: readable by the proxy's workers,
#: which often run as another user than the renderer. An existing file keeps its own.
DEFAULT_FILE_MODE = 0o644


@dataclass(frozen=True, slots=True)
class InstallResult:
    """What :meth:`LiveFile.install` did.

    Attributes:
        changed: the live file was replaced.
        error: why the candidate was refused (``changed`` is False) or why the reload
            failed after the swap (``changed`` is True); None when all went well.
    """

    changed: bool
    error: str | None = None


class LiveFile:
    """The file a proxy reads, and how to validate and reload before and after a swap.

    Args:
        path: the live file; its directory must exist.
        renderer: gives the default check (:meth:`Renderer.check_command`).
        check: a shell command with ``{path}`` replacing the renderer's check, or None.
        reload: a shell command run after each swap, or None.
        command_timeout: seconds before a check or reload command is killed.

    Raises:
        ~crdtgossip.errors.ConfigError: the directory of ``path`` does not exist, or ``path`` is a
            directory.
    """

    def __init__(
        self,
        path: Path,
        renderer: Renderer,
        *,
        check: str | None = None,
        reload: str | None = None,
        command_timeout: float = COMMAND_TIMEOUT,
    ) -> None:
        if not path.parent.is_dir():
            raise ConfigError(f"--out {path}: the directory {path.parent} does not exist")
        if path.is_dir():
            raise ConfigError(f"--out {path} is a directory, not a file")
        self.path = path
        self.renderer = renderer
        self.check = check
        self.reload = reload
        self.command_timeout = command_timeout

    def current(self) -> str | None:
        """The live file's text, or None when it is missing or unreadable.

        Read afresh each time, so a file edited or deleted behind the renderer's back
        is put right by the next render instead of being taken as still current.
        """
        try:
            return self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None

    async def install(self, text: str) -> InstallResult:
        """Make ``text`` the live file's content, validated first; see the module doc.

        Args:
            text: the rendered file.

        Returns:
            Whether the file changed, and the error line if the candidate was refused
            or the reload failed.

        Raises:
            ~crdtgossip.errors.ConfigError: the renderer's check cannot run (its binary is missing).
            ~crdtgossip.errors.StorageError: the candidate could not be written or renamed (a
                directory that is not writable, a full disk); the live file is unchanged.
        """
        if text == self.current():
            return InstallResult(changed=False)
        candidate = self._write_candidate(text)
        try:
            refused = await self._check(candidate)
            if refused is not None:
                return InstallResult(changed=False, error=refused)
            try:
                os.replace(candidate, self.path)
            except OSError as exc:
                raise StorageError(f"cannot replace {self.path}: {exc.strerror or exc}") from exc
        finally:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()
        _sync_directory(self.path.parent)
        if self.reload is None:
            return InstallResult(changed=True)
        result = await run_command(self.reload, timeout=self.command_timeout)
        if not result.ok:
            return InstallResult(
                changed=True,
                error=(
                    f"{self.path} was updated but the reload command failed "
                    f"(exit {result.returncode}): {result.reason or 'no output'}"
                ),
            )
        return InstallResult(changed=True)

    async def validate(self, text: str) -> str | None:
        """Run the check on ``text`` without touching the live file.

        Returns:
            None when the check accepts it, or the refusal line.

        Raises:
            ~crdtgossip.errors.ConfigError: the renderer's check cannot run.
            ~crdtgossip.errors.StorageError: the candidate could not be written.
        """
        candidate = self._write_candidate(text)
        try:
            return await self._check(candidate)
        finally:
            with contextlib.suppress(FileNotFoundError):
                candidate.unlink()

    def _write_candidate(self, text: str) -> Path:
        try:
            mode = stat.S_IMODE(self.path.stat().st_mode)
        except FileNotFoundError:
            mode = DEFAULT_FILE_MODE
        try:
            descriptor, name = tempfile.mkstemp(
                prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent
            )
        except OSError as exc:
            raise StorageError(
                f"cannot write in {self.path.parent}: {exc.strerror or exc}"
            ) from exc
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(text.encode("utf-8"))
                handle.flush()
                os.fchmod(handle.fileno(), mode)
                # On disk before the rename, so a crash never leaves a live empty file.
                os.fsync(handle.fileno())
        except BaseException as exc:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(name)
            if isinstance(exc, OSError):
                raise StorageError(f"cannot write {name}: {exc.strerror or exc}") from exc
            raise
        return Path(name)

    async def _check(self, candidate: Path) -> str | None:
        """Run the check on ``candidate``; the refusal line, or None if it passed."""
        with tempfile.TemporaryDirectory(prefix="crdtgossip-check-") as scratch:
            if self.check is not None:
                command: str | None = substitute_path(self.check, candidate)
                what = "--check"
            else:
                command = self.renderer.check_command(candidate, Path(scratch))
                what = f"{self.renderer.name} check"
            if command is None:
                return None
            result = await run_command(command, timeout=self.command_timeout)
        if result.ok:
            return None
        return (
            f"{what} refused the new config (exit {result.returncode}), {self.path} left "
            f"unchanged: {result.reason or 'no output'}"
        )


def _sync_directory(directory: Path) -> None:
    """fsync a directory so a rename in it is durable (a no-op where unsupported)."""
    try:
        descriptor = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(descriptor)
    finally:
        os.close(descriptor)

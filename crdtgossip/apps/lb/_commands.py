"""Running the check and reload commands, and finding a proxy's binary.

Commands run through ``/bin/sh -c``, as confd's ``check_cmd`` and consul-template's
``command`` do, so ``--reload 'nginx -s reload || systemctl restart nginx'`` works.
The only thing substituted is ``{path}``, and it is substituted shell-quoted, so a
file name cannot turn into shell syntax.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
from dataclasses import dataclass
from pathlib import Path

from crdtgossip.errors import ConfigError

__all__ = [
    "COMMAND_TIMEOUT",
    "CommandResult",
    "find_binary",
    "run_command",
    "substitute_path",
]

#: Longest a check or reload command may run, in seconds, before it is killed and
#: counted as failed. consul-template's command timeout defaults to 30 s.
COMMAND_TIMEOUT = 30.0

#: Longest error line shown to the operator: one terminal line and a bit.
MAX_REASON_LENGTH = 300

# Where proxies are installed but a non-root user's PATH often does not reach
# (Debian puts nginx and haproxy in /usr/sbin).
_SBIN_DIRECTORIES = ("/usr/sbin", "/usr/local/sbin", "/sbin")

# Lines that say what went wrong, in nginx ("[emerg]"), haproxy ("[ALERT]") and most
# other tools' words; preferred over the banner lines that come first.
_ERROR_LINE = re.compile(r"emerg|alert|crit|error|fatal|fail|invalid|not found", re.I)

# nginx's log prefix ("2024/05/01 12:00:00 [emerg] 123#123: "): time and pid say nothing
# to the operator; the level is kept.
_NGINX_PREFIX = re.compile(r"^\d{4}/\d\d/\d\d \d\d:\d\d:\d\d (\[\w+\]) \d+#\d+: ")


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How a command ended.

    Attributes:
        returncode: the exit status; -1 if it was killed for running too long.
        reason: one line for the operator: the first error line of the output (or
            its first line), empty when the output was empty.
    """

    returncode: int
    reason: str

    @property
    def ok(self) -> bool:
        """Whether the command exited 0."""
        return self.returncode == 0


def substitute_path(command: str, path: Path) -> str:
    """Replace every ``{path}`` in ``command`` with ``path``, quoted for the shell.

    Other braces are left alone (``awk '{print}'`` stays as written).

    Example:
        >>> from pathlib import Path
        >>> from crdtgossip.apps.lb import substitute_path
        >>> substitute_path("nginx -t -c {path}", Path("/etc/nginx/my conf"))
        "nginx -t -c '/etc/nginx/my conf'"
    """
    return command.replace("{path}", shlex.quote(str(path)))


def find_binary(name: str) -> str:
    """The full path of a program, on PATH or in an ``sbin`` directory.

    Args:
        name: the program, ``nginx`` say.

    Returns:
        Its absolute path.

    Raises:
        ~crdtgossip.errors.ConfigError: it is not installed.
    """
    found = shutil.which(name)
    if found is None:
        search = os.pathsep.join(_SBIN_DIRECTORIES)
        found = shutil.which(name, path=search)
    if found is None:
        raise ConfigError(
            f"{name} is not installed (not on PATH nor in /usr/sbin): install it to "
            f"validate rendered files, or give --check CMD"
        )
    return found


async def run_command(command: str, *, timeout: float = COMMAND_TIMEOUT) -> CommandResult:
    """Run ``command`` with ``/bin/sh -c``, stdin closed, output captured.

    Args:
        command: the shell command.
        timeout: seconds before the command and its children are killed.

    Returns:
        Its exit status and a one-line reason.
    """
    # A session of its own, so a timeout kills the whole process group and not only the
    # shell (which would leave "nginx -t" running on).
    process = await asyncio.create_subprocess_shell(
        command,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        return CommandResult(-1, f"killed after running for {timeout:g} s")
    except asyncio.CancelledError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await asyncio.shield(process.wait())
        raise
    returncode = process.returncode if process.returncode is not None else -1
    return CommandResult(returncode, _reason(output.decode("utf-8", "replace")))


def _reason(output: str) -> str:
    lines = [" ".join(line.split()) for line in output.splitlines()]
    lines = [line for line in lines if line]
    chosen = next((line for line in lines if _ERROR_LINE.search(line)), lines[0] if lines else "")
    chosen = _NGINX_PREFIX.sub(r"\1 ", chosen)
    if len(chosen) > MAX_REASON_LENGTH:
        chosen = chosen[: MAX_REASON_LENGTH - 3] + "..."
    return chosen

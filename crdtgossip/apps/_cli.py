"""What the apps' command lines share: running one subcommand alone, reading a small file.

``python -m crdtgossip.apps.registry`` and ``python -m crdtgossip.apps.deploy`` run one
subcommand without the rest of ``crdtgossip`` (:func:`run_alone`); ``--template`` and
``--token`` files are read with a size cap (:func:`read_small_file`), so a wrong path
(a log, a device) fails at once instead of filling memory.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from pathlib import Path

from crdtgossip.errors import ConfigError

__all__ = ["AddCommand", "read_small_file", "run_alone"]

#: What registers a subcommand on the main parser (``add_deploy_command`` ...).
AddCommand = Callable[
    ["argparse._SubParsersAction[argparse.ArgumentParser]"], argparse.ArgumentParser
]


def run_alone(add_command: AddCommand, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as ``crdtgossip`` would with only one subcommand, and run it.

    Args:
        add_command: registers the subcommand; its parser's ``run`` default runs it.
        argv: the arguments, the subcommand's name first; ``sys.argv[1:]`` by default.

    Returns:
        The subcommand's exit status.
    """
    parser = argparse.ArgumentParser(prog="crdtgossip")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_command(commands)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


def read_small_file(path: Path, limit: int, what: str) -> bytes:
    """The bytes of ``path``, refused past ``limit`` bytes.

    Args:
        path: the file.
        limit: the most bytes it may hold.
        what: what the file is, for messages (``--template``, ``token file``).

    Raises:
        ~crdtgossip.errors.ConfigError: the file cannot be read, or holds more than
            ``limit`` bytes.
    """
    try:
        with path.open("rb") as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read {what} {path}: {exc.strerror or exc}") from exc
    if len(data) > limit:
        raise ConfigError(f"{what} {path} is larger than {limit} bytes")
    return data

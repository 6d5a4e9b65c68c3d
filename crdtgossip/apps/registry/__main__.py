"""``python -m crdtgossip.apps.registry agent ...``: the agent without the whole CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from crdtgossip.apps.registry.cli import add_agent_command


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as ``crdtgossip agent ...`` would and run it."""
    parser = argparse.ArgumentParser(prog="crdtgossip")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_agent_command(commands)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())

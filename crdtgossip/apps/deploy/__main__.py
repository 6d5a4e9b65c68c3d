"""``python -m crdtgossip.apps.deploy ACTION ...``: the deploy hooks without the whole CLI."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from crdtgossip.apps.deploy.cli import add_deploy_command


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as ``crdtgossip deploy ...`` would (``deploy`` included) and run it."""
    parser = argparse.ArgumentParser(prog="crdtgossip")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    add_deploy_command(commands)
    args = parser.parse_args(argv)
    status: int = args.run(args)
    return status


if __name__ == "__main__":
    sys.exit(main())

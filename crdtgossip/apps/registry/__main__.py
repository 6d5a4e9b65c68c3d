"""``python -m crdtgossip.apps.registry agent ...``: the agent without the whole CLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crdtgossip.apps._cli import run_alone
from crdtgossip.apps.registry.cli import add_agent_command


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as ``crdtgossip agent ...`` would and run it."""
    return run_alone(add_agent_command, argv)


if __name__ == "__main__":
    sys.exit(main())

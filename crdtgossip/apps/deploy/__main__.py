"""``python -m crdtgossip.apps.deploy ACTION ...``: the deploy hooks without the whole CLI."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from crdtgossip.apps._cli import run_alone
from crdtgossip.apps.deploy.cli import add_deploy_command


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` as ``crdtgossip deploy ...`` would (``deploy`` included) and run it."""
    return run_alone(add_deploy_command, argv)


if __name__ == "__main__":
    sys.exit(main())

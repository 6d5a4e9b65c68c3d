"""Test-suite wide settings: the hypothesis profiles.

``ci`` is loaded unless ``HYPOTHESIS_PROFILE`` names another: ``HYPOTHESIS_PROFILE=dev
pytest`` runs fewer examples per property for a quick loop while editing.
"""

from __future__ import annotations

import os

from hypothesis import settings

# Hypothesis runs 100 examples per property by default; the dev profile trades
# thoroughness for a fast edit-test loop. CI keeps the default.
DEV_MAX_EXAMPLES = 20

# deadline=None: a shared CI machine (2 cores) has pauses that would turn a slow
# example into a spurious failure; speed is measured in benchmarks/, not in tests.
# derandomize=False: each run explores new examples; print_blob=True prints the
# @reproduce_failure line so a failure seen once in CI can be replayed exactly.
settings.register_profile("ci", deadline=None, derandomize=False, print_blob=True)
settings.register_profile(
    "dev", max_examples=DEV_MAX_EXAMPLES, deadline=None, derandomize=False, print_blob=True
)

# An empty HYPOTHESIS_PROFILE counts as unset.
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or "ci")

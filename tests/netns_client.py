"""An HTTP client that lives inside one network namespace, for ``tests/test_netns.py``.

Started as ``ip netns exec NS python tests/netns_client.py``, it can reach the agent's
REST API on that namespace's own loopback, which the test process cannot. It reads one
request per line on stdin, as JSON ``{"method", "url", "body"}``, and answers each with
one JSON line: ``{"status": CODE, "reply": JSON}``, or ``{"status": 0, "error": TEXT}``
when no HTTP answer came. It exits at the end of its input.
"""

from __future__ import annotations

import json
import sys
import urllib.error
import urllib.request
from typing import Any

#: Seconds one request may take before it counts as failed: a guard against a hung
#: agent; the test's own waits are longer, so a slow answer never blocks them.
REQUEST_TIMEOUT = 10.0


def answer(request: dict[str, Any]) -> dict[str, Any]:
    """Perform one request.

    Args:
        request: ``method``, ``url`` and an optional JSON ``body``.

    Returns:
        The status and JSON reply, or status 0 and the error when none came.
    """
    body = request.get("body")
    data = None if body is None else json.dumps(body).encode()
    call = urllib.request.Request(request["url"], data=data, method=request["method"])
    try:
        with urllib.request.urlopen(call, timeout=REQUEST_TIMEOUT) as response:
            return {"status": response.status, "reply": json.loads(response.read())}
    except urllib.error.HTTPError as error:
        with error:
            return {"status": error.code, "reply": json.loads(error.read())}
    except (OSError, ValueError) as error:  # refused, timed out, not JSON
        return {"status": 0, "error": repr(error)}


def main() -> int:
    """Answer requests from stdin until it closes.

    Returns:
        The exit status: 0.
    """
    for line in sys.stdin:
        print(json.dumps(answer(json.loads(line))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

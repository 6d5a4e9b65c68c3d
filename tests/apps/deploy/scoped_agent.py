"""A whole agent with named tokens, in its own thread, for the blocking CLI."""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtgossip.apps.registry import AgentOptions, run_agent
from tests.apps.deploy.conftest import PATIENCE

#: The tokens of :func:`scoped_agent`: ``ci`` (read,deploy) and ``viewer`` (read).
CI_TOKEN = "c" * 24
VIEWER_TOKEN = "v" * 24


@pytest.fixture
def scoped_agent(tmp_path: Path) -> Iterator[str]:
    """A whole agent in its own thread with the tokens ``ci`` (read,deploy) and
    ``viewer`` (read); the blocking CLI runs in the test's thread."""
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci read,deploy {CI_TOKEN}\nviewer read {VIEWER_TOKEN}\n")
    tokens.chmod(0o600)
    options = AgentOptions(
        node_id="audited", bind="127.0.0.1:0", http="127.0.0.1:0", config="local", tokens=tokens
    )
    lines: queue.Queue[str] = queue.Queue()
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    thread = threading.Thread(
        target=loop.run_until_complete,
        args=(run_agent(options, stop, announce=lines.put),),
        daemon=True,
    )
    thread.start()
    try:
        line = lines.get(timeout=PATIENCE)
        yield "http://" + line.rsplit("http=", 1)[1].strip()
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=PATIENCE)
        assert not thread.is_alive(), "the agent did not stop"
        loop.close()

"""Fixtures of the lb tests: the real proxy binaries and a fake agent."""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator

import pytest

from tests.apps.lb.fake_agent import FakeAgent

# Debian installs the proxies in /usr/sbin, which a non-root PATH often lacks.
_SBIN = "/usr/sbin:/usr/local/sbin:/sbin"


def require_binary(binary: str) -> str:
    """The binary's path; skip without it, except on CI, which must have it."""
    found = shutil.which(binary) or shutil.which(binary, path=_SBIN)
    if found is not None:
        return found
    reason = f"{binary} is not installed (apt-get install {binary}); CI installs it"
    if os.environ.get("CI") != "true":
        pytest.skip(reason)
    pytest.fail(f"CI=true requires the real binary: {reason}")


@pytest.fixture
def nginx() -> str:
    """Path of the nginx binary."""
    return require_binary("nginx")


@pytest.fixture
def haproxy() -> str:
    """Path of the haproxy binary."""
    return require_binary("haproxy")


@pytest.fixture
async def agent() -> AsyncIterator[FakeAgent]:
    """A fake agent serving the two GET endpoints on 127.0.0.1."""
    fake = FakeAgent()
    await fake.start()
    try:
        yield fake
    finally:
        await fake.stop()

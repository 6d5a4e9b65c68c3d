"""Named tokens with scopes: the file format, the route table, and a real agent API."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip.apps.registry import Registry, make_app
from crdtgossip.apps.registry.agent import AgentOptions, run_agent, token_table
from crdtgossip.apps.registry.cli import add_agent_command, run
from crdtgossip.apps.registry.fields import RegistryError
from crdtgossip.apps.registry.tokens import (
    ADMIN,
    ANONYMOUS,
    DEPLOY,
    MIN_TOKEN_LENGTH,
    READ,
    REGISTER,
    TokenTable,
    parse_tokens,
    read_tokens,
    required_scope,
)
from crdtgossip.errors import ConfigError
from tests.apps.registry.conftest import Client

READER = "r" * MIN_TOKEN_LENGTH
REGISTRAR = "g" * MIN_TOKEN_LENGTH
DEPLOYER = "d" * MIN_TOKEN_LENGTH
OPERATOR = "o" * MIN_TOKEN_LENGTH

TOKENS_FILE = f"""
# name  scopes         token
viewer  read           {READER}
nomad   read,register  {REGISTRAR}

ci      deploy         {DEPLOYER}
ops     admin          {OPERATOR}
"""

WEB_1 = "/v1/services/web/instances/web-1"
INSTANCE = {"address": "10.0.0.1", "port": 80}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# ---- the file ---------------------------------------------------------------------------
def test_a_tokens_file_parses_names_and_scopes() -> None:
    tokens = parse_tokens(TOKENS_FILE)
    assert [(t.name, sorted(t.scopes)) for t in tokens] == [
        ("viewer", [READ]),
        ("nomad", [READ, REGISTER]),
        ("ci", [DEPLOY]),
        ("ops", [ADMIN]),
    ]
    assert all(READER not in repr(t) for t in tokens)  # only a digest is kept


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "holds no token"),
        ("# only a comment\n", "holds no token"),
        ("ci deploy\n", "line 1: expected"),
        (f"ci deploy {DEPLOYER} extra\n", "line 1: expected"),
        (f"\nci write {DEPLOYER}\n", "line 2: unknown scope 'write'"),
        ("ci deploy short\n", f"at least {MIN_TOKEN_LENGTH}"),
        (f"bad!name deploy {DEPLOYER}\n", "line 1"),
        (f"ci deploy {DEPLOYER}\nci read {READER}\n", "used twice"),
        (f"ci deploy {DEPLOYER}\nother read {DEPLOYER}\n", "used twice"),
    ],
)
def test_a_bad_tokens_file_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_tokens(text)


def test_read_tokens_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_bytes(b"ci deploy \xff" + b"x" * 20)
    with pytest.raises(ConfigError, match="not UTF-8"):
        read_tokens(path)
    with pytest.raises(ConfigError, match="tokens file"):
        read_tokens(tmp_path / "missing")


def test_a_tokens_file_others_can_read_is_warned_about(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "tokens"
    path.write_text(TOKENS_FILE)
    path.chmod(0o600)
    with caplog.at_level(logging.WARNING, "crdtgossip.apps.registry.tokens"):
        assert len(read_tokens(path)) == 4
        assert caplog.messages == []
        path.chmod(0o644)
        read_tokens(path)
    expected = f"tokens file {path} can be read by other users (mode 644): chmod 600 it"
    assert caplog.messages == [expected]


@pytest.mark.parametrize(
    ("method", "path", "scope"),
    [
        ("GET", "/v1/services", READ),
        ("GET", "/v1/audit", READ),
        ("HEAD", "/metrics", READ),
        ("PUT", WEB_1, REGISTER),
        ("DELETE", WEB_1, REGISTER),
        ("PUT", WEB_1 + "/maintenance", REGISTER),
        ("POST", "/v1/events", REGISTER),
        ("PUT", "/v1/releases/prod/web", DEPLOY),
        ("PUT", "/v1/expectations/prod/web", DEPLOY),
        ("DELETE", "/v1/expectations/prod/web", DEPLOY),
        ("PUT", WEB_1 + "/drain", DEPLOY),
        ("POST", "/v1/drain/agent-1", DEPLOY),
        ("PUT", "/v1/services/web", ADMIN),
        ("POST", "/v1/anything", ADMIN),
        ("DELETE", "/v1/releasesx", ADMIN),
    ],
)
def test_every_route_needs_its_scope(method: str, path: str, scope: str) -> None:
    assert required_scope(method, path) == scope


@given(st.text(min_size=1, max_size=40).filter(lambda s: s.strip() == s and " " not in s))
def test_only_a_known_token_is_identified(given_token: str) -> None:
    table = TokenTable(parse_tokens(TOKENS_FILE))
    found = table.identify(f"Bearer {given_token}")
    known = {READER: "viewer", REGISTRAR: "nomad", DEPLOYER: "ci", OPERATOR: "ops"}
    assert (None if found is None else found.name) == known.get(given_token)
    assert table.identify(f"Basic {READER}") is None


# ---- the API ----------------------------------------------------------------------------
@pytest.fixture
async def scoped(registry: Registry) -> AsyncIterator[Client]:
    table = TokenTable(parse_tokens(TOKENS_FILE))
    async with TestClient(TestServer(make_app(registry, tokens=table))) as test_client:
        yield test_client


async def test_reads_need_the_read_scope(scoped: Client) -> None:
    response = await scoped.get("/v1/services")
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert "'read'" in (await response.json())["error"]
    response = await scoped.get("/v1/services", headers=bearer("x" * MIN_TOKEN_LENGTH))
    assert response.status == 401
    for token in (READER, OPERATOR):
        assert (await scoped.get("/v1/services", headers=bearer(token))).status == 200
    response = await scoped.get("/v1/services", headers=bearer(DEPLOYER))
    assert response.status == 403
    assert "token 'ci' (deploy) lacks scope 'read'" in (await response.json())["error"]


async def test_writes_need_their_scope(scoped: Client, registry: Registry) -> None:
    body = json.dumps(INSTANCE)
    for token in (READER, DEPLOYER):
        response = await scoped.put(WEB_1, data=body, headers=bearer(token))
        assert response.status == 403
        assert "lacks scope 'register'" in (await response.json())["error"]
    assert (await registry.snapshot()).instances == {}
    assert (await scoped.put(WEB_1, data=body, headers=bearer(REGISTRAR))).status == 200
    release = json.dumps({"version": "1.2.3"})
    response = await scoped.put("/v1/releases/prod/web", data=release, headers=bearer(REGISTRAR))
    assert response.status == 403
    response = await scoped.put("/v1/releases/prod/web", data=release, headers=bearer(DEPLOYER))
    assert response.status == 200
    expectation = json.dumps({"min_passing": 1})
    url = "/v1/expectations/prod/web"
    assert (await scoped.put(url, data=expectation, headers=bearer(DEPLOYER))).status == 200
    # No route needs admin today; an unknown write does, and admin gets the 404.
    assert (await scoped.post("/v1/nothing", headers=bearer(DEPLOYER))).status == 403
    assert (await scoped.post("/v1/nothing", headers=bearer(OPERATOR))).status == 404


async def test_the_single_token_is_an_admin_with_open_reads(registry: Registry) -> None:
    async with TestClient(TestServer(make_app(registry, token="s3cret"))) as client:
        assert (await client.get("/v1/services")).status == 200
        response = await client.put("/v1/releases/prod/web", data=json.dumps({"version": "1"}))
        assert response.status == 401
        headers = bearer("s3cret")
        response = await client.put(
            "/v1/releases/prod/web", data='{"version": "1"}', headers=headers
        )
        assert response.status == 200
        audit = await (await client.get("/v1/audit")).json()
    assert [entry["who"] for entry in audit["audit"]] == [ANONYMOUS, "default"]


# ---- the agent ---------------------------------------------------------------------------
def test_token_table_of_the_agent_options(tmp_path: Path) -> None:
    tokens, single = tmp_path / "tokens", tmp_path / "token"
    tokens.write_text(TOKENS_FILE)
    single.write_text("s3cret\n")
    base = AgentOptions(node_id="a", bind="127.0.0.1:0")
    assert token_table(base) is None
    table = token_table(AgentOptions(node_id="a", bind="127.0.0.1:0", tokens=tokens, token=single))
    assert table is not None
    assert not table.open_reads
    assert [t.name for t in table.tokens] == ["viewer", "nomad", "ci", "ops", "default"]
    single.write_text(READER)
    with pytest.raises(ConfigError, match="must not hold"):
        token_table(AgentOptions(node_id="a", bind="127.0.0.1:0", tokens=tokens, token=single))


async def test_an_agent_with_a_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text(TOKENS_FILE)
    options = AgentOptions(
        node_id="scoped",
        bind="127.0.0.1:0",
        http="127.0.0.1:0",
        config="local",
        tokens=tokens,
        open_reads=True,
    )
    lines: list[str] = []
    stop = asyncio.Event()
    task = asyncio.create_task(run_agent(options, stop, announce=lines.append))
    try:
        while not lines and not task.done():
            await asyncio.sleep(0.02)
        if task.done():
            task.result()
        url = "http://" + lines[0].rsplit("http=", 1)[1] + "/v1/expectations/prod/web"
        async with aiohttp.ClientSession() as session:
            async with session.get(url.replace("/expectations/prod/web", "/health")) as got:
                assert got.status == 200  # --open-reads
            async with session.put(url, json={"min_passing": 1}) as got:
                assert got.status == 401
            async with session.put(url, json={"min_passing": 1}, headers=bearer(READER)) as got:
                assert got.status == 403
                assert "lacks scope 'deploy'" in (await got.json())["error"]
            async with session.put(url, json={"min_passing": 1}, headers=bearer(DEPLOYER)) as got:
                assert got.status == 200
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)


def test_open_reads_are_open_to_every_token() -> None:
    table = TokenTable(parse_tokens(TOKENS_FILE), open_reads=True)
    assert table.check("GET", "/v1/services", "") == ANONYMOUS
    assert table.check("GET", "/v1/services", f"Bearer {DEPLOYER}") == "ci"
    with pytest.raises(RegistryError, match="lacks scope 'register'"):
        table.check("PUT", WEB_1, f"Bearer {DEPLOYER}")


def test_the_agent_command_takes_tokens_and_open_reads(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    top = argparse.ArgumentParser(prog="crdtgossip")
    add_agent_command(top.add_subparsers(dest="command", required=True))
    tokens = tmp_path / "tokens"
    tokens.write_text(f"ci write {DEPLOYER}\n")
    base = ["agent", "--node-id", "a", "--bind", "127.0.0.1:0", "--http", "127.0.0.1:0"]
    args = top.parse_args([*base, "--tokens", str(tokens), "--open-reads"])
    assert (args.tokens, args.open_reads) == (tokens, True)
    assert top.parse_args(base).open_reads is False
    assert run(args) == 1  # the file's unknown scope: one line, exit 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1
    assert err[0].startswith("crdtgossip: error: tokens file")
    assert "unknown scope 'write'" in err[0]

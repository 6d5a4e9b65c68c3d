"""A registered user type on 3 real nodes: nested in an ORMap, it gossips, persists in
SQLite and takes quorum writes and reads, like a built-in type."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from crdtgossip import All, Local, Majority, Node, ORMap, SQLiteStorage
from tests.maxregister import MaxRegister, registered
from tests.node.conftest import FAST, statuses
from tests.polling import eventually

#: Generous: a guard against a hung request, never reached on a healthy loopback.
TIMEOUT = 5.0

#: The nested type every write of the test uses.
SCORES: ORMap[str] = ORMap(MaxRegister)


@pytest.fixture(autouse=True)
def max_register() -> Iterator[None]:
    with registered():
        yield


def _node(index: int, tmp_path: Path, seeds: list[str]) -> Node:
    return Node(
        f"n{index}",
        "127.0.0.1:0",
        seeds=seeds,
        storage=SQLiteStorage(tmp_path / f"n{index}.db"),
        config=FAST,
        seed=index,
    )


def _write(name: str, score: int, replica: str) -> Callable[[ORMap[str]], ORMap[str]]:
    def update(scores: ORMap[str]) -> ORMap[str]:
        return scores.update(name, replica, lambda register: register.write(score))

    return update


async def _scores(node: Node) -> dict[str, int]:
    state = await node.get("scores", SCORES, consistency=Local())
    return dict(state.value)


async def test_a_registered_type_gossips_persists_and_takes_quorum_writes(
    tmp_path: Path,
) -> None:
    first = _node(0, tmp_path, [])
    await first.start()
    nodes = [first]
    try:
        for index in (1, 2):
            node = _node(index, tmp_path, [first.address])
            await node.start()
            nodes.append(node)
        ids = {node.node_id for node in nodes}
        await eventually(
            lambda: all(
                {k for k, v in statuses(node).items() if v == "alive"} == ids for node in nodes
            ),
            "every node sees the three alive",
        )

        # A Majority write on n0, an All write on n1; a Majority read on n2 sees both.
        await first.update(
            "scores", SCORES, _write("alice", 7, first.replica_id), consistency=Majority(TIMEOUT)
        )
        await nodes[1].update(
            "scores", SCORES, _write("bob", 3, nodes[1].replica_id), consistency=All(TIMEOUT)
        )
        read = await nodes[2].get("scores", SCORES, consistency=Majority(TIMEOUT))
        assert read.value == {"alice": 7, "bob": 3}

        # A Local write spreads by gossip alone.
        await nodes[2].update("scores", SCORES, _write("alice", 9, nodes[2].replica_id))

        async def everywhere() -> bool:
            return all([await _scores(node) == {"alice": 9, "bob": 3} for node in nodes])

        await eventually(everywhere, "alice's 9 reaches every node")

        # n1 restarts from its SQLite file, alone (no seeds), and finds its state there.
        await nodes[1].stop()
        restarted = _node(1, tmp_path, [])
        nodes[1] = restarted
        await restarted.start()
        assert await _scores(restarted) == {"alice": 9, "bob": 3}
    finally:
        for node in nodes:
            await node.stop()

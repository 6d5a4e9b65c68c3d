"""One service-level scenario through the same ``Node`` API on every transport.

A service that embeds :class:`~crdtgossip.Node` tests itself in one process on a
:class:`~crdtgossip.transport.MemoryNetwork` with seeded faults; the same scenario runs
on real UDP/TCP loopback sockets (plain, and TCP over TLS with a keyring): three nodes,
a quorum write and read, a partition, writes on both sides, the partition healed and
every node converged.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from crdtgossip import GCounter, Keyring, Majority, Node
from crdtgossip.errors import ConfigError
from crdtgossip.transport import MemoryNetwork, TlsConfig
from tests.node.conftest import FAST, statuses
from tests.polling import eventually
from tests.transport.test_tcp_tls import TlsFiles

#: The number of nodes of the scenario: the smallest cluster where a majority
#: survives the loss of one member.
NODES = 3


class Harness:
    """Makes the scenario's nodes on one kind of network, and cuts and heals links."""

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.nodes: list[Node] = []
        self._blocked: set[tuple[str, str]] = set()
        self.network: MemoryNetwork | None = None
        self._tls: TlsConfig | None = None
        self._keyring: Keyring | None = None
        if kind == "memory":
            # Seeded faults: delays, duplicates and reordering (not loss: the quorum
            # requests of the scenario go once, as on a healthy LAN).
            self.network = MemoryNetwork(seed=15, delay=(0.0, 0.004), duplicate=0.1, reorder=0.1)
        elif kind == "tls":
            files = TlsFiles(directory)
            self._tls = TlsConfig(files.server(require_client_cert=True), files.client())
            self._keyring = Keyring.generate()

    async def start(self) -> list[Node]:
        for index in range(NODES):
            seeds = [self.nodes[0].address] if self.nodes else []
            node = self._node(f"n{index}", seeds, index)
            await node.start()
            self.nodes.append(node)
        return self.nodes

    def _node(self, node_id: str, seeds: list[str], index: int) -> Node:
        if self.network is not None:
            return Node(
                node_id,
                f"{node_id}:7000",
                seeds,
                config=FAST,
                seed=index,
                transport=self.network.transport,
            )
        node = Node(
            node_id,
            "127.0.0.1:0",
            seeds,
            keyring=self._keyring,
            config=FAST,
            seed=index,
            tls=self._tls,
        )
        self._cut_real_links(node)
        return node

    def _cut_real_links(self, node: Node) -> None:
        # On real sockets a link is cut where frames arrive: this node drops every
        # frame from an address it is partitioned from (both sides do, so both ways).
        driver = node._driver
        receive: Callable[[bytes, str], None] = driver._on_frame

        def filtered(data: bytes, sender: str) -> None:
            if (sender, node.address) not in self._blocked:
                receive(data, sender)

        driver._on_frame = filtered  # type: ignore[method-assign]

    def partition(self, alone: Node) -> None:
        others = [node.address for node in self.nodes if node is not alone]
        if self.network is not None:
            self.network.partition([alone.address], others)
            return
        for address in others:
            self._blocked.add((address, alone.address))
            self._blocked.add((alone.address, address))

    def heal(self) -> None:
        if self.network is not None:
            self.network.heal()
        self._blocked.clear()

    async def stop(self) -> None:
        for node in self.nodes:
            await node.stop()


@pytest.fixture(params=["memory", "udp_tcp", "tls"])
async def harness(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Harness]:
    made = Harness(request.param, tmp_path)
    yield made
    await made.stop()


def _sees_alive(node: Node, count: int) -> bool:
    return sum(status == "alive" for status in statuses(node).values()) == count


async def test_quorum_write_and_read_survive_a_partition_and_converge_after_heal(
    harness: Harness,
) -> None:
    nodes = await harness.start()
    first, second, third = nodes
    await eventually(
        lambda: all(_sees_alive(node, NODES) for node in nodes), "every node sees three alive"
    )

    def bump(node: Node) -> Callable[[GCounter], object]:
        return lambda counter: counter.increment(node.replica_id)

    await first.update("hits", GCounter, bump(first), consistency=Majority())
    read = await second.get("hits", GCounter, consistency=Majority())
    assert read.value == 1

    harness.partition(third)
    await eventually(
        lambda: statuses(first)["n2"] != "alive" and statuses(third)["n0"] != "alive",
        "the partition is seen on both sides",
    )
    # The majority side still takes quorum writes; the minority writes locally.
    await first.update("hits", GCounter, bump(first), consistency=Majority())
    await third.update("hits", GCounter, bump(third))
    assert (await second.get("hits", GCounter, consistency=Majority())).value == 2
    assert (await third.get("hits", GCounter)).value == 2  # its own and the first write

    harness.heal()
    await eventually(
        lambda: all(_sees_alive(node, NODES) for node in nodes), "the healed cluster is whole"
    )

    async def converged() -> bool:
        values = [(await node.get("hits", GCounter)).value for node in nodes]
        return values == [3, 3, 3]

    await eventually(converged, "every write reaches every node")
    stats = first.stats()
    if harness.network is not None:
        assert harness.network.stats()["partitioned"] > 0
        assert stats["transport_frames_sent"] > 0
        assert "udp_frames_sent" not in stats
    else:  # the joins' push-pull exchanges went by TCP (over TLS in that case)
        assert stats["udp_frames_sent"] > 0
        assert stats["tcp_frames_sent"] > 0
        tcp = first._driver.tcp
        assert tcp is not None
        assert (tcp._server_ssl is not None) == (harness.kind == "tls")
        assert (tcp._client_ssl is not None) == (harness.kind == "tls")


async def test_a_memory_node_restarts_at_its_address() -> None:
    network = MemoryNetwork(seed=1)
    node = Node("a", "a:7000", config=FAST, transport=network.transport)
    await node.start()
    assert node.address == "a:7000"
    await node.stop()
    await node.start()  # the address was given back at stop
    assert node.address == "a:7000"
    await node.stop()


def test_tls_belongs_to_the_default_transport(tmp_path: Path) -> None:
    files = TlsFiles(tmp_path)
    tls = TlsConfig(files.server(), files.client())
    with pytest.raises(ConfigError):
        Node("a", "a:7000", transport=MemoryNetwork(seed=1).transport, tls=tls)
    with pytest.raises(ConfigError):
        TlsConfig(files.server(), "client")  # type: ignore[arg-type]
    assert isinstance(tls.client, ssl.SSLContext)

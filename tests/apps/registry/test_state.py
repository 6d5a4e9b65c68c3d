"""The registry's CRDT layout under concurrent writes, and between two real agents."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from crdtgossip import decode, encode
from crdtgossip.apps.registry import CRITICAL, PASSING, Registry
from crdtgossip.apps.registry.model import InstanceRecord, MaintenanceRequest
from crdtgossip.apps.registry.state import (
    deregister_op,
    instances_type,
    keyed_type,
    put_op,
    register_op,
    remove_op,
)
from crdtgossip.apps.registry.view import Snapshot, services_view
from crdtgossip.crdts import ORMap
from crdtgossip.node import Node
from tests.apps.registry.conftest import FAST
from tests.polling import eventually

RECORD = InstanceRecord(address="10.0.0.1", port=80, env="prod", tags=("a",), meta={"k": "v"})


def record(port: int) -> dict[str, Any]:
    return InstanceRecord(address="10.0.0.1", port=port).stored()


def replicas_of(state: ORMap[Any]) -> tuple[ORMap[Any], ORMap[Any]]:
    return state.copy(), state.copy()


def exchange(
    left: ORMap[Any], right: ORMap[Any], left_deltas: list[Any], right_deltas: list[Any]
) -> None:
    """Deliver each side's deltas to the other, as gossip would."""
    for delta in right_deltas:
        left.merge(delta)
    for delta in left_deltas:
        right.merge(delta)


def test_deregister_concurrent_with_reregister_keeps_the_instance() -> None:
    base = instances_type()
    register_op("r1", "web", "web-1", record(80))(base)
    one, two = replicas_of(base)
    removed = deregister_op("r1", "web", "web-1")(one)
    assert one.value == {}  # the last instance took its service entry with it
    again = register_op("r2", "web", "web-1", record(81))(two)
    exchange(one, two, [removed], [again])
    assert one == two
    assert one.value == {"web": {"web-1": record(81)}}


def test_deregister_concurrent_with_another_registration() -> None:
    base = instances_type()
    register_op("r1", "web", "web-1", record(80))(base)
    one, two = replicas_of(base)
    removed = deregister_op("r1", "web", "web-1")(one)
    added = register_op("r2", "web", "web-2", record(82))(two)
    exchange(one, two, [removed], [added])
    assert one == two
    assert one.value == {"web": {"web-2": record(82)}}


def test_concurrent_deregistrations_of_every_instance_leave_no_listed_service() -> None:
    base = instances_type()
    register_op("r1", "web", "web-1", record(80))(base)
    register_op("r1", "web", "web-2", record(81))(base)
    one, two = replicas_of(base)
    first = deregister_op("r1", "web", "web-1")(one)
    second = deregister_op("r2", "web", "web-2")(two)
    exchange(one, two, [first], [second])
    assert one == two
    # The service key may survive, empty; the registry does not show it.
    assert all(not instances for instances in one.value.values())
    snapshot = Snapshot(one.value, {}, {}, frozenset(), {})
    assert services_view(snapshot) == {"services": {}}


def test_deltas_in_any_order_and_twice_give_one_state() -> None:
    base = instances_type()
    one, two = replicas_of(base)
    deltas = [
        register_op("r1", "web", "web-1", record(80))(one),
        register_op("r1", "web", "web-2", record(81))(one),
        deregister_op("r1", "web", "web-1")(one),
        register_op("r1", "db", "db-1", record(5432))(one),
    ]
    for delta in [*reversed(deltas), *deltas]:
        two.merge(delta)
    assert two == one
    assert two.value == {"web": {"web-2": record(81)}, "db": {"db-1": record(5432)}}


def test_drain_and_undrain_concurrently_converge_on_the_later_write() -> None:
    base = keyed_type()
    one, two = replicas_of(base)
    key = ("web", "web-1")
    drained = put_op("r1", key, {"enabled": True, "reason": "upgrade", "time": 1.0})(one)
    undrained = put_op("r2", key, {"enabled": False, "reason": None, "time": 2.0})(two)
    exchange(one, two, [drained], [undrained])
    assert one == two
    assert one.value[key]["enabled"] is False  # written later, on the nanosecond clock


def test_removing_a_flag_concurrent_with_setting_it_keeps_the_new_flag() -> None:
    base = keyed_type()
    key = ("web", "web-1")
    put_op("r1", key, {"enabled": False, "reason": None, "time": 1.0})(base)
    one, two = replicas_of(base)
    removed = remove_op(key)(one)
    drained = put_op("r2", key, {"enabled": True, "reason": "x", "time": 2.0})(two)
    exchange(one, two, [removed], [drained])
    assert one == two
    assert one.value == {key: {"enabled": True, "reason": "x", "time": 2.0}}


def test_states_survive_the_codec_with_their_types() -> None:
    instances = instances_type()
    register_op("r1", "web", "web-1", RECORD.stored())(instances)
    flags = keyed_type()
    put_op("r1", ("web", "web-1"), {"enabled": True, "reason": None, "time": 1.5})(flags)
    for state in (instances, flags):
        decoded = decode(encode(state))
        assert decoded == state
        assert decoded.value == state.value
    stored = decode(encode(instances)).value["web"]["web-1"]
    assert stored == {
        "address": "10.0.0.1",
        "port": 80,
        "env": "prod",
        "tags": ["a"],
        "meta": {"k": "v"},
        "ttl": None,
    }


async def test_two_agents_share_the_registry_and_each_counts_its_own_index() -> None:
    first = Node("a", "127.0.0.1:0", config=FAST, seed=1)
    await first.start()
    second = Node("b", "127.0.0.1:0", [first.address], config=FAST, seed=2)
    await second.start()
    left, right = Registry(first), Registry(second)
    await left.start()
    await right.start()
    try:
        index_before = right.index.value
        await left.register("web", "web-1", RECORD)
        await left.set_maintenance("web", "web-1", MaintenanceRequest(enable=True, reason="x"))

        async def seen_on_the_right() -> bool:
            return (await right.snapshot()).in_maintenance("web", "web-1")

        await eventually(seen_on_the_right, "the registration and flag reach the other agent")
        assert right.index.value > index_before
        snapshot = await right.snapshot()
        assert snapshot.record("web", "web-1") == {**RECORD.stored(), "agent": "a"}
        await right.deregister("web", "web-1")

        async def gone_on_the_left() -> bool:
            found = await left.snapshot()
            return found.record("web", "web-1") is None and not found.maintenance

        await eventually(gone_on_the_left, "the deregistration reaches the first agent")
    finally:
        await left.stop()
        await right.stop()
        await first.stop()
        await second.stop()


async def health_of(registry: Registry, service: str, instance: str) -> str:
    shown = (await registry.current()).record(service, instance)
    assert shown is not None
    views = {view["id"]: view for view in await service_instances(registry, service)}
    return str(views[instance]["health"])


async def service_instances(registry: Registry, service: str) -> list[dict[str, Any]]:
    from crdtgossip.apps.registry.view import service_view

    found = service_view(await registry.current(), service, registry.now())
    return list(found["instances"])


async def test_the_instances_of_a_dead_or_gone_agent_are_critical_everywhere(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Agent a crashes, agent c leaves: their instances turn critical on b (and on the
    survivors' health counts); a restarted a makes its instance passing again."""
    first = Node("a", "127.0.0.1:0", config=FAST, seed=1)
    await first.start()
    second = Node("b", "127.0.0.1:0", [first.address], config=FAST, seed=2)
    third = Node("c", "127.0.0.1:0", [first.address], config=FAST, seed=3)
    await second.start()
    await third.start()
    registries = [Registry(node, alone=False) for node in (first, second, third)]
    for registry in registries:
        await registry.start()
    on_a, on_b, on_c = registries
    nodes = [first, second, third]
    try:
        await on_a.register("web", "web-1", RECORD)
        await on_b.register("web", "web-2", RECORD)
        await on_c.register("web", "web-3", RECORD)

        async def all_on_b() -> bool:
            return len((await on_b.current()).instances.get("web", {})) == 3

        await eventually(all_on_b, "every registration reaches b")
        assert [await health_of(on_b, "web", f"web-{n}") for n in (1, 2, 3)] == [PASSING] * 3
        await on_a.stop()
        await first.stop()  # a crash: no goodbye
        await on_c.stop()
        await third.leave()  # a goodbye

        async def gone_on_b() -> bool:
            healths = [await health_of(on_b, "web", f"web-{n}") for n in (1, 2, 3)]
            return healths == [CRITICAL, PASSING, CRITICAL]

        caplog.set_level(logging.INFO, logger="crdtgossip.apps.registry")
        await eventually(gone_on_b, "the dead and the gone agent's instances turn critical")
        logged = [record.getMessage() for record in caplog.records]
        assert any(line.startswith("member c (") and "left the cluster" in line for line in logged)
        counts = (await on_b.health())["health"]["prod"]["web"]
        assert (counts["passing"], counts["critical"], counts["available"]) == (1, 2, 1)
        assert (await on_b.current()).dead_agents == {"a", "c"}

        back = Node("a", "127.0.0.1:0", [second.address], config=FAST, seed=4)
        await back.start()
        nodes[0] = back
        again = Registry(back, alone=False)
        await again.start()
        registries[0] = again

        async def back_on_b() -> bool:
            return await health_of(on_b, "web", "web-1") == PASSING

        await eventually(back_on_b, "the restarted agent's instance is passing again")
        assert await health_of(on_b, "web", "web-3") == CRITICAL

        async def known_on_the_new_a() -> bool:
            return await health_of(again, "web", "web-3") == CRITICAL

        await eventually(known_on_the_new_a, "the restarted agent learns c is gone")
        assert await health_of(again, "web", "web-1") == PASSING
    finally:
        for registry in registries:
            await registry.stop()
        for node in nodes:
            if node.running:
                await node.stop()

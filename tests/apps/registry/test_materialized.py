"""The in-memory view equals one computed from scratch, and writes copy nothing.

Two registries on two contract nodes (:mod:`tests.apps.registry.contract_node`) take
random registrations, deregistrations, drains, events, releases and expectations, and
exchange the deltas in any order, duplicated, dropped and repaired by whole-state
merges; after every step each view must equal the view computed from its node's state.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.apps.registry import Registry
from crdtgossip.apps.registry._live import nested
from crdtgossip.apps.registry.layout import (
    EVENTS_KEY,
    EXPECTATIONS_KEY,
    INSTANCES_KEY,
    MAINTENANCE_KEY,
    RELEASES_KEY,
)
from crdtgossip.apps.registry.model import (
    InstanceRecord,
    MaintenanceRequest,
    RegistryError,
    ReleaseRequest,
)
from crdtgossip.apps.registry.state import _key_type
from crdtgossip.apps.registry.view import (
    Snapshot,
    health_view,
    service_view,
    services_view,
)
from crdtgossip.crdts import LWWRegister, ORMap
from crdtgossip.node import Node
from tests.apps.registry.conftest import FakeClock
from tests.apps.registry.contract_node import ContractNode

SERVICES = ("web", "db")
INSTANCES = ("i1", "i2", "i3")
KEYS = (INSTANCES_KEY, MAINTENANCE_KEY, EVENTS_KEY, RELEASES_KEY, EXPECTATIONS_KEY)


def from_scratch(node: ContractNode) -> Snapshot:
    """The registry state read whole from the node's states, as the old code did."""

    def value(key: str) -> Any:
        state = node.states.get(key)
        return {} if state is None else state.value

    releases = node.states.get(RELEASES_KEY)
    return Snapshot(
        instances={s: found for s, found in value(INSTANCES_KEY).items() if found},
        maintenance=value(MAINTENANCE_KEY),
        events=value(EVENTS_KEY),
        releases=frozenset() if releases is None else releases.value,
        expectations=value(EXPECTATIONS_KEY),
    )


async def check_view(registry: Registry, node: ContractNode, now: float) -> None:
    expected = from_scratch(node)
    assert await registry.snapshot() == expected
    current = await registry.current()
    assert services_view(current) == services_view(expected)
    for service in expected.known_services():
        assert service_view(current, service, now) == service_view(expected, service, now)
    assert await registry.health() == health_view(expected, now)


async def one_step(
    rng: random.Random, pairs: list[tuple[Registry, ContractNode]], clock: FakeClock
) -> None:
    registry, node = rng.choice(pairs)
    other = pairs[0][1] if node is pairs[1][1] else pairs[1][1]
    service, instance = rng.choice(SERVICES), rng.choice(INSTANCES)
    action = rng.randrange(10)
    try:
        if action <= 1:
            record = InstanceRecord(address="10.0.0.1", port=rng.randrange(1, 9), env="prod")
            if rng.random() < 0.3:
                record = InstanceRecord(address="10.0.0.2", port=1, env="dev")
            await registry.register(service, instance, record)
        elif action == 2:
            await registry.deregister(service, instance)
        elif action == 3:
            request = MaintenanceRequest(enable=rng.random() < 0.6, reason="x")
            await registry.set_maintenance(service, instance, request)
        elif action == 4:
            body = {
                "host": instance,
                "service": service,
                "state": rng.choice(["ok", "warning", "critical"]),
                "time": clock.now - rng.uniform(0, 5),
                "ttl": rng.uniform(0.5, 10),
            }
            await registry.push_event(body)
        elif action == 5 and rng.random() < 0.3:
            await registry.record_release("prod", service, ReleaseRequest(version="1"))
        elif action == 5:
            await registry.set_expectation(rng.choice(["prod", "dev"]), service, rng.randrange(3))
        elif action in (6, 7) and other.outbox:
            # Gossip: a delta of the other node, in any order, sometimes twice.
            index = rng.randrange(len(other.outbox))
            key, delta = other.outbox[index] if rng.random() < 0.2 else other.outbox.pop(index)
            node.deliver(key, delta, _key_type(key))
        elif action == 8:
            # Anti-entropy: the other node's whole state of one key.
            key = rng.choice(KEYS)
            if key in other.states:
                node.deliver(key, other.states[key].copy(), _key_type(key))
        else:
            clock.advance(rng.uniform(0, 4))
    except RegistryError as exc:
        # An instance this agent does not know (yet): a 404, nothing else.
        if exc.status != 404:
            raise


async def run_program(seed: int, steps: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock()
    pairs = []
    for name, peer in (("r1", "r2"), ("r2", "r1")):
        node = ContractNode(name, (peer,))
        registry = Registry(cast(Node, node), clock=clock)
        await registry.start()
        pairs.append((registry, node))
    try:
        for _ in range(steps):
            await one_step(rng, pairs, clock)
            for registry, node in pairs:
                await check_view(registry, node, clock.now)
        # Deliver everything left and repair by whole states: both converge.
        for (registry, node), (_, other) in ((pairs[0], pairs[1]), (pairs[1], pairs[0])):
            for key in KEYS:
                if key in other.states:
                    node.deliver(key, other.states[key].copy(), _key_type(key))
            await check_view(registry, node, clock.now)
        assert await pairs[0][0].snapshot() == await pairs[1][0].snapshot()
    finally:
        for registry, _ in pairs:
            await registry.stop()


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**32 - 1))
def test_view_equals_the_state_read_from_scratch(seed: int) -> None:
    asyncio.run(run_program(seed, steps=60))


# ---- what a write costs ------------------------------------------------------------------
@contextmanager
def spying(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, list[Any]]]:
    """Record the objects whole-map copies and reads are called on, and record reads."""
    calls: dict[str, list[Any]] = {
        "ORMap.copy": [],
        "ORMap.value": [],
        "ORMap[key]": [],
        "LWWRegister.value": [],
    }

    def counted(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
            calls[name].append(self)
            return original(self, *args, **kwargs)

        return wrapper

    monkeypatch.setattr(ORMap, "copy", counted("ORMap.copy", ORMap.copy))
    monkeypatch.setattr(ORMap, "_copy_store_into", counted("ORMap.copy", ORMap._copy_store_into))
    monkeypatch.setattr(ORMap, "__getitem__", counted("ORMap[key]", ORMap.__getitem__))
    value = cast(property, ORMap.__dict__["value"])
    monkeypatch.setattr(ORMap, "value", property(counted("ORMap.value", value.__get__)))
    register_value = cast(property, LWWRegister.__dict__["value"])
    monkeypatch.setattr(
        LWWRegister, "value", property(counted("LWWRegister.value", register_value.__get__))
    )
    yield calls
    monkeypatch.undo()


def live_maps(node: ContractNode) -> list[Any]:
    """The node's registry maps and the per-service maps nested in the instances map."""
    found: list[Any] = list(node.states.values())
    instances = node.states[INSTANCES_KEY]
    assert isinstance(instances, ORMap)
    found.extend(nested(instances, service) for service in instances)
    return found


async def test_writes_and_reads_copy_no_map(monkeypatch: pytest.MonkeyPatch) -> None:
    node = ContractNode("r1")
    clock = FakeClock()
    registry = Registry(cast(Node, node), clock=clock)
    await registry.start()
    try:
        for number in range(50):
            await registry.register("web", f"i{number}", InstanceRecord(address="h", port=1))
            await registry.push_event({"host": f"i{number}", "service": "web", "state": "ok"})
        await registry.register("db", "d1", InstanceRecord(address="h", port=1))
        live = live_maps(node)
        with spying(monkeypatch) as calls:
            await registry.register("web", "new", InstanceRecord(address="h", port=2))
            await registry.set_maintenance("web", "new", MaintenanceRequest(enable=True))
            await registry.push_event({"host": "new", "service": "web", "state": "ok"})
            await registry.deregister("web", "i7")
            await registry.deregister("db", "d1")  # the last of its service
            await registry.health()
            service_view(await registry.current(), "web", clock.now, passing_only=True)
        # Copies and reads of other maps happen: the contract node copies each delta
        # into its outbox, and a new empty prototype is checked for being a CRDT.
        for name in ("ORMap.copy", "ORMap.value", "ORMap[key]"):
            assert [obj for obj in calls[name] if any(obj is m for m in live)] == [], name
        # One record, flag or event read per write, whatever the registry holds.
        written = [register for register in calls["LWWRegister.value"] if register.timestamp]
        assert len(written) <= 6
    finally:
        await registry.stop()


async def test_a_remote_deregistration_is_followed_by_its_dots() -> None:
    left, right = ContractNode("r1", ("r2",)), ContractNode("r2", ("r1",))
    registry = Registry(cast(Node, right), clock=FakeClock())
    await registry.start()
    writer = Registry(cast(Node, left), clock=FakeClock())
    await writer.start()
    try:
        for service in SERVICES:
            for instance in INSTANCES:
                await writer.register(service, instance, InstanceRecord(address="h", port=1))
        for key, delta in left.outbox:
            right.deliver(key, delta, _key_type(key))
        left.outbox.clear()
        await writer.deregister("db", "i1")
        await writer.deregister("web", "i1")
        await writer.deregister("web", "i2")
        await writer.deregister("web", "i3")  # the last: the service entry goes too
        for key, delta in left.outbox:
            right.deliver(key, delta, _key_type(key))
        current = await registry.current()
        assert services_view(current) == {"services": {"db": ["i2", "i3"]}}
        assert await registry.snapshot() == from_scratch(right)
    finally:
        await registry.stop()
        await writer.stop()


def test_the_instances_of_gone_agents_are_critical_and_recounted() -> None:
    """Known dead, known alive and (once strangers count as gone) unknown agents."""
    from crdtgossip.apps.registry.layout import instances_type, register_op
    from crdtgossip.apps.registry.materialized import MaterializedView

    state = instances_type()
    through = {"i1": "a", "i2": "a", "i3": "b", "i4": "stranger"}
    for instance, agent in through.items():
        stored = {**InstanceRecord(address="10.0.0.1", port=80).stored(), "agent": agent}
        register_op("r", "web", instance, stored)(state)
    view = MaterializedView()
    view.note_everything(INSTANCES_KEY)
    assert view.apply(INSTANCES_KEY, state, 0.0)

    def critical() -> int:
        counts = view.health()["health"]["default"]["web"]
        assert view.health() == health_view(view.snapshot(), 0.0)
        return int(counts["critical"])

    assert view.set_agent("b", alive=True, now=0.0) is False  # nothing changes
    assert critical() == 0
    assert view.set_agent("a", alive=False, now=0.0)
    assert critical() == 2
    assert view.dead_agents() == {"a"}
    assert view.count_strangers_gone(0.0)
    assert critical() == 3
    assert view.dead_agents() == {"a", "stranger"}
    assert view.set_agent("a", alive=True, now=0.0)
    assert critical() == 1
    # Re-registered through a live agent: no longer the stranger's.
    moved = {**InstanceRecord(address="10.0.0.1", port=80).stored(), "agent": "b"}
    register_op("r", "web", "i4", moved)(state)
    view.note_everything(INSTANCES_KEY)
    view.apply(INSTANCES_KEY, state, 0.0)
    assert critical() == 0
    assert view.dead_agents() == frozenset()

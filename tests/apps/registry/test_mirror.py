"""LeafMirror names the leaves a change touches; _live reads without copying."""

from __future__ import annotations

from typing import Any, cast

from crdtgossip.apps.registry._live import leaf, nested
from crdtgossip.apps.registry.layout import (
    deregister_op,
    instances_type,
    keyed_type,
    put_op,
    register_op,
    remove_op,
)
from crdtgossip.apps.registry.mirror import LeafMirror
from crdtgossip.crdts import ORMap


def record(port: int) -> dict[str, Any]:
    return {"address": "h", "port": port, "env": "prod"}


def test_live_helpers_return_the_maps_own_objects() -> None:
    state = instances_type()
    register_op("r1", "web", "w1", record(1))(state)
    found_inner = nested(state, "web")
    assert found_inner is not None
    assert found_inner is nested(state, "web")
    inner = cast(ORMap[Any], found_inner)  # the live object, not a copy
    found = leaf(inner, "w1")
    assert found is not None
    register, dots = found
    assert register.value == record(1)
    assert len(dots) == 1
    register_op("r1", "web", "w1", record(2))(state)
    assert leaf(inner, "w1") is not None
    assert nested(state, "db") is None
    assert leaf(inner, "w9") is None


def test_concurrent_writers_are_joined_and_every_dot_is_named() -> None:
    one, two = keyed_type(), keyed_type()
    first = put_op("r1", ("web", "w1"), {"v": 1})(one)
    second = put_op("r2", ("web", "w1"), {"v": 2})(two)
    one.merge(second)
    two.merge(first)
    found = leaf(one, ("web", "w1"))
    assert found is not None
    assert found[0].value == two.value[("web", "w1")]
    assert {replica for replica, _ in found[1]} == {"r1", "r2"}


def test_a_remove_touches_only_the_leaves_it_covers() -> None:
    state = instances_type()
    for service in ("web", "db"):
        for number in range(20):
            register_op("r1", service, f"{service}{number}", record(number))(state)
    mirror = LeafMirror(nested_by_service=True)
    assert len(mirror.refresh(state, mirror.everything(state))) == 40
    removed = deregister_op("r1", "web", "web3")(state)
    assert mirror.touched(removed) == {("web", "web3")}
    assert mirror.refresh(state, mirror.touched(removed)) == {("web", "web3"): None}
    # Removing the whole service (its last instance) covers its remaining leaves only.
    copy = state.copy()
    whole = copy.remove("web")
    touched = mirror.touched(whole)
    assert touched == {("web", f"web{n}") for n in range(20) if n != 3}
    changes = mirror.refresh(copy, touched)
    assert set(changes) == touched
    assert all(value is None for value in changes.values())
    assert set(mirror.values) == {("db", f"db{n}") for n in range(20)}


def test_a_flat_remove_is_found_by_its_dots() -> None:
    flags = keyed_type()
    for number in range(30):
        put_op("r1", ("web", f"w{number}"), {"enabled": True})(flags)
    mirror = LeafMirror(nested_by_service=False)
    mirror.refresh(flags, mirror.everything(flags))
    gone = remove_op(("web", "w12"))(flags)
    assert mirror.touched(gone) == {("web", "w12")}
    rewritten = put_op("r1", ("web", "w5"), {"enabled": False})(flags)
    assert mirror.touched(rewritten) == {("web", "w5")}
    assert mirror.refresh(flags, {("web", "w5"), ("web", "w12")}) == {
        ("web", "w5"): {"enabled": False},
        ("web", "w12"): None,
    }
    # A leaf re-read with the same winning write reports no change.
    assert mirror.refresh(flags, {("web", "w6")}) == {}

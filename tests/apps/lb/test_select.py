"""What the built-in renderers keep, drop and in which order."""

from __future__ import annotations

from crdtgossip.apps.lb import Instance, select


def test_sorted_by_service_then_instance_id() -> None:
    selection = select(
        {
            "web": [Instance("web-2", "10.0.0.2", 80), Instance("web-1", "10.0.0.1", 80)],
            "api": [],
        }
    )
    assert [service.name for service in selection.services] == ["api", "web"]
    web = selection.services[1]
    assert [(inst.id, address) for inst, address in web.servers] == [
        ("web-1", "10.0.0.1:80"),
        ("web-2", "10.0.0.2:80"),
    ]
    assert selection.unsafe_services == 0


def test_unsafe_entries_are_counted_never_echoed() -> None:
    selection = select(
        {
            "web": [
                Instance("web-1", "10.0.0.1", 80),
                Instance("web-1", "10.0.0.9", 80),
                Instance("bad; id", "10.0.0.3", 80),
                Instance("web-4", "10.0.0.4; evil", 80),
            ],
            "evil;service": [Instance("x", "10.0.0.5", 80)],
        }
    )
    assert selection.unsafe_services == 1
    (web,) = selection.services
    assert [address for _, address in web.servers] == ["10.0.0.1:80"]
    assert web.notes == (
        "web-1: left out, the id appears twice",
        "web-4: left out, its address or port is not valid",
        "1 instance(s) left out for ids that are not valid names",
    )
    assert not any(";" in note for note in web.notes)


def test_same_services_in_another_order_select_the_same() -> None:
    first = {"b": [Instance("2", "10.0.0.2", 1), Instance("1", "10.0.0.1", 1)], "a": []}
    second = {"a": [], "b": list(reversed(first["b"]))}
    assert select(first) == select(second)

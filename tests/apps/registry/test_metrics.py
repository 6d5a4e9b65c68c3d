"""The Prometheus text page, from hand-built inputs."""

from __future__ import annotations

from typing import Any

from crdtgossip.apps.registry.metrics import RiemannCounters, render_metrics
from crdtgossip.apps.registry.model import InstanceRecord
from crdtgossip.apps.registry.view import Snapshot, health_view


def test_counters_gauges_labels_and_escaping() -> None:
    snapshot = Snapshot(
        instances={"web": {"w1": InstanceRecord(address="h", port=1, env="prod").stored()}},
        maintenance={("web", "w1"): {"enabled": True}},
        events={},
        releases=frozenset({("prod", "web", 1.0, "1", None, None)}),
        expectations={("prod", "web"): 2},
    )
    text = render_metrics(
        stats={"bytes_out": 12_345_678_901, "members_alive": 3, "health_score": 0},
        members=[{"status": "alive"}, {"status": "alive"}, {"status": 'we"ird\\\n'}],
        health=health_view(snapshot, 0.0),
        releases=len(snapshot.releases),
        index=42,
        requests={("GET", 200): 5},
    )
    assert text.endswith("\n")
    lines = text.splitlines()
    assert "# TYPE crdtgossip_node_bytes_out_total counter" in lines
    assert "crdtgossip_node_bytes_out_total 12345678901" in lines  # exact, not 1.23e+10
    assert "# TYPE crdtgossip_node_members_alive gauge" in lines
    assert 'crdtgossip_members{status="alive"} 2' in lines
    assert 'crdtgossip_members{status="we\\"ird\\\\\\n"} 1' in lines
    assert "crdtgossip_registry_index 42" in lines
    assert 'crdtgossip_registry_instances{service="web",env="prod",health="passing"} 1' in lines
    assert 'crdtgossip_registry_instances{service="web",env="prod",health="critical"} 0' in lines
    assert 'crdtgossip_registry_maintenance{service="web",env="prod"} 1' in lines
    assert 'crdtgossip_registry_available{env="prod",service="web"} 0' in lines
    assert 'crdtgossip_registry_min_passing{env="prod",service="web"} 2' in lines
    assert 'crdtgossip_registry_shortfall{env="prod",service="web"} 2' in lines
    assert "crdtgossip_registry_releases 1" in lines
    assert 'crdtgossip_http_requests_total{method="GET",code="200"} 5' in lines
    # Each family is declared once, before its samples.
    declared = [line.split()[2] for line in lines if line.startswith("# TYPE")]
    assert len(declared) == len(set(declared))


def test_the_riemann_listeners_counters() -> None:
    counters = RiemannCounters()
    counters.messages.update({"tcp": 3, "udp": 2})
    counters.messages_refused[("tcp", "query")] += 1
    counters.events_accepted["udp"] += 4
    counters.events_refused.update({("tcp", "invalid"): 1, ("tcp", "not_tried"): 2})
    counters.frames_malformed["udp"] += 5
    counters.frames_oversized, counters.connections_refused = 6, 7
    counters.connections_open, counters.attributes_ignored = 8, 9
    inputs: dict[str, Any] = {
        "stats": {},
        "members": [],
        "health": {"health": {}},
        "releases": 0,
        "index": 1,
        "requests": {},
    }
    assert "crdtgossip_riemann" not in render_metrics(**inputs)
    lines = render_metrics(**inputs, riemann=counters).splitlines()
    for line in (
        'crdtgossip_riemann_messages_total{transport="tcp"} 3',
        'crdtgossip_riemann_messages_total{transport="udp"} 2',
        'crdtgossip_riemann_messages_refused_total{transport="tcp",reason="query"} 1',
        'crdtgossip_riemann_events_accepted_total{transport="udp"} 4',
        'crdtgossip_riemann_events_refused_total{transport="tcp",reason="invalid"} 1',
        'crdtgossip_riemann_events_refused_total{transport="tcp",reason="not_tried"} 2',
        'crdtgossip_riemann_frames_malformed_total{transport="udp"} 5',
        "crdtgossip_riemann_frames_oversized_total 6",
        "crdtgossip_riemann_connections_refused_total 7",
        "# TYPE crdtgossip_riemann_connections gauge",
        "crdtgossip_riemann_connections 8",
        "crdtgossip_riemann_attributes_ignored_total 9",
    ):
        assert line in lines, line

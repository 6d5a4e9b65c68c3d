"""The Prometheus text page, from hand-built inputs."""

from __future__ import annotations

from crdtgossip.apps.registry.metrics import render_metrics
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

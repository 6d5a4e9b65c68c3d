"""Tests of crdtgossip.metrics: a node's stats in the Prometheus text format."""

from __future__ import annotations

import re

from crdtgossip import MemoryNetwork, Node
from crdtgossip.metrics import GAUGES, family, node_families, render
from tests.node.conftest import FAST, statuses
from tests.polling import eventually

#: One sample line of the text format 0.0.4: a name, optional labels, a number.
_LABEL = r'[a-z_]+="(?:[^"\\]|\\.)*"'
SAMPLE = re.compile(rf"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{{{_LABEL}(,{_LABEL})*\}})? -?[0-9.e+]+$")


def _families(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (type, sample lines), checking the layout on the way."""
    assert text.endswith("\n")
    families: dict[str, tuple[str, list[str]]] = {}
    current = ""
    for line in text.splitlines():
        if line.startswith("# HELP "):
            current = line.split()[2]
            assert current not in families, f"{current} twice"
        elif line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            assert name == current
            assert kind in ("counter", "gauge")
            families[name] = (kind, [])
        else:
            match = SAMPLE.match(line)
            assert match is not None, line
            assert match.group(1) == current, line
            families[current][1].append(line)
    return families


async def test_a_running_node_renders_counters_and_gauges_apart() -> None:
    network = MemoryNetwork(seed=2)
    first = Node("a", "a:7000", config=FAST, transport=network.transport)
    second = Node("b", "b:7000", ["a:7000"], config=FAST, transport=network.transport)
    async with first, second:
        await eventually(lambda: statuses(first).get("b") == "alive", "a sees b")
        stats = first.stats()
        families = _families(render(first))
    for name in stats:
        if name in GAUGES:
            assert families[f"crdtgossip_node_{name}"][0] == "gauge"
        else:
            assert families[f"crdtgossip_node_{name}_total"][0] == "counter"
    assert families["crdtgossip_node_members_alive"][1] == ["crdtgossip_node_members_alive 2"]
    assert families["crdtgossip_members"][1] == ['crdtgossip_members{status="alive"} 2']
    assert int(families["crdtgossip_node_frames_in_total"][1][0].split()[1]) > 0


def test_numbers_are_exact_and_labels_escaped() -> None:
    lines = node_families({"bytes_out": 12345678901, "health_score": 0.5}, ['we"ird\\\n'])
    assert "crdtgossip_node_bytes_out_total 12345678901" in lines
    assert "crdtgossip_node_health_score 0.5" in lines
    assert 'crdtgossip_members{status="we\\"ird\\\\\\n"} 1' in lines
    assert family("x", "gauge", 'a "quoted"\nhelp', [])[0] == '# HELP x a "quoted"\\nhelp'

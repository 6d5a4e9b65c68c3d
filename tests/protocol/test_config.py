"""GossipConfig: presets with memberlist's numbers, validation with ConfigError."""

from __future__ import annotations

import dataclasses

import pytest

from crdtgossip.config import MAX_UDP_PAYLOAD, MIN_DATAGRAM, GossipConfig
from crdtgossip.errors import ConfigError


def test_lan_is_the_default_with_memberlist_lan_numbers() -> None:
    lan = GossipConfig.lan()
    assert lan == GossipConfig()
    assert (lan.probe_interval, lan.probe_timeout, lan.indirect_checks) == (1.0, 0.5, 3)
    assert (lan.gossip_interval, lan.fanout, lan.retransmit_mult) == (0.2, 3, 4)
    assert (lan.suspicion_mult, lan.suspicion_max_timeout_mult) == (4, 6)
    assert (lan.push_pull_interval, lan.max_datagram, lan.awareness_max_multiplier) == (
        30.0,
        1400,
        8,
    )


def test_wan_and_local_presets() -> None:
    wan, local = GossipConfig.wan(), GossipConfig.local()
    assert (wan.probe_interval, wan.probe_timeout, wan.suspicion_mult) == (5.0, 3.0, 6)
    assert (wan.gossip_interval, wan.fanout, wan.push_pull_interval) == (0.5, 4, 60.0)
    assert (local.probe_timeout, local.indirect_checks, local.retransmit_mult) == (0.2, 1, 2)
    assert (local.suspicion_mult, local.push_pull_interval, local.gossip_interval) == (3, 15.0, 0.1)


@pytest.mark.parametrize(
    "changes",
    [
        {"probe_interval": 0},
        {"probe_interval": -1.0},
        {"probe_interval": float("nan")},
        {"gossip_interval": float("inf")},
        {"push_pull_interval": "30"},
        {"dead_retention": True},
        {"probe_timeout": 1.0},  # not below the probe interval
        {"indirect_checks": 0},
        {"fanout": 2.5},
        {"suspicion_mult": True},
        {"max_datagram": MIN_DATAGRAM - 1},
        {"max_datagram": MAX_UDP_PAYLOAD + 1},
        {"max_reliable_frame": 1000},
    ],
)
def test_bad_values_raise_config_error_naming_the_field(changes: dict[str, object]) -> None:
    with pytest.raises(ConfigError) as error:
        dataclasses.replace(GossipConfig(), **changes)  # type: ignore[arg-type]
    assert next(iter(changes)).split("_")[0] in str(error.value)


def test_a_config_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        GossipConfig().fanout = 5  # type: ignore[misc]

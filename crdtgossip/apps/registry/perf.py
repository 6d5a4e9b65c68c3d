"""Performance history: event metrics per environment, service, version and metric name.

Every health event with a ``metric`` (``POST /v1/events``) is also counted in a
:class:`~crdtgossip.apps.registry.sketch.DDSketch` under the node key
``registry/perf/{env}/{service}/{version}/{metric}`` (each part percent-quoted), where

* ``env`` is the environment its instance is registered in;
* ``version`` is what runs on that instance now (its current release, see
  :mod:`.releases`); an event of an instance with no release is counted nowhere;
* ``metric`` is the name the event gives in a tag ``metric:NAME`` (``metric:latency``),
  or ``metric`` when it has none; a tag naming no valid name is a 400.

One key per sketch keeps each write the size of one bucket's change, and a read of one
version's percentiles the size of its buckets. Every agent holds every key (full
replication), so every agent answers the same percentiles.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from crdtgossip.apps.registry.model import HealthEvent, RegistryError, check_name
from crdtgossip.apps.registry.releases import service_releases
from crdtgossip.apps.registry.sketch import DDSketch
from crdtgossip.apps.registry.view import Snapshot
from crdtgossip.protocol.messages import MAX_KEY_BYTES

__all__ = [
    "DEFAULT_METRIC",
    "METRIC_TAG_PREFIX",
    "PERF_PREFIX",
    "REPORTED_QUANTILES",
    "PerfSample",
    "perf_key",
    "perf_view",
    "sample_of",
]

#: The node keys of the sketches start with this.
PERF_PREFIX = "registry/perf/"

#: An event tag starting with this names the event's metric.
METRIC_TAG_PREFIX = "metric:"

#: The metric name of an event that names none.
DEFAULT_METRIC = "metric"

#: The percentiles a read reports (what a regression gate compares).
REPORTED_QUANTILES = {"p50": 0.5, "p95": 0.95, "p99": 0.99}


def perf_key(env: str, service: str, version: str, metric: str) -> str:
    """The node key of one sketch.

    Raises:
        RegistryError: (400) the key would be longer than a node key may be (a very
            long version).
    """
    key = PERF_PREFIX + "/".join(quote(part, safe="") for part in (env, service, version, metric))
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise RegistryError(f"version {version[:40]!r}... is too long to keep metrics for")
    return key


def metric_name(tags: tuple[str, ...]) -> str:
    """The metric an event's tags name (see the module docstring).

    Raises:
        RegistryError: (400) a ``metric:`` tag with no valid name after it.
    """
    for tag in tags:
        if tag.startswith(METRIC_TAG_PREFIX):
            return check_name("metric", tag[len(METRIC_TAG_PREFIX) :])
    return DEFAULT_METRIC


@dataclass(frozen=True, slots=True)
class PerfSample:
    """One metric value, and the sketch it is counted in.

    Attributes:
        key: the sketch's node key.
        value: the metric.
    """

    key: str
    value: float

    def update(self, replica: str) -> Any:
        """The node update that counts the value as ``replica``."""
        value = self.value
        return lambda sketch: sketch.add(replica, value)


def sample_of(
    event: HealthEvent, record: Mapping[str, Any], snapshot: Snapshot
) -> PerfSample | None:
    """Where an event's metric is counted, or None (no metric, or no release).

    Args:
        event: the checked event.
        record: its instance's registration.
        snapshot: the registry now (for the instance's release).

    Raises:
        RegistryError: (400) a bad ``metric:`` tag, or a version too long for a key.
    """
    if event.metric is None:
        return None
    metric = metric_name(event.tags)
    env = str(record["env"])
    found = service_releases(snapshot.releases, env=env, service=event.service)
    releases = found.get(env, {}).get(event.service)
    current = None if releases is None else releases.of_instance(event.host).current()
    if current is None:
        return None
    return PerfSample(perf_key(env, event.service, current.version, metric), event.metric)


def perf_view(sketch: DDSketch) -> dict[str, Any]:
    """``{"count", "min", "max", "p50", "p95", "p99"}`` of one sketch (None when empty)."""
    answers = sketch.quantiles(REPORTED_QUANTILES.values())
    return {
        "count": sketch.count,
        "min": sketch.min,
        "max": sketch.max,
        **dict(zip(REPORTED_QUANTILES, answers, strict=True)),
    }

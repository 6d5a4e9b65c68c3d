"""What the registry accepts: names, instance records, health events, releases.

Every request body is checked here, completely, before anything is written, so a bad
request changes nothing. The checks are strict on purpose:

* names (services, instances, environments) and addresses end up inside nginx and
  haproxy configuration files; a restricted alphabet means a name can never inject a
  directive (``web; include /etc/passwd``) into a rendered config;
* unknown fields are refused rather than ignored, so a typo (``"adress"``) is an error
  the operator sees at once instead of a registration with a missing field;
* every size is bounded by a named constant, so one request cannot bloat the state
  that every member replicates.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from crdtgossip.apps.registry.fields import (
    DEFAULT_ENV,
    DEFAULT_EVENT_TTL,
    DEFAULT_QUORUM_TIMEOUT,
    EVENT_STATES,
    MAX_DESCRIPTION_LENGTH,
    MAX_EVENT_FUTURE,
    MAX_EVENT_TTL,
    MAX_META_KEY_LENGTH,
    MAX_META_PAIRS,
    MAX_META_VALUE_LENGTH,
    MAX_MIN_PASSING,
    MAX_NAME_LENGTH,
    MAX_QUORUM_TIMEOUT,
    MAX_TAG_LENGTH,
    MAX_TAGS,
    MAX_TEXT_LENGTH,
    RegistryError,
    check_address,
    check_name,
    integer,
    kind_of,
    meta_field,
    number,
    only_fields,
    optional_text,
    parse_json,
    required,
    tags_field,
    text_field,
    ttl_field,
)

__all__ = [
    "DEFAULT_ENV",
    "DEFAULT_EVENT_TTL",
    "DEFAULT_QUORUM_TIMEOUT",
    "EVENT_STATES",
    "MAX_DESCRIPTION_LENGTH",
    "MAX_EVENT_FUTURE",
    "MAX_EVENT_TTL",
    "MAX_META_KEY_LENGTH",
    "MAX_META_PAIRS",
    "MAX_META_VALUE_LENGTH",
    "MAX_MIN_PASSING",
    "MAX_NAME_LENGTH",
    "MAX_QUORUM_TIMEOUT",
    "MAX_TAGS",
    "MAX_TAG_LENGTH",
    "MAX_TEXT_LENGTH",
    "HealthEvent",
    "InstanceRecord",
    "MaintenanceRequest",
    "RegistryError",
    "ReleaseRequest",
    "check_name",
    "parse_event",
    "parse_expectation",
    "parse_instance",
    "parse_json",
    "parse_maintenance",
    "parse_release",
]


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    """A registration: where an instance listens and what describes it.

    Attributes:
        address: host name or IP literal.
        port: TCP port, 1 to 65535.
        env: environment (``prod``, ``staging`` ...).
        tags: free-form labels.
        meta: string key/value pairs.
        ttl: default ``ttl`` of this instance's health events, in seconds, or None.
    """

    address: str
    port: int
    env: str = DEFAULT_ENV
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] | None = None
    ttl: float | None = None

    def stored(self) -> dict[str, Any]:
        """The dict kept in the replicated state."""
        return {
            "address": self.address,
            "port": self.port,
            "env": self.env,
            "tags": list(self.tags),
            "meta": dict(self.meta or {}),
            "ttl": self.ttl,
        }


@dataclass(frozen=True, slots=True)
class HealthEvent:
    """A health event in the Riemann shape; ``host`` names the instance.

    Attributes:
        host: the instance id.
        service: the service name.
        state: ``ok``, ``warning`` or ``critical``.
        metric: a number, or None.
        time: Unix seconds when the event was observed.
        ttl: seconds after ``time`` during which the event holds.
        tags: free-form labels.
        description: human text.
    """

    host: str
    service: str
    state: str
    metric: float | None
    time: float
    ttl: float
    tags: tuple[str, ...]
    description: str | None

    def stored(self) -> dict[str, Any]:
        """The dict kept in the replicated state."""
        return {
            "host": self.host,
            "service": self.service,
            "state": self.state,
            "metric": self.metric,
            "time": self.time,
            "ttl": self.ttl,
            "tags": list(self.tags),
            "description": self.description,
        }


@dataclass(frozen=True, slots=True)
class MaintenanceRequest:
    """Maintenance on or off, and how many members must have it before the reply.

    Attributes:
        enable: maintenance on (True) or off.
        reason: why, for the operators reading the registry.
        consistency: ``"local"`` (reply at once) or ``"majority"`` (reply once more
            than half of the alive members have merged the change).
        timeout: seconds to wait for the majority.
    """

    enable: bool
    reason: str | None = None
    consistency: Literal["local", "majority"] = "local"
    timeout: float = DEFAULT_QUORUM_TIMEOUT


@dataclass(frozen=True, slots=True)
class ReleaseRequest:
    """A release of a service in an environment.

    Attributes:
        version: the version deployed.
        build: the CI build id, or None.
        commit: the source commit, or None.
        instance: the one instance released (a canary, a host), or None for the
            whole service.
        url: a link to the build or the deploy job, or None.
        initiator: who or what started the deploy (a user, a CI job), or None.
        started: Unix seconds when the deploy started, or None.
        finished: Unix seconds when it finished, or None.
    """

    version: str
    build: str | None = None
    commit: str | None = None
    instance: str | None = None
    url: str | None = None
    initiator: str | None = None
    started: float | None = None
    finished: float | None = None


# ---- request bodies --------------------------------------------------------------------
_INSTANCE_FIELDS = ("address", "port", "env", "tags", "meta", "ttl")


def parse_instance(body: Mapping[str, Any]) -> InstanceRecord:
    """Check a registration body ``{address, port, env?, tags?, meta?, ttl?}``.

    Raises:
        RegistryError: (400) a field is missing, mistyped, out of range or unknown.
    """
    what = "a registration"
    only_fields(body, _INSTANCE_FIELDS, what)
    address = check_address(required(body, "address", what))
    port = integer(required(body, "port", what), "port", 1, 65535)
    env_value = body.get("env")
    env = DEFAULT_ENV if env_value is None else check_name("env", env_value)
    ttl_value = body.get("ttl")
    return InstanceRecord(
        address=address,
        port=port,
        env=env,
        tags=tags_field(body.get("tags"), "tags"),
        meta=meta_field(body.get("meta")),
        ttl=None if ttl_value is None else ttl_field(ttl_value, "ttl"),
    )


_EVENT_FIELDS = ("host", "service", "state", "metric", "time", "ttl", "tags", "description")


def parse_event(
    body: Mapping[str, Any], now: float, default_ttl: float = DEFAULT_EVENT_TTL
) -> HealthEvent:
    """Check a health event ``{host, service, state, metric?, time?, ttl?, tags?,
    description?}``.

    Args:
        body: the decoded request body.
        now: the current Unix time: the event's ``time`` when it has none, and the
            reference for :data:`MAX_EVENT_FUTURE`.
        default_ttl: the ``ttl`` when the event has none.

    Raises:
        RegistryError: (400) a field is missing, mistyped, out of range or unknown.
    """
    what = "an event"
    only_fields(body, _EVENT_FIELDS, what)
    host = check_name("host", required(body, "host", what))
    service = check_name("service", required(body, "service", what))
    state = required(body, "state", what)
    if state not in EVENT_STATES:
        raise RegistryError(f"state must be one of {', '.join(EVENT_STATES)}, not {state!r:.40}")
    metric_value = body.get("metric")
    time_value = body.get("time")
    when = now if time_value is None else number(time_value, "time")
    if when <= 0:
        # 0 is what an unset clock or a zeroed field sends; an event at the epoch has
        # expired anyway, so it can only be a mistake.
        raise RegistryError("time must be Unix seconds, more than 0")
    if when > now + MAX_EVENT_FUTURE:
        raise RegistryError(
            f"time is more than {MAX_EVENT_FUTURE:g} seconds in the future; "
            "check the sender's clock"
        )
    ttl_value = body.get("ttl")
    return HealthEvent(
        host=host,
        service=service,
        state=str(state),
        metric=None if metric_value is None else number(metric_value, "metric"),
        time=when,
        ttl=default_ttl if ttl_value is None else ttl_field(ttl_value, "ttl"),
        tags=tags_field(body.get("tags"), "tags"),
        description=optional_text(body, "description", MAX_DESCRIPTION_LENGTH, lines=True),
    )


_MAINTENANCE_FIELDS = ("enable", "reason", "consistency", "timeout")


def parse_maintenance(body: Mapping[str, Any]) -> MaintenanceRequest:
    """Check a maintenance body ``{enable, reason?, consistency?, timeout?}``.

    ``consistency`` is ``"local"`` (default) or ``"majority"``; ``timeout`` is in
    seconds (default :data:`DEFAULT_QUORUM_TIMEOUT`).

    Raises:
        RegistryError: (400) a field is missing, mistyped, out of range or unknown.
    """
    what = "a maintenance request"
    only_fields(body, _MAINTENANCE_FIELDS, what)
    enable = required(body, "enable", what)
    if not isinstance(enable, bool):
        raise RegistryError(f"enable must be true or false, not {kind_of(enable)}")
    consistency = body.get("consistency", "local")
    if consistency not in ("local", "majority"):
        raise RegistryError(f"consistency must be 'local' or 'majority', not {consistency!r:.40}")
    timeout_value = body.get("timeout")
    timeout = DEFAULT_QUORUM_TIMEOUT
    if timeout_value is not None:
        timeout = number(timeout_value, "timeout")
        if not 0 < timeout <= MAX_QUORUM_TIMEOUT:
            raise RegistryError(
                f"timeout must be more than 0 and at most {MAX_QUORUM_TIMEOUT:g} seconds"
            )
    return MaintenanceRequest(
        enable=enable,
        reason=optional_text(body, "reason", MAX_TEXT_LENGTH),
        consistency="majority" if consistency == "majority" else "local",
        timeout=timeout,
    )


_RELEASE_FIELDS = (
    "version",
    "build",
    "commit",
    "instance",
    "url",
    "initiator",
    "started",
    "finished",
)


def _moment(body: Mapping[str, Any], field: str) -> float | None:
    value = body.get(field)
    if value is None:
        return None
    moment = number(value, field)
    if moment <= 0:
        raise RegistryError(f"{field} must be Unix seconds, more than 0")
    return moment


def parse_release(body: Mapping[str, Any]) -> ReleaseRequest:
    """Check a release body ``{version, build?, commit?, instance?, url?, initiator?,
    started?, finished?}``.

    Raises:
        RegistryError: (400) a field is missing, mistyped, too long or unknown, or
            ``finished`` is before ``started``.
    """
    what = "a release"
    only_fields(body, _RELEASE_FIELDS, what)
    instance = body.get("instance")
    started, finished = _moment(body, "started"), _moment(body, "finished")
    if started is not None and finished is not None and finished < started:
        raise RegistryError("finished must not be before started")
    return ReleaseRequest(
        version=text_field(required(body, "version", what), "version", MAX_TEXT_LENGTH),
        build=optional_text(body, "build", MAX_TEXT_LENGTH),
        commit=optional_text(body, "commit", MAX_TEXT_LENGTH),
        instance=None if instance is None else check_name("instance", instance),
        url=optional_text(body, "url", MAX_TEXT_LENGTH),
        initiator=optional_text(body, "initiator", MAX_TEXT_LENGTH),
        started=started,
        finished=finished,
    )


def parse_expectation(body: Mapping[str, Any]) -> int:
    """Check an expectation body ``{min_passing}``; returns ``min_passing``.

    Raises:
        RegistryError: (400) missing, not an integer in 0 .. :data:`MAX_MIN_PASSING`,
            or an unknown field.
    """
    what = "an expectation"
    only_fields(body, ("min_passing",), what)
    return integer(required(body, "min_passing", what), "min_passing", 0, MAX_MIN_PASSING)

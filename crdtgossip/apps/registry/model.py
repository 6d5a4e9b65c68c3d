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

import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from crdtgossip.errors import CRDTGossipError

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

#: Longest service, instance or environment name. DNS labels stop at 63 characters;
#: instance ids often join a host name and a port, so allow twice that and a little.
MAX_NAME_LENGTH = 128

# Letters, digits, "_", "." and "-", starting with a letter or digit: valid as an nginx
# upstream name, a haproxy backend or server name, a file name and a URL path segment,
# with nothing to escape in any of them.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

#: Longest address: a DNS name is at most 253 characters (RFC 1035).
MAX_ADDRESS_LENGTH = 253

# A DNS name, an IPv4 literal, or an IPv6 literal without brackets (with an optional
# zone id after "%"); renderers add the brackets IPv6 needs in "host:port".
_ADDRESS = re.compile(r"[A-Za-z0-9_.:%-]+")

#: Most tags per instance or event, and the longest tag. Consul has no tag limit but
#: caps node and service meta at 64 pairs; the same bound keeps a record small.
MAX_TAGS = 64
MAX_TAG_LENGTH = 256

#: Consul's service meta limits (agent/structs: metaMaxKeyPairs, metaKeyMaxLength,
#: metaValueMaxLength): 64 pairs, keys of 128 and values of 512 characters.
MAX_META_PAIRS = 64
MAX_META_KEY_LENGTH = 128
MAX_META_VALUE_LENGTH = 512
_META_KEY = re.compile(r"[A-Za-z0-9_-]+")

#: The environment of an instance registered without one.
DEFAULT_ENV = "default"

#: The health states an event may carry (Riemann's conventional three).
EVENT_STATES: tuple[str, ...] = ("ok", "warning", "critical")

#: Seconds an event counts when it gives no ``ttl`` and its instance was registered
#: without one. An event must expire, or a host that stops reporting would stay
#: passing forever; a minute is a few reporting intervals of riemann-tools (10 s).
DEFAULT_EVENT_TTL = 60.0

#: Longest ``ttl`` accepted: a week. A longer one means "never expires", which defeats
#: the point of pushed health.
MAX_EVENT_TTL = 7 * 24 * 3600.0

#: How far in the future an event's ``time`` may be, in seconds. An event from further
#: ahead comes from a broken clock and would keep its instance passing that much longer
#: after it stops reporting.
MAX_EVENT_FUTURE = 3600.0

#: Longest event description (Riemann descriptions are short human text).
MAX_DESCRIPTION_LENGTH = 4096

#: Longest free text: a maintenance reason, a release version, build or commit.
MAX_TEXT_LENGTH = 512

#: Largest ``min_passing`` an expectation may ask for.
MAX_MIN_PASSING = 100_000

#: Seconds a quorum write waits for a majority when the request names no timeout, and
#: the most it may name. The default allows a few gossip rounds on a WAN; the maximum
#: matches the longest blocking query, so no request is held longer than that.
DEFAULT_QUORUM_TIMEOUT = 10.0
MAX_QUORUM_TIMEOUT = 600.0


class RegistryError(CRDTGossipError):
    """A request the registry refuses; ``status`` is the HTTP status to answer with.

    Attributes:
        status: 400 for a malformed request, 404 for an unknown service or instance.
    """

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


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
    """

    version: str
    build: str | None = None
    commit: str | None = None


# ---- JSON ------------------------------------------------------------------------------
def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> dict[str, Any]:
    """Decode a request body that must be one JSON object.

    Args:
        raw: the body bytes (the size limit is the web server's).

    Returns:
        The object.

    Raises:
        RegistryError: (400) not UTF-8, not JSON, NaN or Infinity, nested too deep, or
            not an object.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RegistryError("the request body is not UTF-8") from None
    if not text.strip():
        raise RegistryError("the request body is empty; send a JSON object")
    try:
        body = json.loads(text, parse_constant=_refuse_constant)
    except RecursionError:
        raise RegistryError("the request body is nested too deeply") from None
    except ValueError as exc:
        raise RegistryError(f"the request body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise RegistryError(f"the request body must be a JSON object, not {_kind(body)}")
    return body


def _kind(value: object) -> str:
    """The JSON name of a decoded value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


# ---- field checks ----------------------------------------------------------------------
def check_name(kind: str, value: object) -> str:
    """Check a service, instance or environment name.

    Raises:
        RegistryError: (400) not a str of at most :data:`MAX_NAME_LENGTH` letters,
            digits, ``_``, ``.`` and ``-``, starting with a letter or digit.
    """
    if not isinstance(value, str):
        raise RegistryError(f"{kind} must be a string, not {_kind(value)}")
    if not value or len(value) > MAX_NAME_LENGTH or not _NAME.fullmatch(value):
        raise RegistryError(
            f"{kind} {value[:MAX_NAME_LENGTH]!r} is not a valid name: use 1 to "
            f"{MAX_NAME_LENGTH} letters, digits, '_', '.' or '-', starting with a "
            "letter or digit"
        )
    return value


def _only(body: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise RegistryError(
            f"unknown field {unknown[0]!r} in {what}; allowed fields: {', '.join(allowed)}"
        )


def _required(body: Mapping[str, Any], field: str, what: str) -> Any:
    if field not in body or body[field] is None:
        raise RegistryError(f"{what} needs the field {field!r}")
    return body[field]


def _text(value: object, field: str, max_length: int, *, lines: bool = False) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{field} must be a string, not {_kind(value)}")
    if not value or len(value) > max_length:
        raise RegistryError(f"{field} must be 1 to {max_length} characters long")
    # Multi-line text (an event description, often a check's output) may hold line
    # breaks and tabs; nothing may hold other control characters.
    visible = value.replace("\n", "").replace("\t", "") if lines else value
    if not visible.isprintable():
        raise RegistryError(f"{field} must not hold control characters")
    return value


def _optional_text(
    body: Mapping[str, Any], field: str, max_length: int, *, lines: bool = False
) -> str | None:
    value = body.get(field)
    return None if value is None else _text(value, field, max_length, lines=lines)


def _number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryError(f"{field} must be a number, not {_kind(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise RegistryError(f"{field} must be a finite number")
    return number


def _integer(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegistryError(f"{field} must be an integer, not {_kind(value)}")
    if not low <= value <= high:
        raise RegistryError(f"{field} must be between {low} and {high}, not {value}")
    return value


def _ttl(value: object, field: str) -> float:
    ttl = _number(value, field)
    if not 0 < ttl <= MAX_EVENT_TTL:
        raise RegistryError(f"{field} must be more than 0 and at most {MAX_EVENT_TTL:g} seconds")
    return ttl


def _tags(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RegistryError(f"{field} must be an array of strings, not {_kind(value)}")
    if len(value) > MAX_TAGS:
        raise RegistryError(f"{field} holds {len(value)} tags; at most {MAX_TAGS} are allowed")
    return tuple(_text(tag, f"each of {field}", MAX_TAG_LENGTH) for tag in value)


def _meta(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RegistryError(f"meta must be an object of strings, not {_kind(value)}")
    if len(value) > MAX_META_PAIRS:
        raise RegistryError(f"meta holds {len(value)} pairs; at most {MAX_META_PAIRS} are allowed")
    meta: dict[str, str] = {}
    for key, item in value.items():
        if len(key) > MAX_META_KEY_LENGTH or not _META_KEY.fullmatch(key):
            raise RegistryError(
                f"meta key {key[:MAX_META_KEY_LENGTH]!r} is not valid: use 1 to "
                f"{MAX_META_KEY_LENGTH} letters, digits, '_' or '-'"
            )
        if not isinstance(item, str):
            raise RegistryError(f"meta[{key!r}] must be a string, not {_kind(item)}")
        if len(item) > MAX_META_VALUE_LENGTH:
            raise RegistryError(f"meta[{key!r}] is longer than {MAX_META_VALUE_LENGTH} characters")
        meta[key] = item
    return meta


# ---- request bodies --------------------------------------------------------------------
_INSTANCE_FIELDS = ("address", "port", "env", "tags", "meta", "ttl")


def parse_instance(body: Mapping[str, Any]) -> InstanceRecord:
    """Check a registration body ``{address, port, env?, tags?, meta?, ttl?}``.

    Raises:
        RegistryError: (400) a field is missing, mistyped, out of range or unknown.
    """
    what = "a registration"
    _only(body, _INSTANCE_FIELDS, what)
    address = _required(body, "address", what)
    if not isinstance(address, str):
        raise RegistryError(f"address must be a string, not {_kind(address)}")
    if not address or len(address) > MAX_ADDRESS_LENGTH or not _ADDRESS.fullmatch(address):
        raise RegistryError(
            f"address {address[:MAX_ADDRESS_LENGTH]!r} is not a host name or IP address "
            "(give IPv6 without brackets)"
        )
    port = _integer(_required(body, "port", what), "port", 1, 65535)
    env_value = body.get("env")
    env = DEFAULT_ENV if env_value is None else check_name("env", env_value)
    ttl_value = body.get("ttl")
    return InstanceRecord(
        address=address,
        port=port,
        env=env,
        tags=_tags(body.get("tags"), "tags"),
        meta=_meta(body.get("meta")),
        ttl=None if ttl_value is None else _ttl(ttl_value, "ttl"),
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
    _only(body, _EVENT_FIELDS, what)
    host = check_name("host", _required(body, "host", what))
    service = check_name("service", _required(body, "service", what))
    state = _required(body, "state", what)
    if state not in EVENT_STATES:
        raise RegistryError(f"state must be one of {', '.join(EVENT_STATES)}, not {state!r:.40}")
    metric_value = body.get("metric")
    time_value = body.get("time")
    when = now if time_value is None else _number(time_value, "time")
    if when < 0:
        raise RegistryError("time must be Unix seconds, not negative")
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
        metric=None if metric_value is None else _number(metric_value, "metric"),
        time=when,
        ttl=default_ttl if ttl_value is None else _ttl(ttl_value, "ttl"),
        tags=_tags(body.get("tags"), "tags"),
        description=_optional_text(body, "description", MAX_DESCRIPTION_LENGTH, lines=True),
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
    _only(body, _MAINTENANCE_FIELDS, what)
    enable = _required(body, "enable", what)
    if not isinstance(enable, bool):
        raise RegistryError(f"enable must be true or false, not {_kind(enable)}")
    consistency = body.get("consistency", "local")
    if consistency not in ("local", "majority"):
        raise RegistryError(f"consistency must be 'local' or 'majority', not {consistency!r:.40}")
    timeout_value = body.get("timeout")
    timeout = DEFAULT_QUORUM_TIMEOUT
    if timeout_value is not None:
        timeout = _number(timeout_value, "timeout")
        if not 0 < timeout <= MAX_QUORUM_TIMEOUT:
            raise RegistryError(
                f"timeout must be more than 0 and at most {MAX_QUORUM_TIMEOUT:g} seconds"
            )
    return MaintenanceRequest(
        enable=enable,
        reason=_optional_text(body, "reason", MAX_TEXT_LENGTH),
        consistency="majority" if consistency == "majority" else "local",
        timeout=timeout,
    )


_RELEASE_FIELDS = ("version", "build", "commit")


def parse_release(body: Mapping[str, Any]) -> ReleaseRequest:
    """Check a release body ``{version, build?, commit?}``.

    Raises:
        RegistryError: (400) a field is missing, mistyped, too long or unknown.
    """
    what = "a release"
    _only(body, _RELEASE_FIELDS, what)
    return ReleaseRequest(
        version=_text(_required(body, "version", what), "version", MAX_TEXT_LENGTH),
        build=_optional_text(body, "build", MAX_TEXT_LENGTH),
        commit=_optional_text(body, "commit", MAX_TEXT_LENGTH),
    )


def parse_expectation(body: Mapping[str, Any]) -> int:
    """Check an expectation body ``{min_passing}``; returns ``min_passing``.

    Raises:
        RegistryError: (400) missing, not an integer in 0 .. :data:`MAX_MIN_PASSING`,
            or an unknown field.
    """
    what = "an expectation"
    _only(body, ("min_passing",), what)
    return _integer(_required(body, "min_passing", what), "min_passing", 0, MAX_MIN_PASSING)

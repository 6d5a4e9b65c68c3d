"""What a renderer works from: instances as the agent's REST API returns them.

Parsing checks types only (an agent that sends a port as a string is not a crdtgossip
agent); whether a name or an address is safe to put into a configuration file is
decided by :func:`safe_name` and :func:`endpoint`, so one odd registration costs its own
line in the output and never the whole render.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from crdtgossip.apps._address import format_endpoint
from crdtgossip.errors import DecodeError

__all__ = [
    "MAX_NAME_LENGTH",
    "Instance",
    "Services",
    "endpoint",
    "parse_instances",
    "safe_name",
]

#: Longest service or instance name a renderer writes: 253 is the longest DNS name
#: (RFC 1035), and names are often used as host names. The registry itself stops at 128.
MAX_NAME_LENGTH = 253

# Letters, digits, "_", "." and "-", starting with a letter or digit: a valid nginx
# upstream name, haproxy backend and server name, with nothing to quote in any of them.
# Whitespace, ";", "{", "}", "#", quotes and newlines (what could end a directive or open
# a block) are all outside it.
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


@dataclass(frozen=True, slots=True)
class Instance:
    """One instance of a service, as ``GET /v1/services/{service}`` describes it.

    Attributes:
        id: the instance id, unique within its service.
        address: an IPv4 or IPv6 literal (IPv6 without brackets) or a DNS name.
        port: the TCP port.
        env: the environment it runs in (``prod``, ``staging`` ...).
        tags: free-form tags, in the agent's order.
        meta: free-form string key/value pairs.
        health: ``passing``, ``warning`` or ``critical``.
        maintenance: whether an operator took it out of rotation.
    """

    id: str
    address: str
    port: int
    env: str = ""
    tags: tuple[str, ...] = ()
    meta: Mapping[str, str] = field(default_factory=dict)
    health: str = "passing"
    maintenance: bool = False

    @property
    def endpoint(self) -> str | None:
        """``address:port`` as nginx and haproxy write it (IPv6 in brackets), or None
        when the address or the port is not safe to write; see :func:`endpoint`."""
        return endpoint(self.address, self.port)


#: What every renderer receives: service name to its instances.
Services = Mapping[str, Sequence[Instance]]


def safe_name(name: str) -> bool:
    """Whether ``name`` can be written into nginx or haproxy configuration as it is.

    Args:
        name: a service name or an instance id.

    Returns:
        True for 1 to :data:`MAX_NAME_LENGTH` letters, digits, ``_``, ``.`` and ``-``
        starting with a letter or a digit.
    """
    return len(name) <= MAX_NAME_LENGTH and _SAFE_NAME.fullmatch(name) is not None


def endpoint(address: str, port: int) -> str | None:
    """Format ``address:port`` for a ``server`` line, or None if it is not safe.

    Args:
        address: an IPv4 literal, an IPv6 literal without brackets (no zone id), or
            an RFC 1123 host name (the policy of :mod:`crdtgossip.apps._address`, the
            same one the registry applies to registrations).
        port: 1 to 65535.

    Returns:
        ``10.0.0.1:80``, ``[2001:db8::1]:80`` or ``web-1.internal:80``; None when the
        address is none of these or the port is out of range, so that nothing the
        registry holds can add a directive to a rendered file.

    Example:
        >>> from crdtgossip.apps.lb import endpoint
        >>> endpoint("2001:DB8::1", 8080)
        '[2001:db8::1]:8080'
        >>> endpoint("10.0.0.1; include /etc/passwd", 80) is None
        True
    """
    return format_endpoint(address, port)


def parse_instances(reply: object) -> list[Instance]:
    """Read the ``instances`` list of a ``GET /v1/services/{service}`` reply.

    Fields the agent adds beyond the contract (``maintenance_reason`` ...) are ignored.

    Args:
        reply: the decoded JSON body.

    Returns:
        The instances, in the agent's order.

    Raises:
        ~crdtgossip.errors.DecodeError: the body is not ``{"instances": [...]}`` or an instance
            lacks a field or has one of the wrong type.
    """
    if not isinstance(reply, dict) or not isinstance(reply.get("instances"), list):
        raise DecodeError('agent reply is not {"instances": [...]}')
    return [_parse_instance(item) for item in reply["instances"]]


def _parse_instance(item: object) -> Instance:
    if not isinstance(item, dict):
        raise DecodeError("agent reply: an instance is not a JSON object")
    instance_id = _string(item, "id")
    port = item.get("port")
    if not isinstance(port, int) or isinstance(port, bool):
        raise DecodeError(f"agent reply: instance {instance_id!r} has no integer 'port'")
    env = item.get("env")
    tags = item.get("tags") or []
    meta = item.get("meta") or {}
    if env is not None and not isinstance(env, str):
        raise DecodeError(f"agent reply: 'env' of instance {instance_id!r} is not a string")
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        raise DecodeError(f"agent reply: 'tags' of instance {instance_id!r} are not strings")
    if not isinstance(meta, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in meta.items()
    ):
        raise DecodeError(f"agent reply: 'meta' of instance {instance_id!r} is not strings")
    maintenance = item.get("maintenance", False)
    if not isinstance(maintenance, bool):
        raise DecodeError(f"agent reply: 'maintenance' of {instance_id!r} is not a boolean")
    return Instance(
        id=instance_id,
        address=_string(item, "address"),
        port=port,
        env=env or "",
        tags=tuple(tags),
        meta=dict(meta),
        health=_string(item, "health"),
        maintenance=maintenance,
    )


def _string(item: dict[object, object], name: str) -> str:
    value = item.get(name)
    if not isinstance(value, str):
        raise DecodeError(f"agent reply: an instance has no string {name!r}")
    return value

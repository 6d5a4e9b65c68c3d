"""The field checks every request body of the registry goes through.

Split from :mod:`crdtgossip.apps.registry.model` (which re-exports what is public): the
limits, the JSON decoding, and one check per kind of field (names, text, numbers,
tags, meta, addresses), each raising :class:`RegistryError` with a message that says
what to send instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

from crdtgossip.apps._address import MAX_ADDRESS_LENGTH, address_problem
from crdtgossip.errors import CRDTGossipError

#: Longest service, instance or environment name. DNS labels stop at 63 characters;
#: instance ids often join a host name and a port, so allow twice that and a little.
MAX_NAME_LENGTH = 128

# Letters, digits, "_", "." and "-", starting with a letter or digit: valid as an nginx
# upstream name, a haproxy backend or server name, a file name and a URL path segment,
# with nothing to escape in any of them.
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

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
        raise RegistryError(f"the request body must be a JSON object, not {kind_of(body)}")
    return body


def kind_of(value: object) -> str:
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
#: What a valid name is, as error messages say it.
NAME_RULE = (
    f"use 1 to {MAX_NAME_LENGTH} letters, digits, '_', '.' or '-', starting with a letter or digit"
)


def check_name(kind: str, value: object) -> str:
    """Check a service, instance or environment name.

    Raises:
        RegistryError: (400) not a str of at most :data:`MAX_NAME_LENGTH` letters,
            digits, ``_``, ``.`` and ``-``, starting with a letter or digit.
    """
    if not isinstance(value, str):
        raise RegistryError(f"{kind} must be a string, not {kind_of(value)}")
    if not value or len(value) > MAX_NAME_LENGTH or not _NAME.fullmatch(value):
        raise RegistryError(f"{kind} {value[:MAX_NAME_LENGTH]!r} is not a valid name: {NAME_RULE}")
    return value


def only_fields(body: Mapping[str, Any], allowed: tuple[str, ...], what: str) -> None:
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise RegistryError(
            f"unknown field {unknown[0]!r} in {what}; allowed fields: {', '.join(allowed)}"
        )


def required(body: Mapping[str, Any], field: str, what: str) -> Any:
    if field not in body or body[field] is None:
        raise RegistryError(f"{what} needs the field {field!r}")
    return body[field]


def text_field(value: object, field: str, max_length: int, *, lines: bool = False) -> str:
    if not isinstance(value, str):
        raise RegistryError(f"{field} must be a string, not {kind_of(value)}")
    if not value or len(value) > max_length:
        raise RegistryError(f"{field} must be 1 to {max_length} characters long")
    # Multi-line text (an event description, often a check's output) may hold line
    # breaks and tabs; nothing may hold other control characters.
    visible = value.replace("\n", "").replace("\t", "") if lines else value
    if not visible.isprintable():
        raise RegistryError(f"{field} must not hold control characters")
    return value


def optional_text(
    body: Mapping[str, Any], field: str, max_length: int, *, lines: bool = False
) -> str | None:
    value = body.get(field)
    return None if value is None else text_field(value, field, max_length, lines=lines)


def number(value: object, field: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RegistryError(f"{field} must be a number, not {kind_of(value)}")
    number = float(value)
    if not math.isfinite(number):
        raise RegistryError(f"{field} must be a finite number")
    return number


def integer(value: object, field: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RegistryError(f"{field} must be an integer, not {kind_of(value)}")
    if not low <= value <= high:
        raise RegistryError(f"{field} must be between {low} and {high}, not {value}")
    return value


def ttl_field(value: object, field: str) -> float:
    ttl = number(value, field)
    if not 0 < ttl <= MAX_EVENT_TTL:
        raise RegistryError(f"{field} must be more than 0 and at most {MAX_EVENT_TTL:g} seconds")
    return ttl


def tags_field(value: object, field: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise RegistryError(f"{field} must be an array of strings, not {kind_of(value)}")
    if len(value) > MAX_TAGS:
        raise RegistryError(f"{field} holds {len(value)} tags; at most {MAX_TAGS} are allowed")
    return tuple(text_field(tag, f"each of {field}", MAX_TAG_LENGTH) for tag in value)


def meta_field(value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RegistryError(f"meta must be an object of strings, not {kind_of(value)}")
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
            raise RegistryError(f"meta[{key!r}] must be a string, not {kind_of(item)}")
        if len(item) > MAX_META_VALUE_LENGTH:
            raise RegistryError(f"meta[{key!r}] is longer than {MAX_META_VALUE_LENGTH} characters")
        if not item.isprintable():
            # A line break or control character in a value can only end a directive
            # of a rendered config (templates quote values; see the lb docs).
            raise RegistryError(f"meta[{key!r}] must not hold line breaks or control characters")
        meta[key] = item
    return meta


def check_address(value: object) -> str:
    """Check an instance address under the policy of :mod:`crdtgossip.apps._address`.

    Raises:
        RegistryError: (400) not a string, or neither an IP literal (no zone id) nor an
            RFC 1123 host name.
    """
    if not isinstance(value, str):
        raise RegistryError(f"address must be a string, not {kind_of(value)}")
    problem = address_problem(value)
    if problem is not None:
        raise RegistryError(
            f"address {value[:MAX_ADDRESS_LENGTH]!r} is refused: {problem}; nginx and "
            "haproxy would refuse it too"
        )
    return value

"""Named tokens with scopes: who may do what on an agent's REST API.

A tokens file (``crdtgossip agent --tokens FILE``) holds one token a line::

    # name   scopes            token
    ci       read,deploy       7f3c...e1
    nomad    read,register     a9d0...42
    ops      admin             5b21...9c

Blank lines and lines starting with ``#`` are skipped. A name is a registry name, the
scopes a comma-separated subset of :data:`SCOPES`, the token at least
:data:`MIN_TOKEN_LENGTH` printable characters without spaces; names and tokens are
unique. ``--token FILE`` (one token) is the admin token named ``default``.

Every request needs one scope (:func:`required_scope`): reads need ``read``; registering,
deregistering, maintenance and health events need ``register``; releases, expectations
and drains need ``deploy``; anything else needs ``admin``, and ``admin`` grants every
scope. No token, or an unknown one, is a 401; a known token without the scope a 403.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import stat
from dataclasses import dataclass
from pathlib import Path

from crdtgossip.apps._cli import read_small_file
from crdtgossip.apps.registry.fields import RegistryError, check_name
from crdtgossip.errors import ConfigError

__all__ = [
    "ADMIN",
    "ANONYMOUS",
    "DEFAULT_TOKEN_NAME",
    "DEPLOY",
    "MAX_TOKENS_FILE_SIZE",
    "MIN_TOKEN_LENGTH",
    "READ",
    "REGISTER",
    "SCOPES",
    "Token",
    "TokenTable",
    "default_table",
    "parse_tokens",
    "read_tokens",
    "required_scope",
]

READ, REGISTER, DEPLOY, ADMIN = "read", "register", "deploy", "admin"

#: Every scope a token may hold.
SCOPES = frozenset({READ, REGISTER, DEPLOY, ADMIN})

#: The name of the token given with ``--token`` (the single-token setup of before).
DEFAULT_TOKEN_NAME = "default"

#: Who a request without a known token is, in the audit record.
ANONYMOUS = "anonymous"

#: Shortest token in a tokens file: 16 characters of a random hex string are 64 bits,
#: beyond guessing over HTTP; ``openssl rand -hex 32`` gives 64 characters.
MIN_TOKEN_LENGTH = 16

#: Largest tokens file read, in bytes: a thousand tokens of 100 characters fit.
MAX_TOKENS_FILE_SIZE = 128 * 1024

_log = logging.getLogger(__name__)

#: Permission bits a tokens file should not have: any access by group or others.
_SHARED_BITS = stat.S_IRWXG | stat.S_IRWXO

#: Methods that only read.
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

#: Path prefixes of the writes a deploy tool makes (releases, expectations, drains, and
#: the renderers' reports of the drains they applied).
_DEPLOY_PREFIXES = ("/v1/releases", "/v1/expectations", "/v1/drain", "/v1/renderers")


@dataclass(frozen=True, slots=True)
class Token:
    """One named token.

    Attributes:
        name: who holds it, as the audit record shows it.
        scopes: what it may do (a subset of :data:`SCOPES`).
        digest: the SHA-256 of the token (the token itself is not kept).
    """

    name: str
    scopes: frozenset[str]
    digest: bytes

    def allows(self, scope: str) -> bool:
        """Whether the token grants ``scope`` (``admin`` grants every scope)."""
        return ADMIN in self.scopes or scope in self.scopes


def _digest(secret: str) -> bytes:
    # Digests have one length, so comparing them leaks nothing about the token's length.
    return hashlib.sha256(secret.encode("utf-8")).digest()


def required_scope(method: str, path: str) -> str:
    """The scope a request of ``method`` on ``path`` needs."""
    if method.upper() in _SAFE_METHODS:
        return READ
    segments = path.split("/")
    if "drain" in segments or "undrain" in segments:  # a drain of an instance or agent
        return DEPLOY
    if any(path == prefix or path.startswith(prefix + "/") for prefix in _DEPLOY_PREFIXES):
        return DEPLOY
    if (path.startswith("/v1/services/") and len(segments) >= 6) or path == "/v1/events":
        return REGISTER  # an instance: register, deregister, maintenance; events
    return ADMIN


class TokenTable:
    """The tokens an agent accepts, and whether reads need one.

    Args:
        tokens: the named tokens.
        open_reads: reads need no token (the single ``--token`` setup of before).
    """

    def __init__(self, tokens: list[Token], *, open_reads: bool = False) -> None:
        self.tokens = tuple(tokens)
        self.open_reads = open_reads

    def identify(self, authorization: str) -> Token | None:
        """The token an ``Authorization`` header value names, or None.

        Every token is compared (constant time each, no early exit), so the time taken
        says nothing about which token, if any, matched.
        """
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return None
        digest = _digest(given.strip())
        found: Token | None = None
        for token in self.tokens:
            if hmac.compare_digest(digest, token.digest):
                found = token
        return found

    def check(self, method: str, path: str, authorization: str) -> str:
        """The name of who makes a request, when it may be made.

        Returns:
            The token's name, or :data:`ANONYMOUS` for an open read.

        Raises:
            RegistryError: (401) no token or an unknown one; (403) a token without the
                scope the request needs.
        """
        scope = required_scope(method, path)
        token = self.identify(authorization)
        if scope == READ and self.open_reads:  # open to all, whatever token is sent
            return ANONYMOUS if token is None else token.name
        if token is None:
            raise RegistryError(
                f"{method} {path} needs a token with scope {scope!r}: send the header "
                "'Authorization: Bearer <token>'",
                status=401,
            )
        if not token.allows(scope):
            held = ",".join(sorted(token.scopes))
            raise RegistryError(
                f"token {token.name!r} ({held}) lacks scope {scope!r} for {method} {path}",
                status=403,
            )
        return token.name

    def name_of(self, authorization: str) -> str:
        """Who an ``Authorization`` header names (for the audit record of a refusal)."""
        token = self.identify(authorization)
        return ANONYMOUS if token is None else token.name


def default_table(secret: str) -> TokenTable:
    """The table of the single ``--token``: an admin named ``default``, reads open."""
    return TokenTable(
        [Token(DEFAULT_TOKEN_NAME, frozenset({ADMIN}), _digest(secret))], open_reads=True
    )


def parse_tokens(text: str, where: str = "tokens file") -> list[Token]:
    """The tokens of a tokens file's text (the format is in the module's docstring).

    Raises:
        ConfigError: a malformed line (named by its number), an unknown scope, a short
            token, a name or token used twice, or no token at all.
    """
    tokens: list[Token] = []
    names: set[str] = set()
    digests: set[bytes] = set()
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 3:
            raise ConfigError(f"{where} line {number}: expected 'name scope[,scope] token'")
        name, scope_text, secret = parts
        try:
            check_name("token name", name)
        except RegistryError as exc:
            raise ConfigError(f"{where} line {number}: {exc}") from None
        scopes = frozenset(scope_text.split(","))
        unknown = scopes - SCOPES
        if unknown or not scopes:
            raise ConfigError(
                f"{where} line {number}: unknown scope {sorted(unknown)[0] if unknown else ''!r};"
                f" use {', '.join(sorted(SCOPES))}"
            )
        if len(secret) < MIN_TOKEN_LENGTH or not secret.isprintable():
            raise ConfigError(
                f"{where} line {number}: the token of {name!r} must be at least "
                f"{MIN_TOKEN_LENGTH} printable characters"
            )
        digest = _digest(secret)
        if name in names or digest in digests:
            raise ConfigError(f"{where} line {number}: the name or token of {name!r} is used twice")
        names.add(name)
        digests.add(digest)
        tokens.append(Token(name, scopes, digest))
    if not tokens:
        raise ConfigError(f"{where} holds no token")
    return tokens


def read_tokens(path: Path) -> list[Token]:
    """The tokens of the tokens file at ``path`` (a warning is logged when other users
    may read it).

    Raises:
        ConfigError: the file cannot be read, is too large, is not UTF-8, or is malformed.
    """
    raw = read_small_file(path, MAX_TOKENS_FILE_SIZE, "tokens file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"tokens file {path} is not UTF-8 text") from None
    tokens = parse_tokens(text, f"tokens file {path}")
    try:
        mode = path.stat().st_mode
    except OSError:  # read a moment ago; gone since: nothing to warn about
        return tokens
    if mode & _SHARED_BITS:
        _log.warning(
            "tokens file %s can be read by other users (mode %o): chmod 600 it",
            path,
            stat.S_IMODE(mode),
        )
    return tokens

"""Keyring: AES-GCM sealed frames, key ids and key rotation with no downtime.

A :class:`Keyring` holds one or more AES keys. :meth:`Keyring.seal` encrypts and
authenticates a frame under the *primary* key; :meth:`Keyring.open` accepts a frame
sealed under *any* installed key. That is what makes rotation safe on a live cluster:

1. ``install(new)`` on every node (all of them now accept frames under ``new``);
2. ``use(new)`` on every node (they start sealing under ``new``, and still accept
   frames from the nodes that have not switched yet);
3. ``remove(old)`` on every node.

Frame layout (all integers big-endian)::

    +---------+----------+-----------+------------------------------+
    | version | key id   | nonce     | AES-GCM ciphertext + tag     |
    | 1 byte  | 4 bytes  | 12 bytes  | len(plaintext) + 16 bytes    |
    +---------+----------+-----------+------------------------------+

The key id is the first four bytes of SHA-256 of the key: it lets the receiver try the
matching key first instead of every installed key in turn, and reveals nothing useful
about the key. The version byte and key id are authenticated too (they go in the
associated data, followed by the cluster label), so flipping any bit of a frame makes it
fail to open. A cluster *label* keeps two clusters that share a key (staging and
production, say) from accepting each other's frames, as memberlist's label does.

The design follows hashicorp/memberlist's keyring (install/use/remove, keys of 16, 24
or 32 bytes, label as associated data); the code is our own and uses the AES-GCM of
the ``cryptography`` package.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
from collections.abc import Iterable
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from crdtgossip.errors import ConfigError, DecodeError, KeyringError

__all__ = [
    "FRAME_OVERHEAD",
    "FRAME_VERSION",
    "KEY_ID_SIZE",
    "KEY_SIZES",
    "MAX_LABEL_SIZE",
    "NONCE_SIZE",
    "TAG_SIZE",
    "Keyring",
    "decode_key",
    "encode_key",
    "generate_key",
    "key_id",
]

FRAME_VERSION = 1
"""The first byte of every sealed frame; a frame of another version does not open."""

VERSION_SIZE = 1
"""Bytes of the version field."""

KEY_ID_SIZE = 4
"""Bytes of the key id: enough to pick the right key first among a handful installed
(a collision only costs one extra decryption attempt), too few to say anything about
the key itself."""

NONCE_SIZE = 12
"""Bytes of the random AES-GCM nonce: the 96-bit size GCM is specified for (NIST SP
800-38D); random nonces are safe for about 2**32 frames per key, which is why keys are
meant to be rotated."""

TAG_SIZE = 16
"""Bytes of the AES-GCM authentication tag (the full 128 bits; never truncated)."""

HEADER_SIZE = VERSION_SIZE + KEY_ID_SIZE + NONCE_SIZE
"""Bytes before the ciphertext: version, key id and nonce (17)."""

FRAME_OVERHEAD = HEADER_SIZE + TAG_SIZE
"""Bytes a sealed frame adds to its plaintext: 1 + 4 + 12 + 16 = 33. Callers that fill
a datagram of bounded size (1400 bytes for UDP) subtract this first."""

KEY_SIZES = (16, 24, 32)
"""Allowed key sizes in bytes: AES-128, AES-192 and AES-256, as memberlist allows."""

GENERATED_KEY_SIZE = 32
"""Size of the keys :func:`generate_key` makes: AES-256, the strongest AES offers at a
cost that does not matter for gossip-sized frames."""

MAX_LABEL_SIZE = 255
"""Longest cluster label in bytes; memberlist uses the same bound for its label."""

MAX_KEYRING_FILE_SIZE = 64 * 1024
"""Largest keyring file :meth:`Keyring.from_file` reads: a key is 44 characters of
base64, so this holds well over a thousand keys, and a wrong path to a huge file fails
fast instead of being read whole."""

_VERSION_BYTE = bytes([FRAME_VERSION])


def generate_key() -> bytes:
    """Return a fresh random 32-byte (AES-256) key from the operating system's CSPRNG.

    Returns:
        32 random bytes.
    """
    return os.urandom(GENERATED_KEY_SIZE)


def key_id(key: bytes) -> bytes:
    """Return the 4-byte id a sealed frame carries to name its key.

    Args:
        key: the AES key.

    Returns:
        The first :data:`KEY_ID_SIZE` bytes of SHA-256 of ``key``.
    """
    return hashlib.sha256(key).digest()[:KEY_ID_SIZE]


def encode_key(key: bytes) -> str:
    """Return ``key`` as standard base64 text, the form keyring files and the CLI use.

    Args:
        key: a key of 16, 24 or 32 bytes.

    Returns:
        The base64 text (with padding, no newline).

    Raises:
        KeyringError: the key is not bytes or not of an allowed size.
    """
    return base64.b64encode(_check_key(key)).decode("ascii")


def decode_key(text: str) -> bytes:
    """Parse a key written by :func:`encode_key`.

    Args:
        text: standard base64 text; surrounding whitespace is ignored.

    Returns:
        The key bytes.

    Raises:
        KeyringError: the text is not valid base64 or does not decode to 16, 24 or 32
            bytes.
    """
    try:
        key = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise KeyringError(
            f"a key must be standard base64 text: {exc}; make one with `crdtgossip keygen`"
        ) from None
    return _check_key(key)


def _check_key(key: object) -> bytes:
    """Return ``key`` as bytes if it is a usable AES key, else raise KeyringError."""
    if isinstance(key, str):
        raise KeyringError(
            "a key must be bytes, not str; decode base64 text with crdtgossip.security.decode_key"
        )
    if not isinstance(key, bytes | bytearray | memoryview):
        raise KeyringError(f"a key must be bytes, not {type(key).__name__}")
    raw = bytes(key)
    if len(raw) not in KEY_SIZES:
        raise KeyringError(
            f"a key must be 16, 24 or 32 bytes (AES-128, -192 or -256), not {len(raw)} bytes; "
            "make one with `crdtgossip keygen` or crdtgossip.security.generate_key()"
        )
    return raw


def _check_label(label: object) -> bytes:
    """Return ``label`` as bytes if it is a usable cluster label, else raise ConfigError."""
    if not isinstance(label, bytes | bytearray | memoryview):
        raise ConfigError(f"a cluster label must be bytes, not {type(label).__name__}")
    raw = bytes(label)
    if len(raw) > MAX_LABEL_SIZE:
        raise ConfigError(f"a cluster label must be at most {MAX_LABEL_SIZE} bytes, not {len(raw)}")
    return raw


class Keyring:
    """The AES keys a node seals and opens frames with; the first is the primary.

    Frames are sealed under the primary key and opened under any installed key. The
    keyring is not locked: it is meant to be used from one asyncio event loop, where
    no two calls interleave.

    Args:
        keys: one or more keys of 16, 24 or 32 bytes, the primary first. A key given
            twice is kept once, at its first place.
        label: the cluster label, authenticated with every frame (at most 255 bytes).
            Nodes only accept each other's frames when their labels are equal.

    Raises:
        KeyringError: no key was given, a single key was given instead of a list, or
            a key is not bytes of an allowed size.
        ConfigError: the label is not bytes or too long.
    """

    __slots__ = ("_ciphers", "_ids", "_keys", "_label")

    def __init__(self, keys: Iterable[bytes], *, label: bytes = b"") -> None:
        if isinstance(keys, bytes | bytearray | memoryview | str):
            raise KeyringError("pass a list of keys, the primary first: Keyring([key])")
        self._label = _check_label(label)
        self._keys: list[bytes] = []
        self._ciphers: dict[bytes, AESGCM] = {}
        self._ids: dict[bytes, bytes] = {}
        for key in keys:
            self.install(key)
        if not self._keys:
            raise KeyringError("a keyring needs at least one key; the first one is the primary")

    @classmethod
    def generate(cls, *, label: bytes = b"") -> Keyring:
        """Return a keyring holding one fresh 32-byte primary key.

        Args:
            label: the cluster label, as for the constructor.

        Returns:
            A new keyring.
        """
        return cls([generate_key()], label=label)

    @property
    def keys(self) -> tuple[bytes, ...]:
        """Every installed key, the primary first."""
        return tuple(self._keys)

    @property
    def primary(self) -> bytes:
        """The key new frames are sealed under."""
        return self._keys[0]

    @property
    def label(self) -> bytes:
        """The cluster label authenticated with every frame."""
        return self._label

    def install(self, key: bytes) -> None:
        """Accept frames sealed under ``key`` from now on; installing it again is a no-op.

        The primary key does not change (see :meth:`use`).

        Args:
            key: a key of 16, 24 or 32 bytes.

        Raises:
            KeyringError: the key is not bytes of an allowed size.
        """
        raw = _check_key(key)
        if raw in self._ciphers:
            return
        self._keys.append(raw)
        self._ciphers[raw] = AESGCM(raw)
        self._ids[raw] = key_id(raw)

    def use(self, key: bytes) -> None:
        """Make the installed ``key`` the primary: new frames are sealed under it.

        Args:
            key: a key already installed.

        Raises:
            KeyringError: the key is not installed (install it first, on every node).
        """
        raw = _check_key(key)
        if raw not in self._ciphers:
            raise KeyringError(
                "cannot use a key that is not installed: install it first on every node"
            )
        self._keys.remove(raw)
        self._keys.insert(0, raw)

    def remove(self, key: bytes) -> None:
        """Stop accepting frames sealed under ``key``.

        Args:
            key: an installed key other than the primary.

        Raises:
            KeyringError: the key is the primary (make another key primary with
                :meth:`use` first) or is not installed.
        """
        raw = _check_key(key)
        if raw not in self._ciphers:
            raise KeyringError("cannot remove a key that is not installed")
        if raw == self._keys[0]:
            raise KeyringError(
                "cannot remove the primary key: make another installed key primary with use() first"
            )
        self._keys.remove(raw)
        del self._ciphers[raw]
        del self._ids[raw]

    def seal(self, plaintext: bytes) -> bytes:
        """Encrypt and authenticate ``plaintext`` under the primary key.

        Args:
            plaintext: the bytes to protect.

        Returns:
            A frame of ``len(plaintext) + FRAME_OVERHEAD`` bytes (layout in the module
            docstring).
        """
        primary = self._keys[0]
        header = _VERSION_BYTE + self._ids[primary]
        nonce = os.urandom(NONCE_SIZE)
        ciphertext = self._ciphers[primary].encrypt(nonce, plaintext, header + self._label)
        return header + nonce + ciphertext

    def open(self, frame: bytes) -> bytes:
        """Check and decrypt a frame sealed by :meth:`seal` under any installed key.

        Args:
            frame: the sealed frame, as received.

        Returns:
            The plaintext.

        Raises:
            DecodeError: the frame is too short, of another version, or does not
                authenticate under any installed key with this keyring's label
                (wrong key, wrong label, tampered or truncated).
        """
        data = bytes(frame)
        if len(data) < FRAME_OVERHEAD:
            raise DecodeError(
                f"sealed frame too short: {len(data)} bytes, at least {FRAME_OVERHEAD} needed"
            )
        if data[0] != FRAME_VERSION:
            raise DecodeError(
                f"sealed frame of unknown version {data[0]} (this node reads {FRAME_VERSION})"
            )
        header = data[: VERSION_SIZE + KEY_ID_SIZE]
        frame_key_id = header[VERSION_SIZE:]
        nonce = data[VERSION_SIZE + KEY_ID_SIZE : HEADER_SIZE]
        ciphertext = data[HEADER_SIZE:]
        associated_data = header + self._label
        # The key named by the id first; then the rest, since ids can collide.
        ordered = sorted(self._keys, key=lambda k: self._ids[k] != frame_key_id)
        for key in ordered:
            try:
                return self._ciphers[key].decrypt(nonce, ciphertext, associated_data)
            except InvalidTag:
                continue
        raise DecodeError("frame did not authenticate under any installed key")

    def to_file(self, path: str | os.PathLike[str]) -> None:
        """Write the keys to ``path``, one base64 key a line, the primary first.

        The file is created with mode 0600 (owner read and write only) and replaced
        atomically, so a reader never sees half a keyring. The label is not written:
        it is cluster configuration, not a secret.

        Args:
            path: where to write.

        Raises:
            KeyringError: the file could not be written.
        """
        target = Path(path)
        lines = [
            "# crdtgossip keyring: one base64 AES key a line, the primary first",
            *(encode_key(key) for key in self._keys),
        ]
        content = ("\n".join(lines) + "\n").encode("ascii")
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            try:
                # The mode given to open() is masked by the umask; make it exact.
                os.fchmod(fd, 0o600)
                os.write(fd, content)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(temporary, target)
        except OSError as exc:
            temporary.unlink(missing_ok=True)
            raise KeyringError(f"cannot write keyring file {str(target)!r}: {exc}") from exc

    @classmethod
    def from_file(cls, path: str | os.PathLike[str], *, label: bytes = b"") -> Keyring:
        """Read a keyring written by :meth:`to_file` (or by hand in the same format).

        One base64 key a line, the primary first; blank lines and lines starting with
        ``#`` are ignored.

        Args:
            path: the keyring file.
            label: the cluster label, as for the constructor.

        Returns:
            The keyring.

        Raises:
            KeyringError: the file cannot be read, is too large, holds no key, or a
                line is not a valid key (the message names the line).
        """
        source = Path(path)
        try:
            with source.open("rb") as handle:
                raw = handle.read(MAX_KEYRING_FILE_SIZE + 1)
        except OSError as exc:
            raise KeyringError(f"cannot read keyring file {str(source)!r}: {exc}") from exc
        if len(raw) > MAX_KEYRING_FILE_SIZE:
            raise KeyringError(
                f"keyring file {str(source)!r} is larger than {MAX_KEYRING_FILE_SIZE} bytes; "
                "is this the right file?"
            )
        try:
            text = raw.decode("ascii")
        except UnicodeDecodeError:
            raise KeyringError(
                f"keyring file {str(source)!r} is not ASCII text of base64 keys"
            ) from None
        keys: list[bytes] = []
        for number, line in enumerate(text.splitlines(), start=1):
            stripped = line.strip()
            if not stripped or stripped.startswith("#"):
                continue
            try:
                keys.append(decode_key(stripped))
            except KeyringError as exc:
                raise KeyringError(f"keyring file {str(source)!r}, line {number}: {exc}") from None
        if not keys:
            raise KeyringError(f"keyring file {str(source)!r} holds no key")
        return cls(keys, label=label)

    def __repr__(self) -> str:
        # Never print key material: ids are enough to tell keyrings apart.
        ids = ", ".join(self._ids[key].hex() for key in self._keys)
        return f"Keyring(key_ids=[{ids}], label={self._label!r})"

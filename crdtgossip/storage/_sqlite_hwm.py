"""The high-water mark beside a SQLite state file: proof that the file lost no commit.

SQLite can lose commits without an error: a write-ahead log damaged, cut short or
deleted after a crash (SQLite drops every frame from the first bad one on), or the file
replaced by an older copy (a restored backup). The file then opens cleanly, with an
older state under the same replica id, and a node reusing that id would issue counter
values and dots its peers already hold (issue 18). The file cannot tell on its own: it
is self-consistent, only older.

So after every commit the storage writes the file's commit counter to a small file
beside it, ``<path>.hwm``, and fsyncs it: ``MAGIC``, the store id, the counter (8 bytes,
big-endian) and an HMAC-SHA256 of those, keyed by the store id, cut to 16 bytes. The
mark is written after the commit is durable, so it is never ahead of the file by a
commit that happened; at open, a file whose counter is *behind* its mark lost commits.
The store id (random, made with the file) tells a mark of this store from one of
another store (a file deleted and made anew keeps no mark of the old one).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
from enum import Enum
from pathlib import Path
from typing import Final

from crdtgossip.storage._sqlite_schema import fsync_directory

__all__ = ["MAGIC", "Mark", "Sidecar", "check_mark", "mark_path"]

_log = logging.getLogger(__name__)

MAGIC: Final = b"CRDGHWM1"
"""The first bytes of a mark: what it is, and its format version."""

_STORE_ID_BYTES: Final = 16  # the store id is 32 hex digits
_TAG_BYTES: Final = 16  # an HMAC-SHA256 cut to 128 bits: no accident passes it
_SIZE: Final = len(MAGIC) + _STORE_ID_BYTES + 8 + _TAG_BYTES


class Mark(Enum):
    """What the mark beside a file says about it."""

    NONE = "no mark, or a mark of another store"
    BEHIND = "the file's commit counter is behind its mark: commits were lost"
    DAMAGED = "the mark of this store does not verify"
    WHOLE = "the file holds every commit its mark counts"


def mark_path(path: Path) -> Path:
    """Where the mark of the state file at ``path`` is kept."""
    return path.with_name(path.name + ".hwm")


def _encode(store_id: str, commit_seq: int) -> bytes:
    body = MAGIC + bytes.fromhex(store_id) + commit_seq.to_bytes(8, "big")
    return body + _tag(store_id, body)


def _tag(store_id: str, body: bytes) -> bytes:
    return hmac.new(store_id.encode("ascii"), body, hashlib.sha256).digest()[:_TAG_BYTES]


def check_mark(path: Path, store_id: str, commit_seq: int) -> tuple[Mark, int | None]:
    """Compare a file's commit counter with the mark kept beside it.

    Args:
        path: the state file.
        store_id: its store id (from its meta row).
        commit_seq: its commit counter, as read at open.

    Returns:
        The verdict, and the counter the mark holds (None when there is none to trust).
    """
    try:
        data = mark_path(path).read_bytes()
    except FileNotFoundError:
        return Mark.NONE, None
    except OSError as exc:
        _log.warning("cannot read the high-water mark of %s: %s", path, exc)
        return Mark.DAMAGED, None
    if len(data) != _SIZE or not data.startswith(MAGIC):
        return Mark.DAMAGED, None
    body, tag = data[:-_TAG_BYTES], data[-_TAG_BYTES:]
    if body[len(MAGIC) : len(MAGIC) + _STORE_ID_BYTES].hex() != store_id:
        return Mark.NONE, None  # another store's mark: says nothing of this one
    if not hmac.compare_digest(tag, _tag(store_id, body)):
        return Mark.DAMAGED, None
    marked = int.from_bytes(body[-8:], "big")
    return (Mark.BEHIND if commit_seq < marked else Mark.WHOLE), marked


class Sidecar:
    """The open mark file of one session: rewritten in place and fsynced after each
    commit (32 bytes, inside one disk sector, so a write is never seen half done).

    Args:
        path: the state file.
        store_id: its store id.
    """

    def __init__(self, path: Path, store_id: str) -> None:
        self._path = mark_path(path)
        self._store_id = store_id
        self._descriptor: int | None = None
        self._failing = False

    def write(self, commit_seq: int) -> None:
        """Record ``commit_seq`` as the file's latest commit; never raises (a mark that
        cannot be written weakens the check at the next open, and is logged)."""
        data = _encode(self._store_id, commit_seq)
        try:
            if self._descriptor is None:
                created = not self._path.exists()
                self._descriptor = os.open(self._path, os.O_WRONLY | os.O_CREAT, 0o600)
                if created:
                    fsync_directory(self._path.parent)
            os.lseek(self._descriptor, 0, os.SEEK_SET)
            os.write(self._descriptor, data)
            os.fsync(self._descriptor)
        except OSError as exc:
            if not self._failing:
                _log.warning("cannot write the high-water mark %s: %s", self._path, exc)
            self._failing = True
        else:
            self._failing = False

    def close(self) -> None:
        """Close the mark file (idempotent)."""
        if self._descriptor is not None:
            descriptor, self._descriptor = self._descriptor, None
            try:
                os.close(descriptor)
            except OSError as exc:
                _log.warning("closing %s: %s", self._path, exc)

"""TCP framing: the length prefix, and a sans-I/O decoder that reads frames within limits.

Every frame is ``length (4 bytes, big-endian, unsigned) || payload (length bytes)``.

:class:`FrameDecoder` is fed bytes as they arrive and hands back whole frames. It never
allocates what a peer merely *declares*: a frame's buffer grows with the bytes that have
actually arrived, and every byte held for a peer that has not authenticated is charged to
a :class:`ReadBudget` shared by all such connections, so a thousand connections that each
announce a 16 MiB frame cost nothing until they send it, and together can never hold more
than the budget. A length over the decoder's current limit is refused from the prefix
alone, before any of the body is read.
"""

from __future__ import annotations

__all__ = [
    "TCP_LENGTH_SIZE",
    "BudgetExceeded",
    "FrameDecoder",
    "FrameTooLarge",
    "ReadBudget",
    "frame",
]

TCP_LENGTH_SIZE = 4
"""Bytes of the big-endian length prefix of every frame."""

MAX_LENGTH_FIELD = 2 ** (8 * TCP_LENGTH_SIZE) - 1
"""The largest length the prefix can express."""


class FrameTooLarge(Exception):
    """A length prefix exceeded the decoder's limit; the body was not read.

    Attributes:
        length: the length the peer declared.
        limit: the limit it exceeded.
    """

    def __init__(self, length: int, limit: int) -> None:
        super().__init__(f"frame of {length} bytes over the limit of {limit}")
        self.length = length
        self.limit = limit


class BudgetExceeded(Exception):
    """Buffering the bytes that arrived would pass the shared :class:`ReadBudget`."""


class ReadBudget:
    """Bytes that connections not yet authenticated may hold in partial frames, in all.

    Args:
        limit: the most bytes held at once, across every connection charged to it.
    """

    __slots__ = ("limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0

    def charge(self, size: int) -> None:
        """Reserve ``size`` more bytes.

        Raises:
            BudgetExceeded: the budget has not that much left; nothing is reserved.
        """
        if self.used + size > self.limit:
            raise BudgetExceeded(f"{self.used} + {size} bytes over the budget of {self.limit}")
        self.used += size

    def release(self, size: int) -> None:
        """Give back ``size`` bytes reserved by :meth:`charge`."""
        self.used -= size


def frame(payload: bytes) -> bytes:
    """Return ``payload`` prefixed with its length.

    Args:
        payload: at most :data:`MAX_LENGTH_FIELD` bytes.

    Returns:
        The framed bytes.
    """
    return len(payload).to_bytes(TCP_LENGTH_SIZE, "big") + payload


class FrameDecoder:
    """Cut a byte stream into frames, one frame at a time, within a limit and a budget.

    Feed it with :meth:`feed`, which consumes bytes up to the end of at most one frame,
    then take the frame with :meth:`take`: stopping at each frame lets the caller change
    :attr:`limit` and :attr:`budget` once a connection authenticates, before the next
    frame's prefix is judged.

    Args:
        limit: the largest payload accepted, in bytes.
        budget: the shared budget the partial frame is charged to, or None when this
            connection's bytes are not counted (it has authenticated).

    Attributes:
        limit: may be changed between frames.
        budget: may be changed between frames (only while no frame is partial).
    """

    __slots__ = ("_body", "_charged", "_done", "_header", "_length", "budget", "limit")

    def __init__(self, limit: int, budget: ReadBudget | None) -> None:
        self.limit = limit
        self.budget = budget
        self._header = bytearray()
        self._body: bytearray | None = None
        self._length = 0
        self._charged = 0
        self._done: bytes | None = None

    @property
    def in_frame(self) -> bool:
        """Whether part of a frame (its prefix or body) has arrived but not all of it."""
        return bool(self._header) or self._body is not None

    @property
    def length(self) -> int:
        """The declared length of the frame in progress (0 before its prefix is whole)."""
        return self._length if self._body is not None else 0

    @property
    def buffered(self) -> int:
        """Bytes held for the frame in progress."""
        return len(self._header) + (len(self._body) if self._body is not None else 0)

    def feed(self, data: memoryview) -> int:
        """Consume bytes from ``data`` up to the end of one frame.

        Args:
            data: bytes received; only the returned count of them is used.

        Returns:
            How many bytes of ``data`` were consumed. When a frame completed, it is
            waiting in :meth:`take` and nothing after it was consumed.

        Raises:
            FrameTooLarge: a length prefix exceeds :attr:`limit`.
            BudgetExceeded: holding the body's bytes would pass the budget.
        """
        consumed = 0
        if self._body is None:
            need = TCP_LENGTH_SIZE - len(self._header)
            chunk = data[:need]
            self._header += chunk
            consumed = len(chunk)
            if len(self._header) < TCP_LENGTH_SIZE:
                return consumed
            length = int.from_bytes(self._header, "big")
            if length > self.limit:
                raise FrameTooLarge(length, self.limit)
            self._length = length
            self._body = bytearray()
        body = self._body
        chunk = data[consumed : consumed + self._length - len(body)]
        if chunk and self.budget is not None:
            self.budget.charge(len(chunk))
            self._charged += len(chunk)
        body += chunk
        consumed += len(chunk)
        if len(body) == self._length:
            self._done = bytes(body)
            self._reset()
        return consumed

    def take(self) -> bytes | None:
        """Return the frame :meth:`feed` completed, once, or None."""
        done, self._done = self._done, None
        return done

    def discard(self) -> None:
        """Drop the frame in progress and give its bytes back to the budget."""
        self._done = None
        self._reset()

    def _reset(self) -> None:
        if self.budget is not None and self._charged:
            self.budget.release(self._charged)
        self._charged = 0
        self._header = bytearray()
        self._body = None
        self._length = 0

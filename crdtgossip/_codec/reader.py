"""msgpack unpacking under the limits, and the one place decode errors are translated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from crdtgossip._codec.limits import (
    EXT_COPY_FACTOR,
    TUPLE_EXT_CODE,
    USER_VALUE_EXT_CODE,
    Limits,
    Wire,
)
from crdtgossip.errors import DecodeError

#: Builds a registered type found inside a value from its ``[tag, version, body]``.
#: Installed by :mod:`crdtgossip._codec.body`, which sits above this module (it checks
#: bodies with the value checks built on the reader), so that imports stay downward.
UserValueReader = Callable[[Wire, Limits], object]
_user_value_reader: list[UserValueReader] = []


def install_user_value_reader(reader: UserValueReader) -> None:
    """Make ``reader`` build the registered types found inside values."""
    _user_value_reader[:] = [reader]


#: Inputs (and tuple payloads) up to this many bytes are unpacked without the skip of
#: :func:`check_complete`, which costs a msgpack.Unpacker (about 2.5 us, as much as
#: decoding a small delta). With every length capped at the input's size, the arrays
#: such an input can announce make room for at most 256 / 3 headers x 256 slots x 8
#: bytes, 175 KB, and nested tuple payloads lie inside one another, so share that.
UNCHECKED_INPUT = 256


def check_complete(data: bytes, limits: Limits, most_items: int) -> None:
    """Refuse ``data`` unless it holds every item its arrays and maps announce.

    msgpack makes room for an array's items when it reads the array's header (up to
    10,000 slots, 80 KB, per array) and only then finds out whether the items follow:
    1,000 nested headers announcing 65,535 items each, a 3 KB input, cost 78 MiB. Skipping
    the object first walks the same framing in C without building anything and stops at
    the first header that announces more than the bytes hold. Input that passes holds at
    least one byte per item, so what unpacking it allocates grows with its size, never
    with what its headers claim.

    Raises:
        DecodeError: ``data`` ends before the items its headers announce.
    """
    unpacker = msgpack.Unpacker(
        max_buffer_size=max(len(data), 1),
        max_str_len=limits.max_str_len,
        max_bin_len=limits.max_str_len,
        max_array_len=most_items,
        max_map_len=most_items,
        max_ext_len=limits.max_str_len,
    )
    unpacker.feed(data)
    try:
        unpacker.skip()
    except msgpack.OutOfData:
        raise DecodeError(
            "malformed input: truncated: a header announces more items than follow"
        ) from None


class _Reader:
    """Decoding state: the limits and the current nesting depth of tuple extensions."""

    def __init__(self, limits: Limits, size: int) -> None:
        self.limits = limits
        self.depth = 0
        # msgpack hands each tuple extension's payload over as a fresh copy, so nested
        # tuples copy the input once per level: cap the bytes copied in all.
        self.copy_budget = EXT_COPY_FACTOR * size + 4096

    def unpack(self, data: bytes) -> Wire:
        limits = self.limits
        # An array or a map holds at least one byte per item: no longer than the input.
        most_items = min(limits.max_collection_len, len(data))
        if len(data) > UNCHECKED_INPUT:
            check_complete(data, limits, most_items)
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=self._ext_hook,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_str_len,
            max_array_len=most_items,
            max_map_len=most_items,
            max_ext_len=limits.max_str_len,
        )

    def _ext_hook(self, code: int, data: bytes) -> object:
        if code != TUPLE_EXT_CODE and (code != USER_VALUE_EXT_CODE or not _user_value_reader):
            raise DecodeError(f"unknown msgpack extension type {code}")
        self.copy_budget -= len(data)
        if self.copy_budget < 0:
            raise DecodeError("tuple extensions nested too deeply for their size")
        self.depth += 1
        try:
            if self.depth > self.limits.max_depth:
                raise DecodeError(f"tuples nested deeper than {self.limits.max_depth}")
            items = self.unpack(data)
        finally:
            self.depth -= 1
        if type(items) is not list:
            raise DecodeError("an extension must hold an array")
        if code == USER_VALUE_EXT_CODE:
            return _user_value_reader[0](items, self.limits)
        return tuple(items)


def _guarded(data: object, limits: Limits, build: Callable[[Wire, Limits], Any]) -> Any:
    """Unpack ``data`` under ``limits`` and ``build`` a result; only DecodeError escapes.

    Raises:
        DecodeError: for anything that is not bytes, is over the size limit, is not
            msgpack, or that ``build`` refuses.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"decode needs bytes, not {type(data).__name__}")
    size = memoryview(data).nbytes  # a memoryview's len() counts items, not bytes
    if size > limits.max_bytes:
        raise DecodeError(f"input of {size} bytes exceeds the limit of {limits.max_bytes}")
    try:
        return build(_Reader(limits, size).unpack(bytes(data)), limits)
    except DecodeError:
        raise
    except (
        ValueError,
        TypeError,
        KeyError,
        IndexError,
        OverflowError,
        RecursionError,
        msgpack.UnpackException,
    ) as exc:
        # msgpack's ExtraData, FormatError and StackError are ValueErrors, its other
        # errors UnpackExceptions; shape errors surface as TypeError/ValueError from
        # unpacking. All mean "not a valid state".
        raise DecodeError(f"malformed input: {type(exc).__name__}: {exc!s:.200}") from None
    except MemoryError:
        raise DecodeError("input would not fit in memory") from None

"""msgpack unpacking under the limits, and the one place decode errors are translated."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgpack

from crdtgossip._codec.limits import EXT_COPY_FACTOR, TUPLE_EXT_CODE, Limits, Wire
from crdtgossip.errors import DecodeError


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
        return msgpack.unpackb(
            data,
            raw=False,
            use_list=True,
            strict_map_key=True,
            ext_hook=self._ext_hook,
            max_str_len=limits.max_str_len,
            max_bin_len=limits.max_str_len,
            max_array_len=limits.max_collection_len,
            max_map_len=limits.max_collection_len,
            max_ext_len=limits.max_str_len,
        )

    def _ext_hook(self, code: int, data: bytes) -> tuple[Any, ...]:
        if code != TUPLE_EXT_CODE:
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
            raise DecodeError("a tuple extension must hold an array")
        return tuple(items)


def _guarded(data: object, limits: Limits, build: Callable[[Wire, Limits], Any]) -> Any:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise DecodeError(f"decode needs bytes, not {type(data).__name__}")
    if len(data) > limits.max_bytes:
        raise DecodeError(f"input of {len(data)} bytes exceeds the limit of {limits.max_bytes}")
    try:
        return build(_Reader(limits, len(data)).unpack(bytes(data)), limits)
    except DecodeError:
        raise
    except (ValueError, TypeError, KeyError, IndexError, OverflowError, RecursionError) as exc:
        # msgpack's ExtraData, FormatError and StackError are ValueErrors; shape errors
        # surface as TypeError/ValueError from unpacking. All mean "not a valid state".
        raise DecodeError(f"malformed input: {type(exc).__name__}: {exc!s:.200}") from None
    except MemoryError:
        raise DecodeError("input would not fit in memory") from None

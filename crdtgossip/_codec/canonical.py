"""Strict decoding: bytes that ``encode`` would not have written are refused.

The check re-encodes what was decoded and compares the bytes. It is exact by
construction (the encoder defines the canonical form; no second description of it can
drift), it covers everything at once (element and row order, duplicates, the width of
every integer and header, float64 for every float, key order in dict values, compacted
causal contexts, registered types' bodies), and it costs one encode per decode, which
for the types' usual shapes is a fraction of the decode itself (see docs/stability.rst
for the measured figures).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crdtgossip._codec.limits import Limits, Wire
from crdtgossip._codec.reader import _guarded
from crdtgossip._codec.user import OLDER_BODIES
from crdtgossip._codec.values import ENCODE_MAX_DEPTH
from crdtgossip.errors import DecodeError, EncodeError


def _first_difference(left: bytes, right: bytes) -> int:
    for index, (a, b) in enumerate(zip(left, right, strict=False)):
        if a != b:
            return index
    return min(len(left), len(right))


def decode_strict(
    data: object,
    limits: Limits,
    build: Callable[[Wire, Limits], Any],
    encode: Callable[[Any], bytes],
) -> Any:
    """Decode ``data`` with ``build`` and refuse it unless ``encode`` gives it back.

    Bodies of registered types in an older body version are upgraded: then the input
    cannot come back byte for byte, and the re-encoding (in the current version) must
    itself decode strictly to the same bytes instead.

    Raises:
        DecodeError: anything :func:`_guarded` refuses, or input in another form than
            the canonical one.
    """
    older: list[str] = []
    token = OLDER_BODIES.set(older)
    try:
        state = _guarded(data, limits, build)
    finally:
        OLDER_BODIES.reset(token)
    depth = ENCODE_MAX_DEPTH.set(max(limits.max_depth, ENCODE_MAX_DEPTH.get()))
    try:
        again = encode(state)
    except EncodeError as exc:
        raise DecodeError(f"decoded a state that cannot be written back: {exc}") from None
    finally:
        ENCODE_MAX_DEPTH.reset(depth)
    original = bytes(data)  # type: ignore[call-overload]  # _guarded accepted it as bytes
    if again == original:
        return state
    if older:
        decode_strict(again, limits, build, encode)  # the upgrade must be canonical
        return state
    offset = _first_difference(again, original)
    raise DecodeError(
        f"not in canonical form: differs at byte {offset} from what encode writes for the "
        "same state (reordered, duplicated or unsorted items, a wider integer, header or "
        "float than needed, or an uncompacted causal context)"
    )

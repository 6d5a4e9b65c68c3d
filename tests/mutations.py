"""Random edits of encoded bytes, for hostile-input tests: each edit overwrites a byte,
inserts one, truncates, or splices in a piece of the input itself."""

from __future__ import annotations

import random


def mutated(data: bytes, seed: int, edits: int, *, keep: int = 0) -> bytes:
    """``data`` after ``edits`` random edits drawn from ``seed``; the first ``keep``
    bytes (a mark the decoder looks at first, say) are left as they are."""
    rng = random.Random(seed)
    out = bytearray(data)
    for _ in range(edits):
        where = rng.randrange(keep, len(out) + 1)
        match rng.randrange(4):
            case 0 if where < len(out):
                out[where] = rng.randrange(256)  # overwrite a byte
            case 1:
                out.insert(where, rng.randrange(256))
            case 2:
                del out[where:]  # truncate
            case _:
                out[where:where] = out[rng.randrange(keep, len(out) + 1) :][:8]  # splice
    return bytes(out)

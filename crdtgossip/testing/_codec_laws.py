"""The codec laws: a state survives a round trip, and equal states have equal bytes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from crdtgossip.codec import decode, encode, registration_of
from crdtgossip.crdts import CRDT, LWWMap, ORMap
from crdtgossip.testing._law import Law, _violation, join, strictly_equal

__all__ = ["assert_canonical_encoding", "assert_codec_round_trip", "assert_registered_codec"]

S = TypeVar("S", bound=CRDT)


def assert_codec_round_trip(
    state: S, encode: Callable[[S], bytes], decode: Callable[[bytes], object]
) -> None:
    """Check ``decode(encode(state)) == state``, with the same type and exact value types.

    Also checks that re-encoding the decoded state gives the same bytes.

    Args:
        state: any state.
        encode: the encoder, e.g. :func:`crdtgossip.encode`.
        decode: the matching decoder, e.g. :func:`crdtgossip.decode`.

    Raises:
        AssertionError: :attr:`Law.CODEC_ROUND_TRIP` is violated.
    """
    encoded = encode(state)
    decoded = decode(encoded)
    if type(decoded) is not type(state):
        raise _violation(
            Law.CODEC_ROUND_TRIP,
            f"decoded a {type(decoded).__name__}, encoded a {type(state).__name__}",
            state=state,
            decoded=decoded,
        )
    assert isinstance(decoded, type(state))
    if decoded != state:
        raise _violation(Law.CODEC_ROUND_TRIP, "decode(encode(s)) != s", s=state, decoded=decoded)
    if not strictly_equal(decoded.value, state.value):
        raise _violation(
            Law.CODEC_ROUND_TRIP,
            "the decoded value differs in its types",
            value=state.value,
            decoded_value=decoded.value,
        )
    if encode(decoded) != encoded:
        raise _violation(
            Law.CODEC_ROUND_TRIP,
            "encode(decode(encode(s))) != encode(s)",
            s=state,
            encoded=encoded,
            reencoded=encode(decoded),
        )


def assert_canonical_encoding(a: S, b: S, encode: Callable[[S], bytes]) -> None:
    """Check that the encoding is canonical for ``a`` and ``b``.

    ``encode(a ⊔ b) == encode(b ⊔ a)``, and when ``a == b``, ``encode(a) == encode(b)``.

    Args:
        a: a state.
        b: a state of the same type.
        encode: the encoder, e.g. :func:`crdtgossip.encode`.

    Raises:
        AssertionError: :attr:`Law.CANONICAL_ENCODING` is violated.
    """
    ab, ba = join(a, b), join(b, a)
    if ab == ba and encode(ab) != encode(ba):
        raise _violation(
            Law.CANONICAL_ENCODING,
            "encode(a ⊔ b) != encode(b ⊔ a) although the joins are equal",
            a=a,
            b=b,
            a_join_b=encode(ab),
            b_join_a=encode(ba),
        )
    if a == b and encode(a) != encode(b):
        raise _violation(
            Law.CANONICAL_ENCODING,
            "equal states encode to different bytes",
            a=a,
            b=b,
            encoded_a=encode(a),
            encoded_b=encode(b),
        )


def _absorb(nested: S, state: S) -> S:
    """An ORMap update function that makes ``nested`` hold ``state``; returns the delta."""
    nested.merge(state)
    return state.copy()


def assert_registered_codec(state: S) -> None:
    """Check a registered type's codec where it nests: as an ORMap value, in an LWWMap.

    :func:`assert_codec_round_trip` covers the top level; a type registered with
    :func:`crdtgossip.register_type` also travels as the value type of an ``ORMap`` (its
    body under each presence dot) and inside values (an extension in an ``LWWMap``
    value). Both must round-trip canonically too. Types that are not registered are
    not checked here.

    Args:
        state: a state of a registered type.

    Raises:
        AssertionError: :attr:`Law.CODEC_ROUND_TRIP` is violated.
    """
    if registration_of(type(state)) is None:
        return
    nested: ORMap[str] = ORMap(type(state))
    nested.update("key", "laws", lambda value: _absorb(value, state))
    assert_codec_round_trip(nested, encode, decode)
    in_value: LWWMap[str, object] = LWWMap()
    in_value.set("key", state, "laws", timestamp=1)
    assert_codec_round_trip(in_value, encode, decode)
    twice = join(nested, nested)
    assert_canonical_encoding(twice, nested, encode)

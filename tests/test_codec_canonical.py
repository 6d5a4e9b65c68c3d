"""Strict decoding: any input that encode would not write is a DecodeError.

So equal states and equal bytes are the same thing, wherever the bytes came from.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from typing import Any

import msgpack
import pytest

from crdtgossip import (
    DecodeError,
    EncodeError,
    GSet,
    LWWMap,
    LWWRegister,
    OperationError,
    ORMap,
    ORSet,
    decode,
    encode,
)
from crdtgossip._codec.limits import DEFAULT_LIMITS
from crdtgossip._codec.reader import _guarded
from crdtgossip.codec import FORMAT_VERSION, _read_top, decode_value, encode_value
from tests import canonical_mutants
from tests.maxregister import registered

#: How many mutants of valid encodings the suite decodes (10^6 ran once outside it,
#: with ``python -m tests.canonical_mutants``); seeded, so the same every run.
SUITE_MUTANTS = 20_000


@pytest.fixture(autouse=True)
def max_register() -> Iterator[None]:
    with registered():
        yield


def _pack(wire: object) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]


def _lax_decode(data: bytes) -> Any:
    """The decoder without its final canonical check."""
    return _guarded(data, DEFAULT_LIMITS, _read_top)


def _gset(*elements: object) -> GSet[Any]:
    gset: GSet[Any] = GSet()
    for element in elements:
        gset.add(element)
    return gset


_GSET = encode(_gset("a", "b", 7))


def _lwwmap() -> bytes:
    lww_map: LWWMap[str, int] = LWWMap()
    lww_map.set("a", 1, "r", timestamp=1)
    lww_map.set("b", 2, "r", timestamp=2)
    return encode(lww_map)


def _reversed_rows(data: bytes) -> bytes:
    version, tag, rows = msgpack.unpackb(data)
    return _pack([version, tag, rows[::-1]])


@pytest.mark.parametrize(
    ("name", "canonical", "variant"),
    [
        ("a G-Set in reverse order", _GSET, _reversed_rows(_GSET)),
        ("LWWMap rows reversed", _lwwmap(), _reversed_rows(_lwwmap())),
        (
            "a wider integer",
            _pack([1, 1, [["a", 5]]]),
            _pack([1, 1, [["a"]]])[:-1] + b"\xa1a\xcd\x00\x05",
        ),
        (
            "a float32 for a float64",
            encode(_gset(1.5)),
            encode(_gset(1.5))[:-9] + b"\xca\x3f\xc0\x00\x00",
        ),
        ("a str8 header for a fixstr", encode(_gset("x")), encode(_gset("x"))[:-2] + b"\xd9\x01x"),
        ("an array16 header", encode(_gset("x")), encode(_gset("x"))[:3] + b"\xdc\x00\x01\xa1x"),
        ("an uncompacted dot cloud", None, _pack([1, 4, [[["r", 1, [2]]], []]])),
    ],
)
def test_non_canonical_forms_named_by_the_issue_are_refused(
    name: str, canonical: bytes | None, variant: bytes
) -> None:
    if canonical is not None:
        assert decode(canonical) is not None
        assert variant != canonical
    with pytest.raises(DecodeError):
        decode(variant)


def test_unsorted_dict_keys_in_a_value_are_refused() -> None:
    register: LWWRegister[Any] = LWWRegister()
    register.set({"a": 1, "b": 2}, "r", timestamp=1)
    data = encode(register)
    swapped = data.replace(b"\x82\xa1a\x01\xa1b\x02", b"\x82\xa1b\x02\xa1a\x01")
    assert swapped != data
    assert _lax_decode(swapped) == register  # the same state: only the form differs
    with pytest.raises(DecodeError, match="canonical"):
        decode(swapped)
    assert decode_value(encode_value({"a": 1, "b": 2})) == {"a": 1, "b": 2}
    with pytest.raises(DecodeError, match="canonical"):
        decode_value(b"\x82\xa1b\x02\xa1a\x01")


def test_a_duplicate_element_is_refused() -> None:
    with pytest.raises(DecodeError):
        decode(_pack([FORMAT_VERSION, 3, ["a", "a"]]))


# ---- issue 18 item 6: equal states, equal bytes ---------------------------------------

_EQUAL_BUT_OTHER_TYPES: list[tuple[object, object]] = [
    (1, True),
    (0, False),
    (0.0, -0.0),
    (0, -0.0),
    ((1, "x"), (True, "x")),
]


@pytest.mark.parametrize(("left", "right"), _EQUAL_BUT_OTHER_TYPES, ids=repr)
def test_equal_keys_of_other_types_are_refused_where_one_of_them_is_kept(
    left: object, right: object
) -> None:
    assert left == right
    assert hash(left) == hash(right)
    refused = right if _refused(right) else left
    kept = left if refused is right else right
    # G-Set elements, LWWMap keys and ORMap keys: the container keeps one of the two,
    # whichever came first, so a replica with {1} and one with {True} would hold equal
    # states with other bytes. The mutators refuse them ...
    with pytest.raises(OperationError, match="equal states have equal bytes"):
        GSet[Any]().add(refused)
    with pytest.raises(OperationError, match="equal states have equal bytes"):
        LWWMap[Any, int]().set(refused, 1, "r", timestamp=1)
    with pytest.raises(OperationError, match="equal states have equal bytes"):
        ORMap[Any](ORSet).update(refused, "r", lambda nested: nested.add("x", "r"))
    # ... a state that holds one all the same cannot be encoded ...
    with pytest.raises(EncodeError, match="equal states have equal bytes"):
        encode(GSet._from_elements({refused}))
    # ... and the decoder refuses them from outside.
    with pytest.raises(DecodeError, match="equal states have equal bytes"):
        decode(_pack([FORMAT_VERSION, 3, [_wire(refused)]]))
    if not _refused(kept):
        assert decode(encode(_gset(kept))) == _gset(kept)


def test_an_int_and_an_equal_float_collapse_but_digest_alike() -> None:
    # Allowed (a timestamp is a float, a count an int: keep one type per position), and
    # documented: replicas holding {1} and {1.0} are equal, and anti-entropy's digests
    # say so, so they are not exchanged forever.
    ints, floats = GSet[Any](), GSet[Any]()
    ints.add((1, "x"))
    floats.add((1.0, "x"))
    assert ints == floats
    assert ints._digest() == floats._digest()
    assert decode(encode(floats)) == floats


def _refused(value: object) -> bool:
    if isinstance(value, tuple):
        return any(map(_refused, value))
    return type(value) is bool or (
        type(value) is float and value == 0.0 and math.copysign(1.0, value) < 0
    )


def _wire(value: object) -> object:
    if isinstance(value, tuple):
        return msgpack.ExtType(1, _pack([_wire(item) for item in value]))
    return value


def test_orset_elements_and_values_keep_bools_and_floats() -> None:
    # Stored by their dots, they never collapse: both replicas keep both writes.
    orset: ORSet[Any] = ORSet()
    orset.add(True, "a")
    orset.add(-0.0, "b")
    assert decode(encode(orset)) == orset
    register: LWWRegister[Any] = LWWRegister()
    register.set([True, -0.0, 1.0, math.inf], "r", timestamp=1)
    assert decode(encode(register)) == register


# ---- the mutation fuzzer ----------------------------------------------------------------


def test_every_mutant_of_a_valid_encoding_is_refused_or_canonical() -> None:
    tally = canonical_mutants.run(SUITE_MUTANTS, seed=1)
    assert tally.accepted == []
    assert tally.mutants == SUITE_MUTANTS
    # Each kind of mutation happened, and most order mutations broke the state.
    assert tally.form_refused > SUITE_MUTANTS // 3
    assert tally.order_refused > 10 * tally.order_canonical


def test_the_form_mutants_are_the_same_states_to_a_lax_decoder() -> None:
    # The fuzzer is only worth something if its form mutants get past everything but
    # the canonical check: without it, nearly all decode to the state they came from.
    same = total = 0
    for mutation, source, mutant in _take(canonical_mutants.mutants(seed=2), 2_000):
        if mutation not in canonical_mutants.FORM_MUTATIONS:
            continue
        total += 1
        with contextlib.suppress(DecodeError):
            same += _lax_decode(mutant) == decode(source)
    assert total > 500
    assert same > 0.95 * total


def _take(
    items: Iterator[tuple[str, bytes, bytes]], count: int
) -> Iterator[tuple[str, bytes, bytes]]:
    for index, item in enumerate(items):
        if index >= count:
            return
        yield item


def test_the_writer_is_msgpacks_without_a_mutation() -> None:
    for data in (_GSET, _lwwmap(), encode_value({"k": [1.5, b"x", (None, -(2**63))]})):
        assert canonical_mutants.write(canonical_mutants.parse(data)) == data

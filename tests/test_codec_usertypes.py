"""Users' own types on the wire: registration, nesting, versions and hostile bodies."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, Self

import msgpack
import pytest

from crdtgossip import (
    Body,
    ConfigError,
    DecodeError,
    EncodeError,
    GCounter,
    LWWMap,
    LWWRegister,
    MVRegister,
    OperationError,
    ORMap,
    ORSet,
    decode,
    encode,
    register_type,
    unregister_type,
)
from crdtgossip.codec import (
    FORMAT_VERSION,
    USER_TAG_MAX,
    USER_TAG_MIN,
    USER_VALUE_EXT_CODE,
    Limits,
    decode_value,
    encode_value,
    registration_of,
)
from crdtgossip.crdts import CausalContext
from crdtgossip.testing import assert_codec_round_trip, assert_registered_codec
from tests.maxregister import MAX_REGISTER_TAG, MaxRegister, registered


@pytest.fixture(autouse=True)
def max_register() -> Iterator[None]:
    with registered():
        yield


def _unused(state: Any) -> Any:
    """An encode_body for registrations refused before it could run."""
    return state


def _unused_decoder(body: Body, version: int) -> Any:
    """A decode_body for registrations refused before it could run."""
    return body


def _register(value: int) -> MaxRegister:
    register = MaxRegister()
    register.write(value)
    return register


def _pack(wire: object) -> bytes:
    return msgpack.packb(wire, use_bin_type=True)  # type: ignore[no-any-return]


def _top(body: object, version: object = 1, tag: int = MAX_REGISTER_TAG) -> bytes:
    return _pack([FORMAT_VERSION, tag, [version, body]])


class Pair:
    """A second user type: two registers' maxima, body ``[left, right]`` (version 2) or
    a bare int (version 1, both sides equal), to test versions."""

    def __init__(self, left: int = 0, right: int = 0) -> None:
        self.left, self.right = left, right

    @property
    def value(self) -> tuple[int, int]:
        return (self.left, self.right)

    def merge(self, other: Self) -> None:
        self.left, self.right = max(self.left, other.left), max(self.right, other.right)

    def copy(self) -> Self:
        return type(self)(self.left, self.right)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pair) and self.value == other.value

    __hash__ = None  # type: ignore[assignment]  # mutable


def _decode_pair(body: Body, version: int) -> Pair:
    if version == 1:
        both = body.as_int(minimum=0)
        return Pair(both, both)
    left, right = body.as_list(2)
    return Pair(left.as_int(minimum=0), right.as_int(minimum=0))


@pytest.fixture
def pair() -> Iterator[None]:
    register_type(
        Pair,
        tag=USER_TAG_MAX,
        version=2,
        encode_body=lambda p: [p.left, p.right],
        decode_body=_decode_pair,
    )
    yield
    unregister_type(Pair)


# ---- registration -----------------------------------------------------------------------


def test_a_registered_type_encodes_under_its_tag_with_a_versioned_body() -> None:
    assert encode(_register(5)) == _top(5)
    assert decode(_top(5)) == _register(5)
    assert registration_of(MaxRegister) is not None
    assert registration_of(MaxRegister).tag == MAX_REGISTER_TAG  # type: ignore[union-attr]


def test_duplicates_are_refused_with_a_clear_config_error() -> None:
    with pytest.raises(ConfigError, match="registered already"):
        register_type(
            MaxRegister, tag=MAX_REGISTER_TAG + 1, encode_body=_unused, decode_body=_unused_decoder
        )

    class Other(MaxRegister):
        pass

    with pytest.raises(ConfigError, match="taken by MaxRegister"):
        register_type(Other, tag=MAX_REGISTER_TAG, encode_body=_unused, decode_body=_unused_decoder)
    assert registration_of(Other) is None


@pytest.mark.parametrize("tag", [0, 1, 9, USER_TAG_MIN - 1, USER_TAG_MAX + 1, True, 1024.0])
def test_tags_outside_the_users_range_are_refused(tag: Any) -> None:
    class Other(MaxRegister):
        pass

    with pytest.raises(ConfigError, match="range"):
        register_type(Other, tag=tag, encode_body=_unused, decode_body=_unused_decoder)


@pytest.mark.parametrize("kind", [GCounter, ORSet, ORMap, LWWRegister])
def test_built_in_types_and_their_subclasses_cannot_be_registered(kind: type[Any]) -> None:
    subclass = type("Sub", (kind,), {})
    for cls in (kind, subclass):
        with pytest.raises(ConfigError, match="crdtgossip type"):
            register_type(cls, tag=2000, encode_body=_unused, decode_body=_unused_decoder)


def test_what_is_not_a_crdt_or_cannot_be_built_empty_is_refused() -> None:
    class NoMerge:
        value = 0

        def copy(self) -> Self:
            return self

    class NeedsArguments(MaxRegister):
        def __init__(self, value: int) -> None:
            super().__init__(value)

    cases: list[tuple[Any, int, str]] = [
        (NoMerge, 1, "not a CRDT"),
        (NeedsArguments, 1, "empty state"),
        (_register(1), 1, "needs a class"),
        (type("V", (MaxRegister,), {}), 0, "version"),
    ]
    for cls, version, message in cases:
        with pytest.raises(ConfigError, match=message):
            register_type(
                cls, tag=2000, version=version, encode_body=_unused, decode_body=_unused_decoder
            )


def test_unregister_forgets_and_refuses_what_is_not_registered() -> None:
    unregister_type(MaxRegister)
    with pytest.raises(EncodeError, match="register_type"):
        encode(_register(1))
    with pytest.raises(DecodeError, match="unknown type tag"):
        decode(_top(1))
    with pytest.raises(ConfigError, match="not registered"):
        unregister_type(MaxRegister)
    register_type(  # for the fixture to unregister
        MaxRegister,
        tag=MAX_REGISTER_TAG,
        encode_body=lambda r: r.value,
        decode_body=lambda b, v: MaxRegister(b.as_int()),
    )


# ---- nesting ----------------------------------------------------------------------------


def test_an_ormap_of_a_registered_type_round_trips() -> None:
    scores: ORMap[str] = ORMap(MaxRegister)
    scores.update("alice", "r1", lambda register: register.write(7))
    scores.update("bob", "r2", lambda register: register.write(3))
    other = scores.copy()
    scores.update("alice", "r2", lambda register: register.write(9))
    other.merge(scores.remove("bob"))
    scores.merge(other)
    assert_codec_round_trip(scores, encode, decode)
    assert decode(encode(scores)).value == {"alice": 9}

    deep: ORMap[str] = ORMap(ORMap(MaxRegister))
    deep.update("k", "r1", lambda inner: inner.update("j", "r1", lambda r: r.write(4)))
    assert_codec_round_trip(deep, encode, decode)


def test_registered_types_travel_inside_values() -> None:
    lww_map: LWWMap[str, Any] = LWWMap()
    lww_map.set("best", _register(8), "r1", timestamp=3)
    lww_map.set("both", [_register(1), {"x": _register(2)}], "r1", timestamp=4)
    assert_codec_round_trip(lww_map, encode, decode)
    assert decode(encode(lww_map)).value["both"][1]["x"] == _register(2)

    register: LWWRegister[Any] = LWWRegister()
    register.set(_register(3), "r1", timestamp=1)
    assert_codec_round_trip(register, encode, decode)
    multi: MVRegister[Any] = MVRegister()
    multi.set(_register(4), "r1")
    assert_codec_round_trip(multi, encode, decode)

    data = encode_value(_register(6))
    assert data == _pack(msgpack.ExtType(USER_VALUE_EXT_CODE, _pack([MAX_REGISTER_TAG, 1, 6])))
    assert decode_value(data) == _register(6)


def test_the_law_checkers_codec_check_covers_the_nestings() -> None:
    assert_registered_codec(_register(12))


def test_a_registered_type_is_no_element_or_key() -> None:
    class Hashable(MaxRegister):
        def __hash__(self) -> int:  # type: ignore[override]
            return self._value

    register_type(
        Hashable,
        tag=3000,
        encode_body=lambda r: r.value,
        decode_body=lambda b, v: Hashable(b.as_int()),
    )
    try:
        orset: ORSet[Any] = ORSet()
        with pytest.raises(OperationError, match="not supported"):
            orset.add(Hashable(1), "r")  # the mutator refuses it first
        orset._context = CausalContext.from_dots([("r", 1)])
        orset._dots = {"r": {1: Hashable(1)}}  # a state that holds one all the same
        with pytest.raises(EncodeError, match="not hashable"):
            encode(orset)
        element = msgpack.ExtType(USER_VALUE_EXT_CODE, _pack([3000, 1, 1]))
        with pytest.raises(DecodeError, match="hashable"):
            decode(_pack([FORMAT_VERSION, 3, [element]]))  # a G-Set holding it
    finally:
        unregister_type(Hashable)


# ---- versions ---------------------------------------------------------------------------


def test_older_body_versions_are_read_and_newer_ones_refused(pair: None) -> None:
    assert decode(_top(5, version=1, tag=USER_TAG_MAX)) == Pair(5, 5)
    assert encode(Pair(5, 5)) == _top([5, 5], version=2, tag=USER_TAG_MAX)
    assert decode(_top([1, 2], version=2, tag=USER_TAG_MAX)) == Pair(1, 2)
    for version in (3, 0, -1, "2", 2**64 - 1):
        with pytest.raises(DecodeError, match="version"):
            decode(_top([1, 2], version=version, tag=USER_TAG_MAX))


def test_an_older_body_inside_an_ormap_is_upgraded(pair: None) -> None:
    pairs: ORMap[str] = ORMap(Pair)
    pairs.update("k", "r", lambda p: (p.merge(Pair(3, 3)), Pair(3, 3))[1])
    current = encode(pairs)
    written_by_version_1 = current.replace(_pack([2, [3, 3]]), _pack([1, 3]))
    assert written_by_version_1 != current
    assert decode(written_by_version_1) == pairs


# ---- hostile and non-canonical bodies ---------------------------------------------------

_HOSTILE_BODIES = {
    "a str": "5",
    "a negative int": -1,
    "a bool": True,
    "a float": 5.0,
    "an array": [5],
    "nil": None,
    "a map": {"value": 5},
}


@pytest.mark.parametrize("name", _HOSTILE_BODIES)
def test_a_body_of_another_kind_is_a_decode_error(name: str) -> None:
    data = _top(_HOSTILE_BODIES[name])
    with pytest.raises(DecodeError, match="MaxRegister"):
        decode(data)
    ormap = _pack(
        [
            FORMAT_VERSION,
            9,
            [
                [MAX_REGISTER_TAG],
                [["r", 1, []]],
                [["k", [["r", 1, [1, _HOSTILE_BODIES[name]]]], None]],
            ],
        ]
    )
    with pytest.raises(DecodeError):
        decode(ormap)


@pytest.mark.parametrize(
    "wire",
    [
        [1, 5, 6],  # three items
        5,  # no version
        [],  # empty
    ],
)
def test_a_malformed_versioned_body_is_a_decode_error(wire: object) -> None:
    with pytest.raises(DecodeError):
        decode(_pack([FORMAT_VERSION, MAX_REGISTER_TAG, wire]))


def test_what_decode_body_raises_becomes_a_decode_error() -> None:
    def bad(body: Body, version: int) -> MaxRegister:
        return MaxRegister(100 // body.as_int())  # ZeroDivisionError on 0

    class Fragile(MaxRegister):
        pass

    register_type(Fragile, tag=3001, encode_body=lambda r: r.value, decode_body=bad)  # type: ignore[arg-type]
    try:
        with pytest.raises(DecodeError, match="ZeroDivisionError"):
            decode(_top(0, tag=3001))
    finally:
        unregister_type(Fragile)


def test_decode_body_must_return_the_registered_class() -> None:
    class Liar(MaxRegister):
        pass

    def wrong_class(body: Body, version: int) -> Any:
        return MaxRegister()

    register_type(Liar, tag=3002, encode_body=lambda r: r.value, decode_body=wrong_class)
    try:
        with pytest.raises(DecodeError, match="returned a MaxRegister"):
            decode(_top(0, tag=3002))
    finally:
        unregister_type(Liar)


def test_a_body_in_a_wider_form_than_written_is_refused() -> None:
    canonical = _top(5)
    widened = canonical[:-1] + b"\xcd\x00\x05"  # 5 as a uint16
    assert msgpack.unpackb(widened) == msgpack.unpackb(canonical)
    with pytest.raises(DecodeError, match="canonical"):
        decode(widened)


def test_a_body_past_the_limits_never_reaches_decode_body() -> None:
    calls: list[object] = []

    class Texts(MaxRegister):
        pass

    def decode_texts(body: Body, version: int) -> Texts:
        calls.append(body.raw)
        return Texts()

    register_type(Texts, tag=3003, encode_body=lambda r: "", decode_body=decode_texts)
    try:
        with pytest.raises(DecodeError):
            decode(_top("x" * 2_000, tag=3003), limits=Limits(max_str_len=1_000))
        assert calls == []
        assert decode(_top("", tag=3003)) == Texts()
    finally:
        unregister_type(Texts)


def test_what_encode_body_raises_or_returns_wrongly_is_an_encode_error() -> None:
    class Broken(MaxRegister):
        pass

    def explode(register: Broken) -> object:
        raise RuntimeError("boom")

    register_type(Broken, tag=3004, encode_body=explode, decode_body=lambda b, v: Broken())
    try:
        with pytest.raises(EncodeError, match="boom"):
            encode(Broken())
    finally:
        unregister_type(Broken)
    register_type(Broken, tag=3004, encode_body=lambda r: {1: 2}, decode_body=lambda b, v: Broken())
    try:
        with pytest.raises(EncodeError, match="str keys"):
            encode(Broken())
        with pytest.raises(EncodeError):
            encode_value([Broken()])
    finally:
        unregister_type(Broken)


def test_body_accessors_check_kind_and_range() -> None:
    assert Body(3).as_int(minimum=0, maximum=3) == 3
    assert Body(1.5).as_float() == 1.5
    assert Body(True).as_bool() is True
    assert Body("r").as_replica() == "r"
    assert Body(b"x").as_bytes() == b"x"
    assert Body({"a": 1}).as_dict()["a"].as_int() == 1
    assert Body([1, (2,)]).as_value() == [1, (2,)]
    assert Body((1, "x")).as_element() == (1, "x")
    assert Body(None).is_none()
    refusals: list[Callable[[], object]] = [
        lambda: Body(4).as_int(maximum=3),
        lambda: Body(True).as_int(),
        lambda: Body(1).as_float(),
        lambda: Body(1).as_bool(),
        lambda: Body("").as_str(allow_empty=False),
        lambda: Body("").as_replica(),
        lambda: Body("x").as_bytes(),
        lambda: Body([1]).as_list(2),
        lambda: Body({1: 1}).as_dict(),
        lambda: Body([[1]]).as_element(),
        lambda: Body(object()).as_value(),
    ]
    for refusal in refusals:
        with pytest.raises(DecodeError):
            refusal()


def test_a_value_of_an_unknown_registered_tag_is_refused() -> None:
    unknown = msgpack.ExtType(USER_VALUE_EXT_CODE, _pack([4000, 1, 0]))
    with pytest.raises(DecodeError, match="unknown tag"):
        decode_value(_pack(unknown))
    with pytest.raises(DecodeError):
        decode_value(_pack(msgpack.ExtType(USER_VALUE_EXT_CODE, _pack(5))))


class Plain(MaxRegister):
    """A MaxRegister whose repr holds its id: no help in comparing values."""

    __repr__ = object.__repr__


def test_values_of_a_registered_type_compare_by_state_not_identity() -> None:
    register_type(
        Plain,
        tag=3005,
        encode_body=lambda r: r.value,
        decode_body=lambda body, version: Plain(body.as_int()),
    )
    try:
        lww_map: LWWMap[str, Any] = LWWMap()
        lww_map.set("k", Plain(3), "r", timestamp=1)
        assert decode(encode(lww_map)) == lww_map
        other: LWWMap[str, Any] = LWWMap()
        other.set("k", Plain(4), "r", timestamp=1)  # the same stamp: the larger encoding wins
        left, right = lww_map.copy(), other.copy()
        left.merge(other)
        right.merge(lww_map)
        assert left == right
        assert encode(left) == encode(right)
    finally:
        unregister_type(Plain)

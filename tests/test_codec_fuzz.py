"""Decode fuzzing: over 100,000 inputs, each either a valid state or a DecodeError.

Inputs are mutations of valid encodings of every type (bit flips, byte replacement,
insertion, deletion, truncation, splices of two encodings, duplicated ranges, and
edits of the decoded msgpack structure, re-packed, which reach the state validation
past msgpack's own checks) and pure random bytes. Every input is drawn from
``random.Random`` with a fixed seed, and each case from its own seed, so a failure
names the seed, the case and the input in hex, and replays alone.

For every input, :func:`decode` either raises :class:`~crdtgossip.DecodeError` (nothing
else), or returns one of the nine types whose state behaves: its value reads, it
re-encodes, re-decodes to an equal state and re-encodes to the same bytes, and merging
it into a fresh empty instance of its type (and with the state it was mutated from)
raises nothing and gives what the laws say.

Hypothesis adds a few thousand arbitrary byte strings and msgpack structures.
"""

from __future__ import annotations

import functools
import math
import random
import traceback
import tracemalloc
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip import (
    DecodeError,
    EWFlag,
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    MergeError,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    decode,
    encode,
)
from crdtgossip.codec import FORMAT_VERSION, TUPLE_EXT_CODE, Limits, decode_value
from tests.test_codec import FACTORIES

#: The seed every corpus and case seed derives from; change it to explore new inputs.
BASE_SEED = 20_240_601

#: Mutated inputs per corpus (one corpus per type below) and pure random inputs: the
#: issue asks for at least 100,000 decoded inputs in the suite.
MUTATIONS_PER_CORPUS = 5_000
RANDOM_INPUTS = 16_000
REQUIRED_INPUTS = 100_000

#: Valid encodings per corpus: final states and deltas of a few random histories.
HISTORIES_PER_CORPUS = 4
STEPS_PER_HISTORY = 30

#: Hypothesis examples per property (a few thousand in all). Arbitrary bytes are cheap
#: to draw; msgpack structures cost more, and reach the validation every time.
BYTES_EXAMPLES = 3_000
STRUCTURE_EXAMPLES = 400

#: The longest random input: enough for every layout's header and a few items.
MAX_RANDOM_LENGTH = 96

#: Byte-level mutations stacked on one input: 0 to 3, one most often. Each mutation
#: mostly breaks the msgpack framing; a single one keeps more inputs near a valid shape.
MAX_STACKED = 3
STACKED_WEIGHTS = (2, 5, 2, 1)

#: Part of the inputs that start with an edit of the msgpack structure (which keeps the
#: framing valid, so the state validation gets the input).
WIRE_EDIT_SHARE = 0.4

#: Part of the mutated inputs that a working fuzzer gets past msgpack to the state
#: validation (rejected with a validation message) and part it decodes: well below what
#: the corpora reach (measured: 16-21 % and 2-9 % per type), well above zero.
MIN_VALIDATION_SHARE = 0.05
MIN_DECODED_SHARE = 0.01

REPLICAS = ("a", "b", "c")

NINE_TYPES = (GCounter, PNCounter, GSet, ORSet, EWFlag, LWWRegister, MVRegister, LWWMap, ORMap)

# Elements of one type each (no 1 next to True or 1.0: Python would call them equal).
ELEMENTS: tuple[object, ...] = ("x", "y", "", b"z", 7, -3, 2**63, 2.5, None, (1, "t"), ((),))
VALUES: tuple[object, ...] = (
    *ELEMENTS,
    [1, True, 1.0],
    {"k": [b"v", (2,)], "j": {}},
    [],
    -0.0,
    math.inf,
)

# msgpack type bytes and boundary values, the likeliest to turn into a new shape.
INTERESTING_BYTES = bytes.fromhex(
    "00 01 7f 80 81 8f 90 91 93 9f a0 a1 bf c0 c1 c2 c3 c4 c5 c6 c7 c8 c9 ca cb cc cd ce"
    " cf d0 d3 d4 d5 d8 d9 da db dc dd de df e0 ff"
)
INTERESTING_LEAVES: tuple[object, ...] = (
    -1,
    0,
    1,
    True,
    False,
    None,
    "",
    "a",
    b"",
    1.5,
    math.nan,
    2**64 - 1,
    -(2**63),
    [],
    {},
    {1: 2},
    [["a", 1]],
    msgpack.ExtType(TUPLE_EXT_CODE, b"\x90"),
    msgpack.ExtType(TUPLE_EXT_CODE, b"\x01"),
    msgpack.ExtType(2, b""),
)


# =========================================================================================
# the corpus: valid encodings from random histories
# =========================================================================================


def _mutate_state(state: Any, replica: str, rng: random.Random) -> Any:
    """Apply one random mutator to ``state`` as ``replica``; return the delta."""
    element = rng.choice(ELEMENTS)
    stamp = rng.choice([None, rng.randrange(5), rng.randrange(2**62)])
    if isinstance(state, GCounter):
        return state.increment(replica, rng.choice([1, rng.randrange(2**32)]))
    if isinstance(state, PNCounter):
        mutator = state.increment if rng.random() < 0.5 else state.decrement
        return mutator(replica, rng.choice([0, 1, rng.randrange(2**32)]))
    if isinstance(state, GSet):
        return state.add(element)
    if isinstance(state, ORSet):
        roll = rng.random()
        if roll < 0.6:
            return state.add(element, replica)
        return state.remove(element) if roll < 0.95 else state.clear()
    if isinstance(state, EWFlag):
        return state.enable(replica) if rng.random() < 0.6 else state.disable()
    if isinstance(state, LWWRegister):
        return state.set(rng.choice(VALUES), replica, stamp)
    if isinstance(state, MVRegister):
        return state.set(rng.choice(VALUES), replica)
    if isinstance(state, LWWMap):
        if rng.random() < 0.7:
            return state.set(element, rng.choice(VALUES), replica, stamp)
        return state.remove(element, replica, stamp)
    if isinstance(state, ORMap):
        key = rng.choice(ELEMENTS[:4])
        if rng.random() < 0.75:
            return state.update(key, replica, lambda nested: _mutate_state(nested, replica, rng))
        return state.remove(key)
    raise AssertionError(f"no mutator for {state!r}")  # pragma: no cover


def _corpus(name: str, seed: int) -> list[tuple[bytes, Any]]:
    """Valid encodings of ``name`` (with the states they encode), from random histories."""
    rng = random.Random(seed)
    factory = FACTORIES[name]
    found: dict[bytes, Any] = {}
    for _ in range(HISTORIES_PER_CORPUS):
        replicas = [factory() for _ in REPLICAS]
        for _ in range(STEPS_PER_HISTORY):
            index = rng.randrange(len(REPLICAS))
            if rng.random() < 0.25:
                replicas[index].merge(rng.choice(replicas))
                continue
            delta = _mutate_state(replicas[index], REPLICAS[index], rng)
            found.setdefault(encode(delta), delta)
        for state in replicas:
            found.setdefault(encode(state), state)
    return list(found.items())


# =========================================================================================
# mutations
# =========================================================================================


def _bit_flip(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    if not data:
        return "bit flip (empty)", data
    bit = rng.randrange(len(data) * 8)
    mutated = bytearray(data)
    mutated[bit // 8] ^= 1 << (bit % 8)
    return f"flip bit {bit}", bytes(mutated)


def _replace_byte(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    if not data:
        return "replace (empty)", data
    at = rng.randrange(len(data))
    byte = rng.choice(INTERESTING_BYTES) if rng.random() < 0.7 else rng.randrange(256)
    return f"byte {at} := {byte:#04x}", data[:at] + bytes([byte]) + data[at + 1 :]


def _insert(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    at = rng.randrange(len(data) + 1)
    if rng.random() < 0.5:
        piece = bytes([rng.choice(INTERESTING_BYTES)])
    else:
        piece = rng.randbytes(rng.randint(1, 8))
    return f"insert {piece.hex()} at {at}", data[:at] + piece + data[at:]


def _delete(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    if not data:
        return "delete (empty)", data
    at = rng.randrange(len(data))
    length = rng.randint(1, min(8, len(data) - at))
    return f"delete {length} at {at}", data[:at] + data[at + length :]


def _truncate(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    length = rng.randrange(len(data) + 1)
    return f"truncate to {length}", data[:length]


def _splice(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    cut = rng.randrange(len(data) + 1)
    resume = rng.randrange(len(other) + 1)
    return f"splice [:{cut}] + other[{resume}:]", data[:cut] + other[resume:]


def _duplicate(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    if not data:
        return "duplicate (empty)", data
    start = rng.randrange(len(data))
    end = rng.randint(start + 1, len(data))
    return f"duplicate [{start}:{end}]", data[:end] + data[start:end] + data[end:]


def _wire_paths(wire: object, path: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    """Every position in a decoded msgpack structure (lists only; maps stay whole)."""
    paths = [path]
    if isinstance(wire, list):
        for index, item in enumerate(wire):
            paths.extend(_wire_paths(item, (*path, index)))
    return paths


def _edit_wire(data: bytes, rng: random.Random, other: bytes) -> tuple[str, bytes]:
    """Edit the msgpack structure: replace, drop, duplicate or swap an item; re-pack."""
    wire = msgpack.unpackb(data, raw=False, strict_map_key=False)
    paths = _wire_paths(wire)[1:]  # never the envelope itself
    if not paths:
        return "edit (nothing to edit)", data
    path = rng.choice(paths)
    parent = wire
    for index in path[:-1]:
        parent = parent[index]
    last = path[-1]
    roll = rng.random()
    if roll < 0.55:
        leaf = rng.choice(INTERESTING_LEAVES)
        parent[last] = leaf
        what = f"{path} := {leaf!r}"
    elif roll < 0.7:
        del parent[last]
        what = f"drop {path}"
    elif roll < 0.85:
        parent.insert(last, parent[last])
        what = f"duplicate {path}"
    else:
        swap = rng.randrange(len(parent))
        parent[last], parent[swap] = parent[swap], parent[last]
        what = f"swap {path} with {swap}"
    return f"edit {what}", msgpack.packb(wire, use_bin_type=True)


MUTATORS: tuple[Callable[[bytes, random.Random, bytes], tuple[str, bytes]], ...] = (
    _bit_flip,
    _replace_byte,
    _insert,
    _delete,
    _truncate,
    _splice,
    _duplicate,
)


# =========================================================================================
# the property every input must satisfy
# =========================================================================================


@dataclass
class _Tally:
    """What the fuzzer reached: rejections by msgpack, by the validation, and decodes."""

    malformed: int = 0
    invalid: int = 0
    decoded: int = 0

    @property
    def total(self) -> int:
        return self.malformed + self.invalid + self.decoded


def _empty_like(state: Any) -> Any:
    if isinstance(state, ORMap):
        return ORMap(state.prototype)
    return type(state)()


def _check_decoded(state: Any, origin: Any) -> None:
    """A decoded state behaves as a state of its type."""
    assert type(state) in NINE_TYPES, f"decoded a {type(state).__name__}"
    _ = state.value
    encoded = encode(state)
    again = decode(encoded)
    assert again == state, "decode(encode(s)) != s"
    assert encode(again) == encoded, "re-encoding is not stable"
    fresh = _empty_like(state)
    fresh.merge(state)
    assert fresh == state, "empty.merge(s) != s"
    twice = state.copy()
    twice.merge(state)
    assert twice == state, "s.merge(s) != s"
    if type(state) is type(origin):
        # A decoded state joins the state it was mutated from, in either order, without
        # error; only an ORMap whose nested type was mutated into another refuses
        # (MergeError). The results need not be equal: a mutation can give one dot
        # another payload, and two states that disagree on a dot are each valid but
        # never both reachable, so the laws say nothing of their join.
        try:
            left, right = origin.copy(), state.copy()
            left.merge(state)
            right.merge(origin)
        except MergeError:
            assert isinstance(state, ORMap), "MergeError between two states of one type"
            return
        assert decode(encode(left)) == left
        assert decode(encode(right)) == right


def _check_input(data: bytes, origin: Any, tally: _Tally, describe: str) -> None:
    """``decode(data)`` raises DecodeError or gives a state that behaves; else fail."""
    try:
        try:
            state = decode(data)
        except DecodeError as exc:
            if str(exc).startswith("malformed input"):
                tally.malformed += 1
            else:
                tally.invalid += 1
            return
        _check_decoded(state, origin)
        tally.decoded += 1
    except Exception:
        pytest.fail(
            f"{describe}\ninput ({len(data)} bytes) = bytes.fromhex({data.hex()!r})\n"
            f"{traceback.format_exc()}",
            pytrace=False,
        )


def _check_value_input(data: bytes, describe: str) -> None:
    """``decode_value(data)`` raises DecodeError or returns; else fail."""
    try:
        decode_value(data)
    except DecodeError:
        pass
    except Exception:
        pytest.fail(
            f"decode_value: {describe}\ninput = bytes.fromhex({data.hex()!r})\n"
            f"{traceback.format_exc()}",
            pytrace=False,
        )


# =========================================================================================
# the fuzz tests
# =========================================================================================


def test_the_suite_fuzzes_at_least_100000_inputs() -> None:
    fuzzed = MUTATIONS_PER_CORPUS * len(FACTORIES) + RANDOM_INPUTS
    assert fuzzed >= REQUIRED_INPUTS


@pytest.mark.parametrize(("index", "name"), list(enumerate(FACTORIES)))
def test_mutated_encodings_decode_or_raise_decode_error(index: int, name: str) -> None:
    corpus_seed = BASE_SEED + index
    corpus = _corpus(name, corpus_seed)
    # The other encodings a splice draws from: this corpus and one other type's.
    strangers = _corpus(list(FACTORIES)[(index + 1) % len(FACTORIES)], corpus_seed)
    donors = [data for data, _ in corpus + strangers]
    tally = _Tally()
    for case in range(MUTATIONS_PER_CORPUS):
        case_seed = corpus_seed * 1_000_003 + case
        rng = random.Random(case_seed)
        data, origin = rng.choice(corpus)
        steps: list[str] = []
        if rng.random() < WIRE_EDIT_SHARE:
            step, data = _edit_wire(data, rng, b"")
            steps.append(step)
        stacked = rng.choices(range(MAX_STACKED + 1), STACKED_WEIGHTS)[0]
        for _ in range(stacked if steps else max(1, stacked)):
            step, data = rng.choice(MUTATORS)(data, rng, rng.choice(donors))
            steps.append(step)
        describe = (
            f"{name}: corpus seed {corpus_seed}, case {case} (case seed {case_seed}), "
            f"mutations: {'; '.join(steps)}"
        )
        _check_input(data, origin, tally, describe)
    assert tally.total == MUTATIONS_PER_CORPUS
    # The fuzzer is useless if everything dies in msgpack or nothing ever decodes.
    assert tally.invalid >= MIN_VALIDATION_SHARE * tally.total, tally
    assert tally.decoded >= MIN_DECODED_SHARE * tally.total, tally


def test_random_bytes_decode_or_raise_decode_error() -> None:
    seed = BASE_SEED - 1
    rng = random.Random(seed)
    # Half of them start like an encoding (an envelope, the version, a tag), so they
    # get past the first byte.
    prefixes = [b""] + [bytes([0x93, FORMAT_VERSION, tag]) for tag in range(11)]
    tally = _Tally()
    for case in range(RANDOM_INPUTS):
        prefix = rng.choice(prefixes) if case % 2 else b""
        data = prefix + rng.randbytes(rng.randrange(MAX_RANDOM_LENGTH + 1))
        describe = f"random bytes: seed {seed}, case {case} (replay in order)"
        _check_input(data, None, tally, describe)
        _check_value_input(data, describe)
    assert tally.total == RANDOM_INPUTS
    assert tally.invalid > 0, tally


def test_the_corpus_covers_every_type() -> None:
    # Only a corpus of valid, varied encodings makes the mutations meaningful.
    kinds: Counter[str] = Counter()
    for index, name in enumerate(FACTORIES):
        corpus = _corpus(name, BASE_SEED + index)
        assert len(corpus) >= 10, name
        for data, state in corpus:
            assert decode(data) == state
            kinds[type(state).__name__] += 1
    assert set(kinds) == {kind.__name__ for kind in NINE_TYPES}


# =========================================================================================
# hypothesis: arbitrary bytes and arbitrary msgpack structures
# =========================================================================================


@settings(max_examples=BYTES_EXAMPLES)
@given(data=st.binary(max_size=MAX_RANDOM_LENGTH))
def test_arbitrary_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _check_input(data, None, _Tally(), "hypothesis: arbitrary bytes")
    _check_value_input(data, "hypothesis: arbitrary bytes")


_msgpack_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.integers(-2, 8),
    st.floats(),
    st.text(max_size=3),
    st.binary(max_size=3),
    st.sampled_from(REPLICAS),
    st.builds(msgpack.ExtType, st.integers(0, 3), st.binary(max_size=4)),
)
_msgpack_structures = st.recursive(
    _msgpack_leaves,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=10,
)


@settings(max_examples=STRUCTURE_EXAMPLES)
@given(tag=st.integers(0, 10), body=_msgpack_structures)
def test_arbitrary_msgpack_in_an_envelope_decodes_or_raises_decode_error(
    tag: int, body: object
) -> None:
    data = msgpack.packb([FORMAT_VERSION, tag, body], use_bin_type=True)
    _check_input(data, None, _Tally(), "hypothesis: arbitrary msgpack in an envelope")


@settings(max_examples=STRUCTURE_EXAMPLES)
@given(value=_msgpack_structures)
def test_arbitrary_msgpack_as_a_value_decodes_or_raises_decode_error(value: object) -> None:
    data = msgpack.packb(value, use_bin_type=True)
    _check_value_input(data, "hypothesis: arbitrary msgpack as a value")


_small_limits = st.builds(
    Limits,
    max_bytes=st.integers(0, 2 * MAX_RANDOM_LENGTH),
    max_collection_len=st.integers(0, 8),
    max_str_len=st.integers(0, 8),
    max_depth=st.integers(0, 4),
)


@settings(max_examples=BYTES_EXAMPLES // 3)
@given(case=st.sampled_from(sorted(FACTORIES)), seed=st.integers(0, 2**32), limits=_small_limits)
def test_mutated_encodings_under_lowered_limits_decode_or_raise_decode_error(
    case: str, seed: int, limits: Limits
) -> None:
    # Every limit, lowered, refuses with DecodeError, never with msgpack's own error.
    rng = random.Random(seed)
    data, _ = rng.choice(_cached_corpus(case))
    if rng.random() < 0.5:
        _, data = rng.choice(MUTATORS)(data, rng, data)
    try:
        decode(data, limits=limits)
        decode_value(data, limits=limits)
    except DecodeError:
        pass


# =========================================================================================
# hostile headers spliced into valid encodings: DecodeError, in bounded memory
# =========================================================================================

#: Container headers announcing many items (arrays, maps, 16- and 32-bit lengths): each
#: makes msgpack reserve room for up to 10,000 items if it were not refused first.
HOSTILE_HEADERS = (b"\xdc\xff\xff", b"\xdd\x00\x40\x00\x00", b"\xde\xff\xff", b"\x9f")

#: Inputs in the traced fuzz, and the most headers spliced into one.
TRACED_INPUTS = 10_000
MAX_SPLICED_HEADERS = 600

#: The documented bound on decoding (issue 18): peak traced allocation at most this
#: many times the input, plus a constant for the interpreter's bookkeeping.
AMPLIFICATION = 16
ALLOWANCE = 1024 * 1024


@functools.cache
def _cached_corpus(name: str) -> list[tuple[bytes, Any]]:
    return _corpus(name, BASE_SEED + sorted(FACTORIES).index(name))


def _splice_headers(data: bytes, rng: random.Random) -> bytes:
    """``data`` with a run of nested hostile headers written in at a random place."""
    header = rng.choice(HOSTILE_HEADERS)
    run = header * rng.randint(1, MAX_SPLICED_HEADERS)
    at = rng.randrange(len(data) + 1)
    tail = data[at:] if rng.random() < 0.5 else b""
    return data[:at] + run + tail


def test_hostile_headers_spliced_into_encodings_cost_a_small_multiple_of_the_input() -> None:
    seed = BASE_SEED + 7
    rng = random.Random(seed)
    names = sorted(FACTORIES)
    tally = _Tally()
    tracemalloc.start()
    try:
        for case in range(TRACED_INPUTS):
            data, origin = rng.choice(_cached_corpus(rng.choice(names)))
            data = _splice_headers(data, rng)
            tracemalloc.reset_peak()
            baseline, _ = tracemalloc.get_traced_memory()
            _check_input(data, origin, tally, f"spliced headers: seed {seed}, case {case}")
            peak = tracemalloc.get_traced_memory()[1] - baseline
            bound = AMPLIFICATION * len(data) + ALLOWANCE
            assert peak <= bound, f"case {case}: {len(data)} bytes peaked at {peak}"
    finally:
        tracemalloc.stop()
    assert tally.total == TRACED_INPUTS
    assert tally.malformed > TRACED_INPUTS // 2, tally  # most are refused by the framing

"""The pruning marker table: a join-semilattice per replica id, its mutators inflations,
expiry the one step that forgets, and canonical bytes that refuse anything else with
DecodeError."""

from __future__ import annotations

import random
from collections.abc import Callable

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip.errors import DecodeError, EncodeError, MergeError, OperationError
from crdtgossip.protocol import pruning_markers
from crdtgossip.protocol.pruning_markers import (
    MARKERS_VERSION,
    MAX_ID_BYTES,
    MAX_MARKERS,
    MAX_SEEN,
    ROUND_MAX,
    STAMP_MAX,
    Initialized,
    Marker,
    Performed,
    PruningMarkers,
    join,
)
from tests.mutations import mutated

LAW_EXAMPLES = 60
BYTES_EXAMPLES = 150

R1, R2 = "b.00000000000000aa", "c.00000000000000bb"

# Few ids and rounds, so random tables share replica ids, rounds, pruners and seen
# members often.
_nodes = st.sampled_from(["a", "b", "c", "é"])
_rounds = st.sampled_from([0, 0, 1, 2, ROUND_MAX])
_markers: st.SearchStrategy[Marker] = st.one_of(
    st.builds(Initialized, _nodes, st.frozensets(_nodes, max_size=3), _rounds),
    st.builds(Performed, st.sampled_from([0, 1, 5, STAMP_MAX])),
)
_tables = st.dictionaries(st.sampled_from(["r1", "r2", "r3", "a.01"]), _markers, max_size=4).map(
    PruningMarkers
)


def _join(a: PruningMarkers, b: PruningMarkers) -> PruningMarkers:
    joined = a.copy()
    joined.merge(b)
    return joined


# ---- the lattice --------------------------------------------------------------------------


@settings(max_examples=LAW_EXAMPLES)
@given(a=_tables, b=_tables)
def test_join_is_commutative(a: PruningMarkers, b: PruningMarkers) -> None:
    assert _join(a, b) == _join(b, a)


@settings(max_examples=LAW_EXAMPLES)
@given(a=_tables, b=_tables, c=_tables)
def test_join_is_associative(a: PruningMarkers, b: PruningMarkers, c: PruningMarkers) -> None:
    assert _join(_join(a, b), c) == _join(a, _join(b, c))


@settings(max_examples=LAW_EXAMPLES)
@given(a=_tables, b=_tables)
def test_join_is_idempotent_and_an_upper_bound(a: PruningMarkers, b: PruningMarkers) -> None:
    assert _join(a, a) == a
    joined = _join(a, b)
    assert _join(joined, a) == joined
    assert _join(joined, b) == joined


@settings(max_examples=LAW_EXAMPLES)
@given(a=_tables, b=_tables)
def test_merge_reports_a_change_exactly_when_the_table_changed(
    a: PruningMarkers, b: PruningMarkers
) -> None:
    before = a.copy()
    changed = a.merge(b)
    assert changed == (a != before)
    assert a == _join(before, b)


@settings(max_examples=LAW_EXAMPLES)
@given(
    table=_tables,
    replica=st.sampled_from(["r1", "r2"]),
    node=_nodes,
    at=st.integers(0, 9),
    round_=_rounds,
)
def test_every_mutator_is_an_inflation(
    table: PruningMarkers, replica: str, node: str, at: int, round_: int
) -> None:
    # Each result is above the table it came from: joining the old table changes nothing.
    mutators: list[Callable[[PruningMarkers], bool]] = [
        lambda t: t.initialize(replica, node, round=round_),
        lambda t: t.see(replica, node, pruner="a", round=round_),
        lambda t: t.perform(replica, at),
    ]
    for mutate in mutators:
        after = table.copy()
        changed = mutate(after)
        assert _join(after, table) == after
        assert changed == (after != table)


def test_the_join_rules_one_by_one() -> None:
    low, high = Initialized("a", frozenset({"x"})), Initialized("b", frozenset({"y", "z"}))
    assert join(low, high) == low == join(high, low)  # the lower pruner, as it is
    assert join(Initialized("a", frozenset({"x"})), Initialized("a", frozenset({"y"}))) == (
        Initialized("a", frozenset({"x", "y"}))
    )
    assert join(Performed(3), low) == Performed(3) == join(high, Performed(3))
    assert join(Performed(3), Performed(9)) == Performed(9) == join(Performed(9), Performed(3))
    later = Initialized("c", frozenset(), round=1)
    assert join(low, later) == later == join(later, low)  # the higher round, as it is
    higher = Initialized("c", frozenset({"x"}), 2)
    assert join(later, higher) == higher == join(higher, later)
    assert join(Performed(0), Initialized("a", round=ROUND_MAX)) == Performed(0)
    same = join(Initialized("b", frozenset({"x"}), 1), Initialized("b", frozenset({"y"}), 1))
    assert same == Initialized("b", frozenset({"x", "y"}), 1)
    assert join(Initialized("b", round=1), Initialized("a", round=1)) == Initialized("a", round=1)


def test_initialize_takes_over_from_a_higher_pruner_only() -> None:
    table = PruningMarkers()
    assert table.initialize(R1, "b")
    assert table.see(R1, "c", pruner="b")
    assert not table.initialize(R1, "c")
    assert table.get(R1) == Initialized("b", frozenset({"c"}))
    assert table.initialize(R1, "a")
    assert table.get(R1) == Initialized("a")
    table.perform(R1, 7)
    assert not table.initialize(R1, "a")
    assert table.get(R1) == Performed(7)


def test_initialize_in_a_higher_round_takes_over_from_any_pruner() -> None:
    table = PruningMarkers({R1: Initialized("a", frozenset({"c"}))})
    assert not table.initialize(R1, "b")  # round 0: a is lower
    assert table.initialize(R1, "b", round=1)
    assert table.get(R1) == Initialized("b", round=1)  # the seen set of a's round is gone
    assert not table.initialize(R1, "a")  # a's round 0 again: too late
    assert table.initialize(R1, "a", round=1)  # round 1, and a is lower than b
    assert table.initialize(R1, "z", round=ROUND_MAX)
    assert table.get(R1) == Initialized("z", round=ROUND_MAX)


def test_see_writes_only_into_the_callers_own_initialized_marker() -> None:
    table = PruningMarkers()
    assert not table.see(R1, "c", pruner="a")  # no marker
    table.initialize(R1, "a")
    assert not table.see(R1, "c", pruner="b")  # another pruner's marker
    assert not table.see(R1, "c", pruner="a", round=1)  # another round's marker
    assert table.see(R1, "c", pruner="a")
    assert not table.see(R1, "c", pruner="a")  # already seen
    table.perform(R1, 1)
    assert not table.see(R1, "d", pruner="a")
    assert table.get(R1) == Performed(1)
    table = PruningMarkers({R1: Initialized("b", round=3)})
    assert table.see(R1, "c", pruner="b", round=3)
    assert table.get(R1) == Initialized("b", frozenset({"c"}), 3)  # still round 3


def test_performed_is_the_drop_filter_and_follows_every_change() -> None:
    table = PruningMarkers({R1: Initialized("a")})
    assert table.performed() == frozenset()
    table.perform(R1, 5)
    assert table.performed() == {R1}
    other = PruningMarkers({R2: Performed(1)})
    table.merge(other)
    assert table.performed() == {R1, R2}
    assert table.expire(now_stamp=10, ttl_ns=4) == {R1, R2}
    assert table.performed() == frozenset()
    assert len(table) == 0


def test_expire_drops_only_performed_markers_older_than_the_ttl() -> None:
    table = PruningMarkers({R1: Performed(100), R2: Initialized("a"), "d.1": Performed(150)})
    assert table.expire(now_stamp=160, ttl_ns=60) == frozenset()  # 60 old: not older
    assert table.expire(now_stamp=161, ttl_ns=60) == {R1}
    assert R1 not in table
    assert table.expire(now_stamp=STAMP_MAX, ttl_ns=0) == {"d.1"}
    assert table.get(R2) == Initialized("a")  # an initialized marker never expires


def test_an_expired_marker_sent_back_expires_again_at_the_next_call() -> None:
    here, lagging = PruningMarkers({R1: Performed(100)}), PruningMarkers({R1: Performed(100)})
    here.expire(now_stamp=200, ttl_ns=50)
    here.merge(lagging)
    assert here.expire(now_stamp=200, ttl_ns=50) == {R1}


def test_copy_is_independent() -> None:
    table = PruningMarkers({R1: Initialized("a")})
    twin = table.copy()
    twin.see(R1, "b", pruner="a")
    twin.perform(R2, 1)
    assert table == PruningMarkers({R1: Initialized("a")})
    assert table.performed() == frozenset()


@pytest.mark.parametrize(
    "call",
    [
        lambda t: t.initialize("", "a"),
        lambda t: t.initialize(R1, ""),
        lambda t: t.initialize(R1, 7),
        lambda t: t.initialize("x" * (MAX_ID_BYTES + 1), "a"),
        lambda t: t.initialize("é" * (MAX_ID_BYTES // 2 + 1), "a"),  # 2 bytes a char
        lambda t: t.initialize("\ud800", "a"),
        lambda t: t.initialize(R1, "a", round=-1),
        lambda t: t.initialize(R1, "a", round=ROUND_MAX + 1),
        lambda t: t.initialize(R1, "a", round=True),
        lambda t: PruningMarkers({R1: Initialized("a", round=2**64)}),
        lambda t: t.see(R1, "", pruner="a"),
        lambda t: t.perform(R1, -1),
        lambda t: t.perform(R1, STAMP_MAX + 1),
        lambda t: t.perform(R1, True),
        lambda t: t.perform(R1, 1.0),
        lambda t: t.expire(-1, 5),
        lambda t: t.expire(5, -1),
        lambda t: PruningMarkers({R1: "performed"}),  # type: ignore[dict-item]
        lambda t: PruningMarkers({R1: Initialized("a", frozenset({""}))}),
    ],
)
def test_invalid_arguments_raise_operation_error_and_change_nothing(call: object) -> None:
    table = PruningMarkers({R1: Initialized("a")})
    with pytest.raises(OperationError):
        call(table)  # type: ignore[operator]
    assert table == PruningMarkers({R1: Initialized("a")})


def test_the_largest_ids_are_taken() -> None:
    table = PruningMarkers()
    table.initialize("x" * MAX_ID_BYTES, "é" * (MAX_ID_BYTES // 2))
    assert PruningMarkers.decode(table.encode()) == table


def test_the_table_refuses_to_pass_its_limits() -> None:
    full = PruningMarkers({f"r{n}": Performed(n) for n in range(MAX_MARKERS)})
    with pytest.raises(OperationError):
        full.initialize("one.more", "a")
    assert full.perform("r1", 99)  # a marker already there may still grow
    other = PruningMarkers({"one.more": Performed(1)})
    with pytest.raises(MergeError):
        full.merge(other)
    assert "one.more" not in full
    with pytest.raises(OperationError):
        PruningMarkers({f"r{n}": Performed(n) for n in range(MAX_MARKERS + 1)})

    seen = frozenset(f"n{n}" for n in range(MAX_SEEN))
    table = PruningMarkers({R1: Initialized("a", seen)})
    with pytest.raises(OperationError):
        table.see(R1, "one.more", pruner="a")
    wider = PruningMarkers({R1: Initialized("a", frozenset({"one.more"}))})
    with pytest.raises(MergeError):
        table.merge(wider)
    assert table.get(R1) == Initialized("a", seen)


def test_merge_refuses_what_is_not_a_marker_table() -> None:
    with pytest.raises(MergeError):
        PruningMarkers().merge({R1: Performed(1)})  # type: ignore[arg-type]


# ---- bytes --------------------------------------------------------------------------------


@settings(max_examples=LAW_EXAMPLES)
@given(table=_tables)
def test_encode_round_trips(table: PruningMarkers) -> None:
    data = table.encode()
    assert PruningMarkers.decode(data) == table
    assert PruningMarkers.decode(bytearray(data)) == table
    assert PruningMarkers.decode(memoryview(data)) == table


@settings(max_examples=LAW_EXAMPLES)
@given(table=_tables, seed=st.integers(0, 2**32))
def test_equal_tables_give_equal_bytes_whatever_their_history(
    table: PruningMarkers, seed: int
) -> None:
    items = list(table.items())
    random.Random(seed).shuffle(items)
    assert PruningMarkers(dict(items)).encode() == table.encode()


def test_the_layout_is_the_documented_one() -> None:
    table = PruningMarkers({R2: Performed(5), R1: Initialized("a", frozenset({"d", "c"}), 3)})
    assert MARKERS_VERSION == 2
    assert msgpack.unpackb(table.encode()) == [
        MARKERS_VERSION,
        [[R1, 0, 3, "a", ["c", "d"]], [R2, 1, 5]],
    ]
    assert PruningMarkers().encode() == msgpack.packb([MARKERS_VERSION, []])


def _decodes_or_refuses(data: bytes) -> None:
    """Either the table decodes, and its encoding is exactly ``data``, or DecodeError."""
    try:
        table = PruningMarkers.decode(data)
    except DecodeError:
        return
    assert table.encode() == data


@settings(max_examples=BYTES_EXAMPLES)
@given(data=st.binary(max_size=64))
def test_random_bytes_decode_or_raise_decode_error(data: bytes) -> None:
    _decodes_or_refuses(data)


@settings(max_examples=BYTES_EXAMPLES)
@given(table=_tables, seed=st.integers(0, 2**32), edits=st.integers(1, 4))
def test_mutated_encodings_decode_or_raise_decode_error(
    table: PruningMarkers, seed: int, edits: int
) -> None:
    _decodes_or_refuses(mutated(table.encode(), seed, edits))


_wire = st.recursive(
    st.one_of(
        st.integers(-2, 3),
        st.sampled_from([MARKERS_VERSION, "a", "r1", "", 2**64 - 1, -(2**63)]),
        st.booleans(),
        st.none(),
        st.floats(allow_nan=False),
        st.binary(max_size=2),
    ),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=2), inner),
    max_leaves=12,
)


@settings(max_examples=BYTES_EXAMPLES)
@given(body=_wire)
def test_arbitrary_msgpack_after_the_version_decodes_or_raises_decode_error(body: object) -> None:
    _decodes_or_refuses(msgpack.packb([MARKERS_VERSION, body], use_bin_type=True))


def _packed(*entries: object, version: object = MARKERS_VERSION) -> bytes:
    data: bytes = msgpack.packb([version, list(entries)], use_bin_type=True)
    return data


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"", "empty"),
        (b"\xc1", "a byte msgpack never uses"),
        (_packed(version=1), "version 1, before rounds"),
        (msgpack.packb([1, [[R1, 0, "a", []]]]), "a marker of version 1"),
        (_packed(version=3), "another version"),
        (_packed(version=True), "a bool for a version"),
        (_packed(version=1.0), "a float for a version"),
        (msgpack.packb([MARKERS_VERSION]), "no markers"),
        (msgpack.packb([MARKERS_VERSION, [], 0]), "an item too many"),
        (msgpack.packb({"v": 1}), "a map"),
        (_packed() + b"\x00", "bytes after the table"),
        (_packed([R2, 1, 5], [R1, 1, 5]), "replica ids unsorted"),
        (_packed([R1, 1, 5], [R1, 1, 6]), "a replica twice"),
        (_packed(["", 1, 5]), "an empty replica id"),
        (_packed([b"r", 1, 5]), "a replica id as bytes"),
        (_packed([R1, 1, -1]), "a negative stamp"),
        (_packed([R1, 1, True]), "a bool stamp"),
        (_packed([R1, 1, 5, 0]), "a performed marker with an item too many"),
        (_packed([R1, 2, 5]), "an unknown kind"),
        (_packed([R1, 0, 0, "a"]), "an initialized marker without its seen set"),
        (_packed([R1, 0, "a", []]), "an initialized marker without its round"),
        (_packed([R1, 0, 0, "a", [], 0]), "an initialized marker with an item too many"),
        (_packed([R1, 0, -1, "a", []]), "a negative round"),
        (_packed([R1, 0, True, "a", []]), "a bool round"),
        (_packed([R1, 0, 1.0, "a", []]), "a float round"),
        (_packed([R1, 0, 0, "a", ["c", "b"]]), "a seen set unsorted"),
        (_packed([R1, 0, 0, "a", ["b", "b"]]), "a node seen twice"),
        (_packed([R1, 0, 0, "", []]), "an empty pruner id"),
        (_packed([R1, 0, 0, "a", [""]]), "an empty seen id"),
        (_packed(["x" * (MAX_ID_BYTES + 1), 1, 5]), "a replica id past the limit"),
        (_packed([R1, 0, 0, "a", ["x" * (MAX_ID_BYTES + 1)]]), "a seen id past the limit"),
        (b"\x92\x02\x91\x95\xa1r\x00\xcc\x05\xa1a\x90", "a round in a wider int than needed"),
        (b"\x92\xcc\x02\x90", "a version in a wider int than needed"),
        (b"\x92\x02\xdc\x00\x00", "an empty array in a wider header than needed"),
        (b"\x92\x02\x91\x93\xa1r\x01\xcf" + (5).to_bytes(8, "big"), "a stamp in 8 bytes"),
        (b"\x92\x02\x91\x93\xd9\x01r\x01\x05", "a str in a wider header than needed"),
        (b"\x92\x02\xdd\x00\x01\x00\x00", "a header announcing more markers than follow"),
        (b"\x92\x02" + b"\xdd\x00\x00\xff\xff" * 200, "nested headers announcing 65,535 each"),
        (b"\x91" * 5000, "nesting far deeper than the layout"),
        (msgpack.packb([2, [[R1, 1, msgpack.ExtType(1, b"x")]]]), "an extension"),
        (_packed(*[[f"r{n:06}", 1, 0] for n in range(MAX_MARKERS + 1)]), "too many markers"),
        (
            _packed([R1, 0, 0, "a", [f"n{n:06}" for n in range(MAX_SEEN + 1)]]),
            "too large a seen set",
        ),
    ],
)
def test_hostile_and_non_canonical_inputs_raise_decode_error(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError):
        PruningMarkers.decode(data)


@pytest.mark.parametrize("data", ["[1, []]", None, 5, [1, []]])
def test_what_is_not_bytes_raises_decode_error(data: object) -> None:
    with pytest.raises(DecodeError):
        PruningMarkers.decode(data)  # type: ignore[arg-type]


def test_the_largest_tables_round_trip() -> None:
    seen = frozenset(f"n{n:06}" for n in range(MAX_SEEN))
    markers: dict[str, Marker] = {f"r{n:06}": Performed(STAMP_MAX) for n in range(MAX_MARKERS - 1)}
    markers["z"] = Initialized("a", seen, ROUND_MAX)
    table = PruningMarkers(markers)
    assert PruningMarkers.decode(table.encode()) == table


def test_the_byte_limit_holds_both_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    # A table of 65,536 markers of 1 KiB ids passes 16 MiB; a lowered limit shows the
    # same checks without building one.
    table = PruningMarkers({R1: Performed(STAMP_MAX), R2: Initialized("a")})
    data = table.encode()
    monkeypatch.setattr(pruning_markers, "MAX_ENCODED_BYTES", len(data) - 1)
    with pytest.raises(EncodeError):
        table.encode()
    with pytest.raises(DecodeError):
        PruningMarkers.decode(data)
    monkeypatch.setattr(pruning_markers, "MAX_ENCODED_BYTES", len(data))
    assert PruningMarkers.decode(data) == table

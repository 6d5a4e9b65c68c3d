"""The life record of a key: a join-semilattice whose mutators are inflations, the
update-wins rules of a delete, three replicas that converge whatever the network does,
and canonical bytes in front of a payload that refuse anything else with DecodeError."""

from __future__ import annotations

import random
import tracemalloc
from itertools import permutations

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crdtgossip import keylife
from crdtgossip.errors import DecodeError, OperationError
from crdtgossip.keylife import MAX_WRITES, Record, deleted, present, settle, unwrap, wrap, wrote
from tests.mutations import mutated

LAW_EXAMPLES = 100
MODEL_EXAMPLES = 200
BYTES_EXAMPLES = 150
MARK = keylife.LIFE_MARK

# Few replicas and numbers, so random records share replicas and meet on equal pairs.
_replicas = st.sampled_from(["a", "b", "c", "é"])


def _pairs_up_to(top: int) -> st.SearchStrategy[tuple[int, int]]:
    return st.integers(1, top).flatmap(lambda n: st.tuples(st.just(n), st.integers(0, n)))


_pairs, _wire_pairs = _pairs_up_to(4), _pairs_up_to(4) | _pairs_up_to(MAX_WRITES)
_records = st.dictionaries(
    _replicas, _pairs | st.sampled_from([(MAX_WRITES, 0), (MAX_WRITES, MAX_WRITES)]), max_size=4
)
_writable = st.dictionaries(_replicas, _pairs, max_size=4)  # room for a write


def _join(*records: Record) -> Record:
    joined: Record = {}
    for record in records:
        keylife.join_into(joined, record)
    return joined


# ---- the lattice --------------------------------------------------------------------------


@settings(max_examples=LAW_EXAMPLES)
@given(a=_records, b=_records, c=_records)
def test_join_is_a_semilattice_and_reports_a_change(a: Record, b: Record, c: Record) -> None:
    assert _join(a, b) == _join(b, a)
    assert _join(_join(a, b), c) == _join(a, _join(b, c))
    assert _join(a, a) == a
    joined = _join(a, b)
    assert _join(joined, a) == joined == _join(joined, b)
    here, other = dict(a), dict(b)
    assert keylife.join_into(here, other) == (here != a)
    assert (here, other) == (joined, b)  # the other record is only read


@settings(max_examples=LAW_EXAMPLES)
@given(record=_writable, replica=_replicas)
def test_wrote_is_an_inflation_to_a_live_write(record: Record, replica: str) -> None:
    after = dict(record)
    pair = wrote(after, replica)
    newest, dropped = record.get(replica, (0, 0))
    assert pair == (newest + 1, dropped)
    assert after == {**record, replica: pair} == _join(after, record)
    assert present(after)
    assert keylife.live_in({replica: pair}, after)
    assert not keylife.live_in({replica: pair}, deleted(after))
    part = keylife.of_write(after, replica)  # a delta's record: the write, and deletes
    assert part[replica] == pair
    assert _join(after, part) == after
    assert keylife.live_in(part, after)
    assert not keylife.live_in({r: p for r, p in part.items() if r != replica}, after)


@settings(max_examples=LAW_EXAMPLES)
@given(record=_records)
def test_deleted_is_an_inflation_that_leaves_nothing_present(record: Record) -> None:
    gone = deleted(record)
    assert _join(gone, record) == gone == deleted(gone)
    assert not present(gone)
    assert not keylife.live_in(record, gone)


# ---- the rules, one by one ---------------------------------------------------------------


def test_a_delete_removes_the_writes_it_saw_and_the_old_ones_coming_late() -> None:
    record: Record = {}
    wrote(record, "a")
    wrote(record, "b")
    gone = deleted(record)
    assert gone == {"a": (1, 1), "b": (1, 1)}
    assert settle(record, gone) == (False, False)
    assert (record, present(record)) == (gone, False)
    here = {"a": (2, 2)}
    assert settle(here, {"a": (1, 0)}) == (False, False)
    assert settle(here, {"a": (2, 0)}) == (False, False)
    assert here == {"a": (2, 2)}
    survivor = {"a": (1, 1), "b": (1, 0)}  # even next to a live concurrent write
    assert settle(survivor, {"a": (1, 0)}) == (True, False)
    assert survivor == {"a": (1, 1), "b": (1, 0)}


def test_a_write_the_deleter_did_not_see_wins() -> None:
    there = {"a": (2, 0)}  # the writer hears of the delete of its first write
    assert settle(there, {"a": (1, 1)}) == (True, False)
    assert there == {"a": (2, 1)}
    here = {"a": (1, 1)}  # the deleter gets a's second write
    assert settle(here, {"a": (2, 0)}) == (False, True)
    assert (here, present(here)) == ({"a": (2, 1)}, True)
    assert settle(here, {"b": (1, 0)}) == (True, True)  # and a write of a replica it never knew
    assert (here, present(here)) == ({"a": (2, 1), "b": (1, 0)}, True)
    there = {"a": (1, 0), "b": (1, 0)}  # holds both writes when the delete of a's arrives
    assert settle(there, {"a": (1, 1)}) == (True, False)  # b's write keeps the merged state
    assert there == {"a": (1, 1), "b": (1, 0)}


def test_unknown_content_is_kept_and_taken_unless_the_record_says_deleted() -> None:
    assert settle(None, None) == (True, True)
    assert settle(None, {"a": (1, 0)}) == (True, True)
    assert settle(None, {"a": (1, 1)}) == (True, False)
    assert settle({"a": (1, 0)}, None) == (True, True)
    assert settle({"a": (1, 1)}, None)[1] is False


@pytest.mark.parametrize(
    ("here", "incoming"),
    [
        ({"a": (1, 0)}, {"a": (2, 1)}),  # old content here; a deleted it, then wrote again
        ({"a": (1, 0), "b": (1, 0)}, {"a": (2, 1), "b": (1, 1)}),  # the delete saw both
        ({"b": (1, 0)}, {"a": (1, 0), "b": (1, 1)}),  # a saw b's write, deleted, wrote
        ({"a": (1, 1)}, {"a": (2, 0)}),  # the deleter gets a write it did not see
        ({"a": (1, 1)}, {"b": (1, 0)}),
    ],
)
def test_a_key_written_anew_after_a_delete_starts_from_the_new_write(
    here: Record, incoming: Record
) -> None:
    assert settle(here, incoming) == (False, True)


@pytest.mark.parametrize("of_write", [True, False])
def test_a_delta_carries_the_deletes_its_writer_knew(of_write: bool) -> None:
    # c holds b's write; a saw it, deleted, wrote anew; c gets a's delta before the delete.
    # With a's pair alone for a record, a's live write would keep b's deleted one at c.
    here, there = {"b": (1, 0)}, deleted({"b": (1, 0)})
    pair = wrote(there, "a")
    part = keylife.of_write(there, "a") if of_write else {"a": pair}
    assert part == ({"a": (1, 0), "b": (1, 1)} if of_write else {"a": (1, 0)})
    keep, take = settle(here, part)
    content = ({"b's"} if keep else set()) | ({"a's"} if take else set())
    keep, _ = settle(here, {"b": (1, 1)})
    assert (content if keep else set()) == ({"a's"} if of_write else {"a's", "b's"})


# ---- three replicas, any network ---------------------------------------------------------

_NAMES = ("a", "b", "c")
_EMPTY: frozenset[int] = frozenset()
_name = st.sampled_from(_NAMES)
_deliveries = st.one_of(
    st.tuples(st.just("deliver"), st.integers(0, 63), st.booleans()),  # any order, twice
    st.tuples(st.just("drop"), st.integers(0, 63)),
)
_ops = st.one_of(
    st.tuples(st.sampled_from(["write", "delete"]), _name),
    _deliveries,
    st.tuples(st.just("exchange"), _name, _name),
)


class _Cluster:
    """Replicas of one key, content the write ids merged; a delta holds its write alone."""

    def __init__(self, whole: bool) -> None:
        self.whole = whole
        self.records: dict[str, Record] = {name: {} for name in _NAMES}
        self.contents: dict[str, frozenset[int]] = dict.fromkeys(_NAMES, _EMPTY)
        self.flight: list[tuple[str, Record, frozenset[int]]] = []
        self.writes: dict[tuple[str, int], int] = {}  # (replica, write number) -> write id
        # Whose newest write each replica has since had in a full state from its writer.
        self.synced: dict[str, set[str]] = {name: set() for name in _NAMES}
        self.last: tuple[str, str, int | bool] | None = None  # the last write or delete

    def receive(self, name: str, record: Record, content: frozenset[int]) -> None:
        incoming = dict(record)
        keep, take = keylife.settle(self.records[name], incoming)
        assert incoming == record
        kept = self.contents[name] if keep else _EMPTY
        self.contents[name] = kept | (content if take else _EMPTY)

    def write(self, name: str) -> int:
        write_id = len(self.writes)
        pair = keylife.wrote(self.records[name], name)
        self.writes[name, pair[0]] = write_id
        self.contents[name] |= {write_id}
        delta = self.records[name] if self.whole else keylife.of_write(self.records[name], name)
        self.flight += [(to, dict(delta), frozenset({write_id})) for to in _NAMES if to != name]
        for synced in self.synced.values():
            synced.discard(name)
        self.last = ("write", name, write_id)
        return write_id

    def delete(self, name: str) -> None:
        saw_all = self.synced[name] >= set(_NAMES) - {name}
        self.records[name] = keylife.deleted(self.records[name])
        self.contents[name] = _EMPTY
        self.flight += [(to, dict(self.records[name]), _EMPTY) for to in _NAMES if to != name]
        self.last = ("delete", name, saw_all)

    def exchange(self, sender: str, receiver: str) -> bool:
        before = (dict(self.records[receiver]), self.contents[receiver])
        self.receive(receiver, self.records[sender], self.contents[sender])
        self.synced[receiver].add(sender)
        return before != (self.records[receiver], self.contents[receiver])

    def run(self, op: tuple[object, ...]) -> None:
        match op:
            case ("write", str(name)):
                self.write(name)
            case ("delete", str(name)):
                self.delete(name)
            case ("deliver", int(index), bool(twice)) if self.flight:  # index 0: the newest
                message = self.flight.pop(-1 - index % len(self.flight))
                if twice:
                    self.flight.append(message)
                self.receive(*message)
            case ("drop", int(index)) if self.flight:
                del self.flight[-1 - index % len(self.flight)]
            case ("exchange", str(sender), str(receiver)) if sender != receiver:
                self.exchange(sender, receiver)


def _run_and_settle(
    whole: bool, ops: list[tuple[object, ...]], tail: str | None, name: str, after: list
) -> tuple[_Cluster, Record, frozenset[int], int | None]:
    cluster, recreated = _Cluster(whole), None
    for op in ops:
        cluster.run(op)
    if tail == "write":
        cluster.write(name)
    elif tail is not None:  # a write all hold, then a delete that saw every write
        cluster.write(peer := _NAMES[_NAMES.index(name) - 1])
        for other in _NAMES:
            cluster.exchange(peer, other)
        for other in sorted(set(_NAMES) - {name}):
            cluster.exchange(other, name)
        cluster.delete(name)
        assert cluster.last == ("delete", name, True)
        if tail == "recreate":
            recreated = cluster.write(name)
    for op in after:
        cluster.run(op)
    for _ in range(10):  # anti-entropy, all to all, until nothing changes
        if not sum(cluster.exchange(s, r) for s, r in permutations(_NAMES, 2)):
            break
    else:
        pytest.fail("full-state exchanges did not settle in 10 rounds")
    final, content = cluster.records["a"], cluster.contents["a"]
    assert cluster.records["b"] == final == cluster.records["c"]
    assert cluster.contents["b"] == content == cluster.contents["c"]
    return cluster, final, content, recreated


_op_lists, _after_lists = st.lists(_ops, max_size=40), st.lists(_deliveries, max_size=10)
_runs = {"ops": _op_lists, "name": _name, "after": _after_lists}
_tails = st.sampled_from([None, "write", "delete", "recreate"])


@settings(max_examples=MODEL_EXAMPLES, deadline=None)
@given(whole=st.booleans(), tail=_tails, **_runs)
def test_three_replicas_converge_on_what_the_deletes_left(
    whole: bool, ops: list, tail: str | None, name: str, after: list
) -> None:
    cluster, final, content, recreated = _run_and_settle(whole, ops, tail, name, after)
    if not present(final):
        assert content == _EMPTY
    for replica, (newest, dropped) in final.items():  # every write still live is held
        if newest > dropped:
            assert cluster.writes[replica, newest] in content
    if cluster.last is not None:
        kind, writer, detail = cluster.last
        if kind == "write":  # the last write of all survives
            assert detail in content
            assert final[writer][0] > final[writer][1]
        elif detail:  # the last delete of all, and it saw every write
            assert content == _EMPTY
            assert not present(final)
    if recreated is not None:  # written anew after a complete delete: the new write alone
        assert content == {recreated}


# ---- bytes --------------------------------------------------------------------------------

_valid_records = st.dictionaries(st.text(min_size=1, max_size=6), _wire_pairs, max_size=6)
_seeds = st.integers(0, 2**32)
_payloads = st.binary(max_size=24) | st.binary(max_size=24).map(lambda data: MARK + data)


@settings(max_examples=BYTES_EXAMPLES)
@given(record=_valid_records, payload=_payloads, seed=_seeds, plain=st.binary())
def test_wrap_round_trips_and_is_canonical(
    record: Record, payload: bytes, seed: int, plain: bytes
) -> None:
    if plain[:1] != MARK:  # data without a record comes back as it is
        assert not keylife.is_wrapped(plain)
        assert unwrap(plain) == (None, plain)
    data = wrap(record, payload)
    assert keylife.is_wrapped(data)
    assert unwrap(data) == (record, payload)
    items = list(record.items())
    random.Random(seed).shuffle(items)
    assert wrap(dict(items), payload) == data  # whatever the order of insertion


@settings(max_examples=BYTES_EXAMPLES)
@given(replica=st.text(min_size=1, max_size=40), pair=_wire_pairs, payload=_payloads)
def test_wrap_write_makes_the_bytes_wrap_makes(
    replica: str, pair: tuple[int, int], payload: bytes
) -> None:
    packed = keylife.packed_replica(replica)
    assert keylife.wrap_write(packed, *pair, payload) == wrap({replica: pair}, payload)


@settings(max_examples=BYTES_EXAMPLES)
@given(
    replica=st.text(min_size=1, max_size=12),
    pair=_wire_pairs,
    noise=st.binary(max_size=12),
    cut=st.integers(0, 40),
)
def test_the_fast_read_of_one_entry_takes_only_what_the_full_read_takes(
    replica: str, pair: tuple[int, int], noise: bytes, cut: int
) -> None:
    body = wrap({replica: pair}, b"")[5:]
    if len(replica.encode()) <= 31:  # a short id: the fast path
        assert keylife._single_entry(body) == {replica: pair}
    for candidate in (body[:cut] + noise, body + noise, noise, body[:cut]):
        fast = keylife._single_entry(candidate)
        if fast is not None:
            assert keylife._read_entries(candidate) == fast


def _framed(body: bytes) -> bytes:  # the mark, the length of body in 4 bytes, body
    return MARK + len(body).to_bytes(4, "big") + body


def _marked(*entries: object) -> bytes:
    return _framed(msgpack.packb(list(entries), use_bin_type=True))


def test_the_layout_is_the_documented_one_up_to_its_limits() -> None:
    packed = msgpack.packb([["a", 2, 0], ["b", 3, 1]], use_bin_type=True)
    assert wrap({"b": (3, 1), "a": (2, 0)}, b"xy") == _framed(packed) + b"xy"
    assert wrap({}, b"") == b"\xc1\x00\x00\x00\x01\x90" == _framed(b"\x90")
    assert unwrap(b"\xc1\x00\x00\x00\x01\x90") == ({}, b"")
    full = {f"r{n:05}": (1, 0) for n in range(keylife.MAX_LIFE_SLOTS)}
    assert unwrap(wrap(full, b"p")) == (full, b"p")
    edges = {"x" * 1024: (MAX_WRITES, MAX_WRITES), "y": (1, 0), "z": (MAX_WRITES - 1, 0)}
    data = wrap(edges, b"")
    assert unwrap(data) == (edges, b"")
    for end in range(1, len(data)):  # every prefix of a record is refused
        with pytest.raises(DecodeError):
            unwrap(data[:end])
    assert wrote(edges, "z") == (MAX_WRITES, 0)
    with pytest.raises(OperationError):  # no write past the last
        wrote(edges, "z")
    assert edges["z"] == (MAX_WRITES, 0)


def _unwraps_or_refuses(data: bytes) -> None:
    """Either DecodeError, or the record and payload whose wrap is exactly ``data``."""
    try:
        record, payload = unwrap(data)
    except DecodeError:
        return
    assert record is not None
    assert wrap(record, payload) == data


_wire = st.recursive(
    st.sampled_from([-1, 0, 1, 2, 5, MAX_WRITES, -(2**63), "a", "b", "", True, None, 2.0, b"a"]),
    lambda inner: (
        st.lists(inner, min_size=1, max_size=4)
        | st.dictionaries(st.text(max_size=2), inner, min_size=1)
    ),
    max_leaves=12,
)


@settings(max_examples=BYTES_EXAMPLES)
@given(
    body=st.binary(max_size=64).map(lambda raw: MARK + raw)
    | st.binary(max_size=64).map(_framed)
    | _wire.map(lambda wire: _framed(msgpack.packb(wire, use_bin_type=True))),
    payload=_payloads,
)
def test_any_bytes_after_the_mark_unwrap_or_raise_decode_error(body: bytes, payload: bytes) -> None:
    _unwraps_or_refuses(body + payload)


@settings(max_examples=BYTES_EXAMPLES)
@given(record=_valid_records, payload=_payloads, seed=_seeds, edits=st.integers(1, 4))
def test_mutated_wraps_unwrap_or_raise_decode_error(
    record: Record, payload: bytes, seed: int, edits: int
) -> None:
    _unwraps_or_refuses(mutated(wrap(record, payload), seed, edits, keep=1))  # the mark stays


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"\xc1", "the mark alone"),
        (_marked(["a", 1, 0])[:-1], "a length past the end"),
        (b"\xc1\x00\x00\x00\x02" + _marked(["a", 1, 0])[5:], "a length short of the record"),
        (_framed(b"\x92\x93\xa1a\x01\x00"), "truncated: an entry missing"),
        (_marked(["b", 1, 0], ["a", 1, 0]), "replicas unsorted"),
        (_marked(["a", 1, 0], ["a", 2, 0]), "a replica twice"),
        (_marked(["", 1, 0]), "an empty replica"),
        (_marked(["a", 0, 0]), "write 0: no write"),
        (_marked(["a", 1, 2]), "more writes deleted than made"),
        (_marked(["a", 2.0**64, 0]), "2**64 writes (past uint64, so only as a float)"),
        (_marked(["a", True, 0]), "a bool count"),
        (_marked([b"a", 1, 0]), "a replica as bytes"),
        (_marked(["a", 2]), "a slot of the old format: an item too few"),
        (_marked(["a", 1, 0, 0]), "an item too many"),
        (_marked(["x" * 1025, 1, 0]), "a replica past 1024 bytes"),
        (_framed(b"\x91\x93\xa2\xff\xfe\x01\x00"), "a replica not UTF-8"),
        (_framed(b"\xdd\xff\xff\xff\xff"), "a huge array header"),
        (_framed(b"\x9f" * 5000), "deeply nested headers"),
        (_framed(b"\x91" * 5000 + b"\x90"), "deeply nested, complete"),
        (_framed(msgpack.packb({"a": [1, 0]})), "a map instead of an array"),
        (_marked(*([f"r{n:05}", 1, 0] for n in range(keylife.MAX_LIFE_SLOTS + 1))), "too many"),
        (_framed(b"\x91\x93\xa1a\xcc\x01\x00"), "not the shortest form: 1 as a uint8"),
        (_framed(b"\xdc\x00\x01\x93\xa1a\x01\x00"), "not the shortest form: an array 16"),
        (_framed(b"\x91\x93\xd9\x01a\x01\x00"), "not the shortest form: a str 8 of one byte"),
    ],
)
def test_malformed_records_raise_decode_error(data: bytes, why: str) -> None:
    with pytest.raises(DecodeError):
        unwrap(data)


@pytest.mark.parametrize(
    "body",
    [
        b"\xdc\x10\x00" * 1000,  # nested headers announcing 4096 items each
        b"\xdc\x0b\xb8" + b"\x90" * 3000,  # 3000 empty entries: built, then refused
        b"\xdc\x10\x00" + b"\x93\xa1a\x01\x00" * 560,
    ],
)
def test_a_3_kb_hostile_record_allocates_little(body: bytes) -> None:
    data = _framed(body)
    assert 2500 <= len(data) <= 3100
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError):
            unwrap(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 16 * len(data) + (1 << 20)

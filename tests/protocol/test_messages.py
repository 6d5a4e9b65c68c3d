"""The wire format: every message survives a round trip; anything else is refused."""

from __future__ import annotations

import msgpack
import pytest

from crdtgossip import security
from crdtgossip._codec.reader import UNCHECKED_INPUT
from crdtgossip.errors import DecodeError
from crdtgossip.protocol.member_messages import AliveIndex, member_record
from crdtgossip.protocol.messages import (
    DIGEST_SIZE,
    FRAME_VERSION,
    MAX_ADDRESS_BYTES,
    MAX_ARRAY_LEN,
    MAX_KEY_BYTES,
    MAX_NODE_ID_BYTES,
    SEAL_OVERHEAD,
    SMALL_FRAME,
    SMALL_FRAME_ITEMS,
    TREE_FANOUT,
    Ack,
    Alive,
    Dead,
    Delta,
    Diff,
    Left,
    MemberRecord,
    Members,
    Message,
    Nack,
    Ping,
    PingReq,
    RangeNode,
    State,
    Suspect,
    Sync,
    TreeNode,
    decode_frame,
    encode_frame,
    encode_message,
    frame_overhead,
)
from crdtgossip.protocol.states import STATUS_CODES, Status

MESSAGES: list[Message] = [
    Ping(1, "b"),
    PingReq(2**64 - 1, "c", "[::1]:7000"),
    Ack(0),
    Nack(17),
    Alive("a", "10.0.0.1:7946", 3),
    Suspect("a", 3, "b"),
    Dead("a", 4, "c"),
    Left("a", 5),
    Delta("hits", b"\x93\x01\x01\x80"),
    State("k\u00e9y", b""),
    Members(
        (MemberRecord("a", "a:1", 0, Status.ALIVE), MemberRecord("b", "b:1", 9, Status.LEFT)),
        True,
        False,
    ),
    Sync(
        (
            TreeNode(0, 0, bytes(range(DIGEST_SIZE)) * TREE_FANOUT, None),
            TreeNode(3, 0xABC, None, (("k1", b"\x01" * DIGEST_SIZE),)),
        ),
        ("wanted",),
        ((1, 15), (16, 2**64 - 1)),
    ),
    Diff(
        "k",
        True,
        b"\x93\x01\x04\x92\x90\x90",
        b"",
        (
            RangeNode("r1", 22, 0, bytes(range(8)) * 16, None),
            RangeNode("r1", 6, 2**58 - 1, None, (64, 65, 2**64 - 1)),
            RangeNode("r1", 10, 3, None, None, bytes(range(128))),
            RangeNode("", 66, 0, None, (), answer=True),
        ),
    ),
]


def test_every_message_survives_a_frame_round_trip() -> None:
    frame = encode_frame("sender", [encode_message(m) for m in MESSAGES])
    decoded = decode_frame(frame, 1 << 20)
    assert decoded.sender == "sender"
    assert decoded.messages == tuple(MESSAGES)


@pytest.mark.parametrize("count", [0, 1, 15, 16, 70_000])
def test_frame_overhead_bounds_the_real_header(count: int) -> None:
    packed = [encode_message(Ack(i)) for i in range(count)]
    frame = encode_frame("node-7", packed)
    assert len(frame) <= frame_overhead("node-7") + sum(map(len, packed))
    assert len(decode_frame(frame, 1 << 24).messages) == count


def test_seal_overhead_matches_the_keyring() -> None:
    assert security.FRAME_OVERHEAD == SEAL_OVERHEAD


def _frame(*items: object, version: int = FRAME_VERSION) -> bytes:
    body: bytes = msgpack.packb(list(items), use_bin_type=True)
    return bytes((version,)) + body


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01",
        _frame("a", version=2),
        _frame(),
        _frame(7),
        _frame("a", [99, 1]),  # unknown kind
        _frame("a", [1, 1]),  # ping missing its target
        _frame("a", [1, -1, "b"]),  # negative seq
        _frame("a", [1, 1.5, "b"]),  # float seq
        _frame("a", [1, True, "b"]),  # a bool is not an int
        _frame("a", [1, 1, ""]),  # empty node id
        _frame("a", [1, 1, "x" * (MAX_NODE_ID_BYTES + 1)]),
        _frame("a", [9, "k" * (MAX_KEY_BYTES + 1), b""]),
        _frame("a", [9, "k", "not bytes"]),
        _frame("a", [11, True, False, [["a", "a:1", 0, 7]]]),  # unknown status
        _frame("a", [12, [[17, 0, None, []]], [], []]),  # too deep
        _frame("a", [12, [[1, 16, None, []]], [], []]),  # prefix out of range
        _frame("a", [12, [[0, 0, b"short", None]], [], []]),
        _frame("a", [12, [[0, 0, None, None]], [], []]),
        _frame("a", [12, [[0, 0, None, [["k", b"x"]]]], [], []]),  # digest size
        _frame("a", [17, "k", True, b"", b""]),  # a diff missing its nodes
        _frame("a", [17, "k", True, b"", b"", [["r", 10, 0, None, None, b"x" * 127, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 14, 0, None, None, b"x" * 2048, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 10, 0, None, [], b"x" * 128, False]]]),
        _frame("a", [17, "k", 1, b"", b"", []]),  # opening must be a bool
        _frame("a", [17, "k", True, "ctx", b"", []]),  # context must be bytes
        _frame("a", [17, "k", True, b"", b"", [["r", 7, 0, None, [], None, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 70, 0, None, [], None, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 62, 4, None, [], None, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 6, 0, b"x" * 128, None, None, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 10, 0, b"short", None, None, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 10, 0, None, None, None, False]]]),
        _frame("a", [17, "k", True, b"", b"", [["r", 10, 0, None, [-1], None, False]]]),
        _frame("a", [17, "k", True, b"", b"", [[1, 10, 0, None, [], None, False]]]),
        _frame("a", {"map": 1}),
        _frame("a") + b"\x00",  # trailing bytes
        _frame("a")[:-1],
        bytes((FRAME_VERSION,)) + b"\xdd\xff\xff\xff\xff",  # a 4-billion-item array
        bytes((FRAME_VERSION,)) + b"\x91" * 100_000,  # deep nesting
        bytes((FRAME_VERSION,)) + msgpack.packb(["a", msgpack.ExtType(1, b"x")]),
        bytes((FRAME_VERSION,)) + b"\x92\xa1a\xc1",  # reserved byte
        bytes((FRAME_VERSION,)) + b"\x92\xa2\xff\xfe\x90",  # invalid UTF-8
    ],
)
def test_malformed_frames_raise_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_frame(data, 1 << 20)


def test_oversized_frames_are_refused_before_decoding() -> None:
    frame = encode_frame("a", [encode_message(Delta("k", b"x" * 2000))])
    assert decode_frame(frame, len(frame)).messages
    with pytest.raises(DecodeError):
        decode_frame(frame, len(frame) - 1)


def test_array_limit_applies() -> None:
    body = msgpack.packb(["a"] + [[3, 1]] * MAX_ARRAY_LEN, use_bin_type=True)
    with pytest.raises(DecodeError):
        decode_frame(bytes((FRAME_VERSION,)) + body, 1 << 24)


def test_a_frame_of_nested_maximum_length_headers_allocates_what_its_bytes_hold() -> None:
    # Issue 18 item 7: a 1.4 KB frame of nested array headers announcing 65,535 items
    # each made msgpack reserve 36 MiB. Now every header is checked against the bytes
    # that follow before anything is built.
    import tracemalloc

    body = b"\x92\xa1a" + b"\xdc\xff\xff" * 460
    data = bytes([FRAME_VERSION]) + body
    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="announces more items"):
            decode_frame(data, 1 << 24)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 16 * len(data) + (1 << 20)


def test_a_datagram_of_nested_headers_within_the_first_try_allocates_little() -> None:
    # Headers that each announce no more than the first try of a small frame allows
    # get past its bound, not past the checked path, and reserve at most what the
    # bound says.
    header = b"\xdc" + SMALL_FRAME_ITEMS.to_bytes(2, "big")
    body = b"\x92\xa1a" + header * ((SMALL_FRAME - 3) // len(header))
    assert UNCHECKED_INPUT < len(body) <= SMALL_FRAME
    import tracemalloc

    tracemalloc.start()
    try:
        with pytest.raises(DecodeError, match="announces more items"):
            decode_frame(bytes([FRAME_VERSION]) + body, 1 << 24)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak <= 16 * len(body) + (1 << 20)


def test_a_small_frame_past_the_first_try_takes_the_checked_path() -> None:
    many = [Ack(i % 100) for i in range(SMALL_FRAME_ITEMS + 1)]  # one array too long
    frame = encode_frame("a", [encode_message(m) for m in many])
    assert len(frame) <= SMALL_FRAME
    assert decode_frame(frame, 1 << 20).messages == tuple(many)
    with pytest.raises(DecodeError, match="bytes after the message array"):
        decode_frame(encode_frame("a", [encode_message(Ack(1))] * 200) + b"\x00", 1 << 20)


def test_equal_alive_rumors_decode_to_one_object_and_pack_to_one_bytes() -> None:
    # A join of N nodes decodes some 10 N² alive rumors of N values: one object each.
    frame = encode_frame("s", [encode_message(Alive("m", "m:1", 1))])
    first = decode_frame(frame, 1 << 20).messages[0]
    assert decode_frame(frame, 1 << 20).messages[0] is first
    assert encode_message(Alive("m", "m:1", 1)) is encode_message(Alive("m", "m:1", 1))


def test_a_bool_incarnation_is_refused_though_an_equal_int_was_decoded() -> None:
    # True == 1 and both hash alike: the reuse of decoded rumors must not let it in.
    decode_frame(encode_frame("s", [encode_message(Alive("m", "m:1", 1))]), 1 << 20)
    forged = bytes((FRAME_VERSION,)) + msgpack.packb(["s", [5, "m", "m:1", True]])
    with pytest.raises(DecodeError):
        decode_frame(forged, 1 << 20)


@pytest.mark.parametrize(
    "forged",
    [
        [5.0, "m", "m:1", 1],  # a float kind, equal to the alive kind
        [5, "m", "m:1", 1.0],  # a float incarnation
        [5, "m", ["m:1"], 1],  # an unhashable field: the careful path says what is wrong
        [5, "m", "m:1", [1]],
    ],
)
def test_a_forged_alive_rumor_is_refused_though_an_equal_one_was_decoded(
    forged: list[object],
) -> None:
    decode_frame(encode_frame("s", [encode_message(Alive("m", "m:1", 1))]), 1 << 20)
    data = bytes((FRAME_VERSION,)) + msgpack.packb(["s", [3, 1], forged])
    with pytest.raises(DecodeError):
        decode_frame(data, 1 << 20)


# --- alive rumors the receiver knows (decode_frame's known_alive) ---------------------

KNOWN = AliveIndex()
KNOWN.note("m", 3)  # known alive at 3
KNOWN.note("local", -1)  # the receiver's own id


def _rumors(*arrays: list[object]) -> bytes:
    return bytes((FRAME_VERSION,)) + msgpack.packb(["s", [3, 1], *arrays, [3, 2]])


def test_a_known_alive_rumor_no_newer_than_known_is_counted_not_returned() -> None:
    data = _rumors(
        [5, "m", "m:1", 0],
        [5, "m", "elsewhere:2", 3],  # another address at the same incarnation: old news
        [5, "m", "m:1", 4],  # newer
        [5, "local", "local:1", 0],  # about the receiver itself: never left out
        [5, "new", "new:1", 0],  # a stranger
    )
    frame = decode_frame(data, 1 << 20, known_alive=KNOWN)
    assert frame.known == 2
    assert frame.messages == (
        Ack(1),
        Alive("m", "m:1", 4),
        Alive("local", "local:1", 0),
        Alive("new", "new:1", 0),
        Ack(2),
    )
    everything = decode_frame(data, 1 << 20)
    assert everything.known == 0
    assert len(everything.messages) == len(frame.messages) + frame.known


def test_an_incarnation_past_the_one_byte_levels_is_left_to_the_member_table() -> None:
    index = AliveIndex()
    index.note("far", 300)  # known at 300: its level says "at 254 or more"
    data = _rumors([5, "far", "far:1", 254], [5, "far", "far:1", 255], [5, "far", "far:1", 300])
    frame = decode_frame(data, 1 << 20, known_alive=index)
    assert frame.known == 1
    assert frame.messages[1:-1] == (Alive("far", "far:1", 255), Alive("far", "far:1", 300))
    index.forget("far")
    assert decode_frame(data, 1 << 20, known_alive=index).known == 0


def test_an_address_past_the_inline_bound_takes_the_full_check() -> None:
    # 75 code points of 4 UTF-8 bytes each are 300 bytes, the most an address may have;
    # 76 of them (304 bytes, within msgpack's str limit) are one too many.
    widest = "\U0001f600" * (MAX_ADDRESS_BYTES // 4)
    assert decode_frame(_rumors([5, "m", widest, 1]), 1 << 20, known_alive=KNOWN).known == 1
    long_ascii = "a" * MAX_ADDRESS_BYTES
    frame = decode_frame(_rumors([5, "m", long_ascii, 1]), 1 << 20, known_alive=KNOWN)
    assert (frame.known, frame.messages[1]) == (0, Alive("m", long_ascii, 1))
    with pytest.raises(DecodeError):
        decode_frame(_rumors([5, "m", widest + "\U0001f600", 1]), 1 << 20, known_alive=KNOWN)


@pytest.mark.parametrize(
    "forged",
    [
        [5, "m", "m:1", True],  # a bool incarnation, equal to 1
        [5, "m", "m:1", False],
        [5.0, "m", "m:1", 1],  # a float kind, equal to the alive kind
        [5, "m", "m:1", 1.0],  # a float incarnation
        [5, "m", "m:1", -1],  # below 0
        [5, "m", b"m:1", 1],  # an address of bytes
        [5, "m", "", 1],  # an empty address
        [5, "m", 7, 1],
        [5, "m", ["m:1"], 1],  # unhashable fields
        [5, ["m"], "m:1", 1],
        [5, "m", "m:1", [1]],
        [5, "m", "a" * (MAX_ADDRESS_BYTES + 1), 1],
    ],
)
def test_a_forged_rumor_about_a_known_member_is_refused(forged: list[object]) -> None:
    # Within what the receiver knows (m alive at 3) it would be left out: it is
    # checked first, and the frame refused.
    decode_frame(encode_frame("s", [encode_message(Alive("m", "m:1", 1))]), 1 << 20)
    with pytest.raises(DecodeError):
        decode_frame(_rumors(forged), 1 << 20, known_alive=KNOWN)


def test_equal_member_records_decode_and_build_to_one_object() -> None:
    # Every push-pull ships N records; N tables hold about the same N rows.
    records = (MemberRecord("m", "m:1", 2, Status.SUSPECT),)
    frame = encode_frame("s", [encode_message(Members(records, False, False))])
    first = decode_frame(frame, 1 << 20).messages[0]
    second = decode_frame(frame, 1 << 20).messages[0]
    assert isinstance(first, Members)
    assert isinstance(second, Members)
    assert first.records == records
    assert second.records[0] is first.records[0]
    assert member_record("m", "m:1", 2, Status.SUSPECT) is first.records[0]


@pytest.mark.parametrize(
    "row",
    [
        ["m", "m:1", True, 1],  # a bool incarnation, equal to 1
        ["m", "m:1", 1, True],  # a bool status code, equal to SUSPECT's
        ["m", "m:1", 1.0, 1],
        ["m", "m:1", 1, [1]],  # unhashable
        ["m", ["m:1"], 1, 1],
    ],
)
def test_a_forged_member_row_is_refused_though_an_equal_one_was_decoded(
    row: list[object],
) -> None:
    records = (MemberRecord("m", "m:1", 1, Status.SUSPECT),)
    decode_frame(encode_frame("s", [encode_message(Members(records, False, False))]), 1 << 20)
    data = bytes((FRAME_VERSION,)) + msgpack.packb(["s", [11, False, False, [row]]])
    with pytest.raises(DecodeError):
        decode_frame(data, 1 << 20)


@pytest.mark.parametrize("rows", [0, 1, 15, 16, 300, 70_000])
@pytest.mark.parametrize(("reply", "join"), [(False, False), (True, False), (True, True)])
def test_a_member_table_packs_as_msgpack_packs_its_wire_array(
    rows: int, reply: bool, join: bool
) -> None:
    statuses = list(Status)
    records = tuple(
        MemberRecord(f"n{i}", f"n{i}:7946", i % 3, statuses[i % 4]) for i in range(rows)
    )
    message = Members(records, reply, join)
    wire = [
        11,
        reply,
        join,
        [[r.node_id, r.address, r.incarnation, STATUS_CODES[r.status]] for r in records],
    ]
    expected = msgpack.packb(wire, use_bin_type=True)
    assert encode_message(message) == expected
    assert encode_message(message) == expected  # the rows packed before

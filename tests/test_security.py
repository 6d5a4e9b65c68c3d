"""Tests of crdtgossip.security: keyring rules, sealed frames, rotation, key files."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crdtgossip import security
from crdtgossip.errors import ConfigError, DecodeError, KeyringError
from crdtgossip.security import (
    FRAME_OVERHEAD,
    FRAME_VERSION,
    KEY_ID_SIZE,
    NONCE_SIZE,
    Keyring,
    decode_key,
    encode_key,
    generate_key,
    key_id,
)

KEY_A = bytes(range(32))
KEY_B = bytes(range(100, 124))  # 24 bytes: AES-192
KEY_C = bytes(range(200, 216))  # 16 bytes: AES-128


# --- construction and key management ---------------------------------------------------


def test_first_key_is_primary_and_keys_keep_order() -> None:
    keyring = Keyring([KEY_A, KEY_B, KEY_C])
    assert keyring.primary == KEY_A
    assert keyring.keys == (KEY_A, KEY_B, KEY_C)


def test_duplicate_keys_are_kept_once_at_first_place() -> None:
    keyring = Keyring([KEY_A, KEY_B, KEY_A])
    assert keyring.keys == (KEY_A, KEY_B)


@pytest.mark.parametrize("size", [0, 1, 15, 17, 23, 31, 33, 64])
def test_keys_of_wrong_size_are_refused(size: int) -> None:
    with pytest.raises(KeyringError, match="16, 24 or 32 bytes"):
        Keyring([b"k" * size])


def test_str_key_is_refused_with_a_hint() -> None:
    with pytest.raises(KeyringError, match="not str"):
        Keyring(["0123456789abcdef"])  # type: ignore[list-item]


def test_a_bare_key_instead_of_a_list_is_refused() -> None:
    with pytest.raises(KeyringError, match=r"Keyring\(\[key\]\)"):
        Keyring(KEY_A)  # type: ignore[arg-type]


def test_empty_keyring_is_refused() -> None:
    with pytest.raises(KeyringError, match="at least one key"):
        Keyring([])


def test_generate_makes_a_32_byte_primary_and_fresh_keys() -> None:
    first, second = Keyring.generate(), Keyring.generate()
    assert len(first.primary) == 32
    assert first.keys == (first.primary,)
    assert first.primary != second.primary
    assert len(generate_key()) == 32


def test_install_adds_without_changing_primary_and_is_idempotent() -> None:
    keyring = Keyring([KEY_A])
    keyring.install(KEY_B)
    keyring.install(KEY_B)
    assert keyring.keys == (KEY_A, KEY_B)
    assert keyring.primary == KEY_A


def test_use_makes_an_installed_key_primary() -> None:
    keyring = Keyring([KEY_A, KEY_B, KEY_C])
    keyring.use(KEY_C)
    assert keyring.primary == KEY_C
    assert keyring.keys == (KEY_C, KEY_A, KEY_B)


def test_use_of_a_key_not_installed_is_refused() -> None:
    keyring = Keyring([KEY_A])
    with pytest.raises(KeyringError, match="not installed"):
        keyring.use(KEY_B)
    assert keyring.keys == (KEY_A,)


def test_remove_drops_a_secondary_key() -> None:
    keyring = Keyring([KEY_A, KEY_B])
    keyring.remove(KEY_B)
    assert keyring.keys == (KEY_A,)


def test_remove_of_the_primary_is_refused() -> None:
    keyring = Keyring([KEY_A, KEY_B])
    with pytest.raises(KeyringError, match="primary"):
        keyring.remove(KEY_A)
    assert keyring.keys == (KEY_A, KEY_B)


def test_remove_of_a_key_not_installed_is_refused() -> None:
    keyring = Keyring([KEY_A])
    with pytest.raises(KeyringError, match="not installed"):
        keyring.remove(KEY_B)


def test_label_too_long_is_refused() -> None:
    Keyring([KEY_A], label=b"x" * 255)
    with pytest.raises(ConfigError, match="at most 255"):
        Keyring([KEY_A], label=b"x" * 256)


def test_repr_shows_no_key_material() -> None:
    text = repr(Keyring([KEY_A]))
    assert KEY_A.hex() not in text
    assert key_id(KEY_A).hex() in text


# --- sealing and opening ---------------------------------------------------------------


def test_seal_then_open_round_trips() -> None:
    keyring = Keyring([KEY_A])
    for plaintext in (b"", b"x", b"hello gossip", os.urandom(5000)):
        frame = keyring.seal(plaintext)
        assert len(frame) == len(plaintext) + FRAME_OVERHEAD
        assert keyring.open(frame) == plaintext


def test_frame_layout_is_version_key_id_nonce_ciphertext() -> None:
    assert FRAME_OVERHEAD == 1 + 4 + 12 + 16
    keyring = Keyring([KEY_B, KEY_A])
    frame = keyring.seal(b"payload")
    assert frame[0] == FRAME_VERSION
    assert frame[1 : 1 + KEY_ID_SIZE] == key_id(KEY_B)
    assert b"payload" not in frame


def test_nonces_are_fresh_per_frame() -> None:
    keyring = Keyring([KEY_A])
    nonces = {keyring.seal(b"same")[5 : 5 + NONCE_SIZE] for _ in range(50)}
    assert len(nonces) == 50


def test_rotation_keeps_old_and_new_frames_opening() -> None:
    # Two nodes rotate from KEY_A to KEY_B one step at a time; at every step each
    # node's frames must open at the other, whichever has switched already.
    node_1, node_2 = Keyring([KEY_A]), Keyring([KEY_A])
    old_frame = node_1.seal(b"sealed under A")

    node_1.install(KEY_B)
    node_2.install(KEY_B)
    assert node_2.open(node_1.seal(b"1")) == b"1"

    node_1.use(KEY_B)  # node_1 switched, node_2 not yet
    new_frame = node_1.seal(b"sealed under B")
    assert new_frame[1:5] == key_id(KEY_B)
    assert node_2.open(new_frame) == b"sealed under B"
    assert node_1.open(node_2.seal(b"still A")) == b"still A"
    assert node_1.open(old_frame) == b"sealed under A"

    node_2.use(KEY_B)
    node_1.remove(KEY_A)
    node_2.remove(KEY_A)
    assert node_2.open(new_frame) == b"sealed under B"
    assert node_1.open(node_2.seal(b"both B")) == b"both B"
    with pytest.raises(DecodeError, match="any installed key"):
        node_1.open(old_frame)


def test_frame_under_any_installed_key_opens() -> None:
    receiver = Keyring([KEY_A, KEY_B, KEY_C])
    for key in (KEY_A, KEY_B, KEY_C):
        assert receiver.open(Keyring([key]).seal(b"m")) == b"m"


def test_frame_opens_when_no_key_id_matches(monkeypatch: pytest.MonkeyPatch) -> None:
    # Key ids can collide or (here, forced) match nothing: the receiver must then try
    # every installed key rather than give up.
    frame = Keyring([KEY_B]).seal(b"m")
    monkeypatch.setattr(security, "key_id", lambda key: b"\x00" * KEY_ID_SIZE)
    receiver = Keyring([KEY_A, KEY_C, KEY_B])
    assert receiver.open(frame) == b"m"


def test_wrong_key_does_not_open() -> None:
    frame = Keyring([KEY_A]).seal(b"secret")
    with pytest.raises(DecodeError, match="any installed key"):
        Keyring([KEY_B, KEY_C]).open(frame)


def test_wrong_label_does_not_open() -> None:
    frame = Keyring([KEY_A], label=b"staging").seal(b"secret")
    assert Keyring([KEY_A], label=b"staging").open(frame) == b"secret"
    with pytest.raises(DecodeError):
        Keyring([KEY_A], label=b"production").open(frame)
    with pytest.raises(DecodeError):
        Keyring([KEY_A]).open(frame)


def test_any_flipped_byte_fails_to_open() -> None:
    keyring = Keyring([KEY_A, KEY_B])
    frame = keyring.seal(b"tamper with me")
    for index in range(len(frame)):
        tampered = bytearray(frame)
        tampered[index] ^= 0x01
        with pytest.raises(DecodeError):
            keyring.open(bytes(tampered))


def test_truncated_and_extended_frames_fail_to_open() -> None:
    keyring = Keyring([KEY_A])
    frame = keyring.seal(b"truncate me")
    for length in range(len(frame)):
        with pytest.raises(DecodeError):
            keyring.open(frame[:length])
    with pytest.raises(DecodeError):
        keyring.open(frame + b"\x00")


def test_empty_frame_fails_to_open() -> None:
    with pytest.raises(DecodeError, match="too short"):
        Keyring([KEY_A]).open(b"")


def test_unknown_version_fails_to_open() -> None:
    keyring = Keyring([KEY_A])
    frame = bytearray(keyring.seal(b"x"))
    frame[0] = FRAME_VERSION + 1
    with pytest.raises(DecodeError, match="version"):
        keyring.open(bytes(frame))


@given(st.binary(max_size=400))
def test_random_bytes_only_ever_raise_decode_error(data: bytes) -> None:
    keyring = Keyring([KEY_A, KEY_B], label=b"cluster")
    with pytest.raises(DecodeError):
        keyring.open(data)


@given(st.binary(max_size=400), st.binary(max_size=255))
def test_any_plaintext_round_trips_under_any_label(plaintext: bytes, label: bytes) -> None:
    keyring = Keyring([KEY_C], label=label)
    assert keyring.open(keyring.seal(plaintext)) == plaintext


# --- key text and files ----------------------------------------------------------------


def test_encode_and_decode_key_round_trip() -> None:
    for key in (KEY_A, KEY_B, KEY_C):
        assert decode_key(encode_key(key)) == key
    assert decode_key("  " + encode_key(KEY_A) + "\n") == KEY_A


@pytest.mark.parametrize("text", ["", "not base64!", "AAAA", "QUJD"])
def test_decode_key_refuses_bad_text(text: str) -> None:
    with pytest.raises(KeyringError):
        decode_key(text)


def test_key_file_round_trips_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keyring"
    keyring = Keyring([KEY_B, KEY_A, KEY_C])
    keyring.to_file(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    loaded = Keyring.from_file(path, label=b"cluster")
    assert loaded.keys == (KEY_B, KEY_A, KEY_C)
    assert loaded.label == b"cluster"
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_key_file_is_replaced_not_appended(tmp_path: Path) -> None:
    path = tmp_path / "keyring"
    Keyring([KEY_A, KEY_B]).to_file(path)
    Keyring([KEY_C]).to_file(path)
    assert Keyring.from_file(path).keys == (KEY_C,)


def test_key_file_ignores_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"# rotated 2024-05\n\n{encode_key(KEY_C)}\n  {encode_key(KEY_A)}  \n")
    assert Keyring.from_file(path).keys == (KEY_C, KEY_A)


def test_key_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text(f"{encode_key(KEY_A)}\nnot-a-key\n")
    with pytest.raises(KeyringError, match="line 2"):
        Keyring.from_file(path)


def test_key_file_without_keys_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "keys.txt"
    path.write_text("# nothing here\n")
    with pytest.raises(KeyringError, match="no key"):
        Keyring.from_file(path)


def test_missing_or_huge_key_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot read"):
        Keyring.from_file(tmp_path / "absent")
    huge = tmp_path / "huge"
    huge.write_bytes(b"#" * (64 * 1024 + 1))
    with pytest.raises(KeyringError, match="larger than"):
        Keyring.from_file(huge)


def test_binary_key_file_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "binary"
    path.write_bytes(b"\xff\xfe" + KEY_A)
    with pytest.raises(KeyringError, match="not ASCII"):
        Keyring.from_file(path)


def test_unwritable_key_file_raises_keyring_error(tmp_path: Path) -> None:
    with pytest.raises(KeyringError, match="cannot write"):
        Keyring([KEY_A]).to_file(tmp_path / "no-such-dir" / "keyring")

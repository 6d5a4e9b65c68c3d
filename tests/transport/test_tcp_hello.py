"""Tests of crdtgossip.transport._tcp_hello: plain and sealed hellos, challenges."""

from __future__ import annotations

import os

import pytest

from crdtgossip import Keyring
from crdtgossip.transport._address import MAX_ADDRESS_LENGTH
from crdtgossip.transport._tcp_frames import frame
from crdtgossip.transport._tcp_hello import (
    TCP_CHALLENGE_SIZE,
    TCP_UNAUTHENTICATED_MAX_FRAME,
    HelloRefused,
    check_hello,
    make_hello,
)

PEER = ("10.0.0.7", 40000)


def test_plain_hello_round_trip_and_wildcard_sender() -> None:
    assert check_hello(make_hello("127.0.0.1:7000", None), PEER, None, None) == "127.0.0.1:7000"
    assert check_hello(make_hello("0.0.0.0:7000", None), PEER, None, None) == "10.0.0.7:7000"


def test_sealed_hello_answers_its_own_challenge_only() -> None:
    keyring = Keyring.generate()
    challenge = os.urandom(TCP_CHALLENGE_SIZE)
    hello = make_hello("127.0.0.1:7000", keyring, challenge)
    assert check_hello(hello, PEER, keyring, challenge) == "127.0.0.1:7000"
    # A recorded hello replayed on another connection meets another challenge.
    with pytest.raises(HelloRefused, match="another challenge") as replayed:
        check_hello(hello, PEER, keyring, os.urandom(TCP_CHALLENGE_SIZE))
    assert replayed.value.authentication


@pytest.mark.parametrize(
    "hello",
    [
        make_hello("127.0.0.1:7000", None),  # unsealed
        make_hello("127.0.0.1:7000", Keyring.generate(), bytes(TCP_CHALLENGE_SIZE)),  # other key
        b"CGT\x02" + b"\x01" * 60,  # garbage where the seal goes
    ],
)
def test_a_keyring_refuses_what_it_cannot_open(hello: bytes) -> None:
    with pytest.raises(HelloRefused) as refused:
        check_hello(hello, PEER, Keyring.generate(), bytes(TCP_CHALLENGE_SIZE))
    assert refused.value.authentication


def test_without_a_keyring_a_sealed_hello_is_malformed() -> None:
    sealed = make_hello("127.0.0.1:7000", Keyring.generate(), bytes(TCP_CHALLENGE_SIZE))
    with pytest.raises(HelloRefused) as refused:
        check_hello(sealed, PEER, None, None)
    assert not refused.value.authentication


def test_a_sealed_hello_needs_a_challenge() -> None:
    with pytest.raises(ValueError, match="challenge"):
        make_hello("127.0.0.1:7000", Keyring.generate())


def test_the_longest_sealed_hello_fits_the_unauthenticated_bound() -> None:
    address = "a" * (MAX_ADDRESS_LENGTH - 6) + ":65535"
    hello = make_hello(address, Keyring.generate(), bytes(TCP_CHALLENGE_SIZE))
    assert len(frame(hello)) <= TCP_UNAUTHENTICATED_MAX_FRAME

"""Tuning of the gossip protocol: every knob, its unit, its default and why.

The defaults follow hashicorp/memberlist (``config.go``: ``DefaultLANConfig``,
``DefaultWANConfig``, ``DefaultLocalConfig``), which has run SWIM with the Lifeguard
extensions in Consul and Nomad clusters of thousands of nodes; where crdtgossip needs a
knob memberlist does not have, the docstring says where the number comes from.

Times are in seconds (``float``), counts are ``int``. A :class:`GossipConfig` is
checked when it is built: a value out of range raises :class:`ConfigError` with a
message naming the field, so a typo in a deployment fails at start-up, not at 3 a.m.
It is frozen; derive a variant with :func:`dataclasses.replace`, which checks again.

Example:
    >>> from crdtgossip.config import GossipConfig
    >>> GossipConfig.lan().probe_interval
    1.0
    >>> GossipConfig.local().probe_timeout
    0.2
    >>> import dataclasses
    >>> dataclasses.replace(GossipConfig.wan(), fanout=5).fanout
    5
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final, Self, TypeAlias

from crdtgossip.errors import ConfigError

__all__ = [
    "MAX_UDP_PAYLOAD",
    "MIN_DATAGRAM",
    "MIN_EXPIRY_SECONDS",
    "ExpiryRule",
    "GossipConfig",
    "check_expiry_rules",
]

MIN_DATAGRAM = 576
"""Smallest ``max_datagram`` accepted, in bytes: the datagram size every IPv4 host must
be able to reassemble (RFC 791). Below it the protocol messages with their longest node
ids and addresses might not fit in one datagram."""

MAX_UDP_PAYLOAD = 65_507
"""Largest ``max_datagram`` accepted, in bytes: the largest payload of one IPv4 UDP
datagram (65,535 minus the 8-byte UDP and 20-byte IP headers)."""

#: ``(pattern, seconds)``: keys equal to ``pattern``, or starting with it when it ends
#: with ``*``, expire once no write reached them for ``seconds``.
ExpiryRule: TypeAlias = tuple[str, float]

MIN_EXPIRY_SECONDS: Final = 1.0
"""The shortest expiry time accepted. A write reaches every live member within the
delivery window (acknowledged delivery retries until the member acknowledges it or is
declared dead: seconds), and a delta that arrives after its key expired at the receiver
starts the key anew there; the expiry time must be well above that window."""


def check_expiry_rules(rules: object) -> tuple[ExpiryRule, ...]:
    """The rules of ``GossipConfig.expire_keys_after``, checked and in a canonical order.

    Args:
        rules: a mapping of pattern to seconds, or an iterable of ``(pattern, seconds)``
            pairs.

    Returns:
        The pairs sorted by pattern (so equal rule sets compare equal).

    Raises:
        ConfigError: a pattern that is not a non-empty str, a ``*`` anywhere but at the
            end, a pattern given twice, or a time that is not a finite number of
            seconds of at least :data:`MIN_EXPIRY_SECONDS`.
    """
    if isinstance(rules, Mapping):
        pairs: Iterable[object] = rules.items()
    elif isinstance(rules, str | bytes) or not isinstance(rules, Iterable):
        raise ConfigError(
            f"expire_keys_after must map key patterns to seconds, not {type(rules).__name__}"
        )
    else:
        pairs = rules
    checked: dict[str, float] = {}
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ConfigError(f"expire_keys_after: {pair!r:.80} is not a (pattern, seconds) pair")
        pattern, seconds = pair
        if not isinstance(pattern, str) or not pattern:
            raise ConfigError(f"expire_keys_after: {pattern!r:.80} is not a key pattern")
        if "*" in pattern[:-1]:
            raise ConfigError(
                f"expire_keys_after: {pattern!r:.80}: '*' may only end a pattern (a prefix)"
            )
        if isinstance(seconds, bool) or not isinstance(seconds, int | float):
            raise ConfigError(f"expire_keys_after[{pattern!r:.80}] must be a number of seconds")
        if not math.isfinite(seconds) or seconds < MIN_EXPIRY_SECONDS:
            raise ConfigError(
                f"expire_keys_after[{pattern!r:.80}] must be finite and at least "
                f"{MIN_EXPIRY_SECONDS} s, not {seconds}"
            )
        if pattern in checked:
            raise ConfigError(f"expire_keys_after: {pattern!r:.80} is given twice")
        checked[pattern] = float(seconds)
    return tuple(sorted(checked.items()))


_INT_FIELDS_MIN_ONE = (
    "indirect_checks",
    "suspicion_mult",
    "suspicion_max_timeout_mult",
    "awareness_max_multiplier",
    "fanout",
    "retransmit_mult",
)
_INTERVAL_FIELDS = (
    "probe_interval",
    "probe_timeout",
    "gossip_interval",
    "push_pull_interval",
    "join_retry_interval",
    "reconnect_interval",
    "dead_retention",
    "max_clock_offset",
    "rollback_check_timeout",
    "deleted_keys_kept",
)


@dataclass(frozen=True, slots=True)
class GossipConfig:
    """Every knob of the gossip protocol, in seconds or counts.

    The field defaults are the LAN preset (:meth:`lan`); :meth:`wan` suits links with
    long or variable round trips, :meth:`local` one machine and tests.

    Attributes:
        probe_interval: seconds between two failure-detection probes (SWIM's protocol
            period). Each probe pings one member, so a failed node is probed within
            about ``N`` intervals. memberlist LAN 1 s, WAN 5 s, local 1 s.
        probe_timeout: seconds to wait for the ack of a direct ping before asking
            ``indirect_checks`` other members to ping the target; about the 99th
            percentile round trip. Must be below ``probe_interval``. memberlist LAN
            500 ms, WAN 3 s, local 200 ms.
        indirect_checks: members asked to ping a target that missed its direct ack
            (SWIM's *k*), so one lossy path does not make a healthy node suspect.
            memberlist 3 (local 1).
        suspicion_mult: scales how long a member stays suspect before it is declared
            dead: the minimum is ``suspicion_mult * max(1, log10 N) * probe_interval``
            seconds, which leaves time for the suspect's refutation to spread.
            memberlist LAN 4, WAN 6, local 3.
        suspicion_max_timeout_mult: the suspicion timeout starts at this multiple of
            the minimum and shrinks towards the minimum as independent members
            confirm the suspicion (Lifeguard). memberlist 6; with the LAN numbers a
            cluster of 10,000 waits between 16 s and 96 s.
        awareness_max_multiplier: ceiling of the Lifeguard local-health multiplier: a
            node that misses acks or must refute suspicions of itself stretches its
            probe interval and timeouts up to this many times, instead of accusing
            healthy peers. memberlist 8 ("probe interval backs off to 8 seconds").
        gossip_interval: seconds between two gossip rounds, each sending the queued
            updates (deltas and membership changes) to ``fanout`` random members.
            Shorter spreads faster at more packets. memberlist LAN 200 ms, WAN 500 ms,
            local 100 ms.
        fanout: members each gossip round sends to (memberlist's ``GossipNodes``).
            memberlist 3 (WAN 4: gossip less often, to one more node).
        retransmit_mult: each update is sent ``retransmit_mult * ceil(log10(N + 1))``
            times in all before it leaves the queue; push gossip then reaches every
            member with high probability (rumor spreading needs about
            ``log2 N + ln N`` rounds, Frieze-Grimmett). memberlist 4 (local 2).
        push_pull_interval: seconds between two anti-entropy exchanges with one random
            member (membership tables and a hash tree of the data), the backstop that
            repairs whatever gossip missed. Scaled up above 32 members as memberlist
            does. memberlist LAN 30 s, WAN 60 s, local 15 s.
        join_retry_interval: seconds between two join attempts while no seed has
            answered yet, so nodes started together in any order find each other.
            Consul's ``retry_interval`` is 30 s; shorter here because a join costs one
            small exchange per seed.
        reconnect_interval: seconds between two attempts to exchange state with one
            random member marked dead, so the two sides of a healed partition find
            each other again. Serf's ``ReconnectInterval`` is 30 s.
        dead_retention: seconds a dead or left member stays in the table (shown by
            ``members()`` and retried by reconnection) before it is forgotten. Serf
            keeps failed members 24 h (``ReconnectTimeout``) and left ones 24 h
            (``TombstoneTimeout``).
        max_datagram: the largest frame in bytes sent by datagram (UDP), sealing
            included; frames that do not fit are marked reliable and go by stream
            (TCP). 1400 fits a 1500-byte Ethernet MTU with room for IP, UDP and tunnel
            headers; memberlist's ``UDPBufferSize`` is 1400.
        max_reliable_frame: the largest frame in bytes sent by stream (TCP), sealing
            included; bigger states are split across frames. 16 MiB: larger than any
            sane single value, and memberlist caps a push-pull state at 20 MB. A key's
            state larger than one frame is not dropped: it goes as a sequence of
            independent parts (sets and maps) or of byte chunks (the other types).
        max_key_bytes: the largest state of one key in bytes of its encoding. A write
            to a key whose size has reached it raises ``OperationError``, and an
            incoming state or chunked transfer past it is refused and counted. The size
            is an estimate kept without encoding (the last measured size plus the
            encodings of every change merged since, so it only overcounts); it is
            measured exactly, with one encoding, when it reaches the limit, at most
            once per 1/16 of the limit of writes. 64 MiB: a decoded state takes 15 to
            65 times its encoding in memory, so a key this size costs every member 1 to
            4 GB (a 10^6-element ORSet of ints encodes to about 10 MB); past it, split
            the data over several keys. Akka Distributed Data advises keeping entries
            far smaller (at most ~100,000 top-level entries).
        max_clock_offset: the largest difference in seconds tolerated between this
            node's wall clock and a peer's, as seen in the last-writer-wins stamps of
            its writes (see :mod:`crdtgossip.protocol.clock`). A delta, state or repair
            carrying a stamp later than this node's clock plus it is refused and
            counted (``drop_clock_ahead``), so a peer with its clock a year ahead
            cannot make its writes win for a year; and when most of the members whose
            stamps were seen lately are ahead of this node by more than it, this node
            reports its own clock behind (the ``clock_behind`` gauge and a warning
            log line). 500 ms, CockroachDB's default ``--max-offset``; keep clocks
            synchronised by NTP well inside it.
        rollback_check_timeout: how long a node restarted from its storage under its
            stored replica id waits in ``Node.start`` for peers to say whether the
            store lost commits (see :mod:`crdtgossip.protocol.rollback`): up to 3
            alive members report the counter slots and dots they hold of its replica;
            if one holds more than the store, the node takes a fresh replica id. The
            wait ends as soon as every member asked has answered, so it costs one
            round trip and a pass over the peers' keys in a healthy cluster; the
            timeout bounds it when no member answers (a node restarted alone, or its
            seeds down), and the node then keeps its id and logs a warning.
        expire_keys_after: which keys expire when no write reached them for a while,
            as ``{pattern: seconds}`` (or ``(pattern, seconds)`` pairs; kept sorted by
            pattern): a pattern is a key, or a prefix ending with ``*`` (``"*"`` alone:
            every key); an exact key wins over prefixes, a longer prefix over a shorter
            one. An expired key is dropped on every member (its state, storage rows and
            anti-entropy entry) with nothing left behind, as Akka Distributed Data's
            ``expire-keys-after-inactivity``; see :mod:`crdtgossip.protocol.expiry`.
            Only writes keep a key alive, not reads. Empty (the default): no key
            expires. Times are at least :data:`MIN_EXPIRY_SECONDS`; keep them well
            above the time a write takes to reach every member.
        deleted_keys_kept: seconds a deleted key's record (its *tombstone*: who wrote
            it, and that a delete saw those writes) is kept after the delete reached
            this node, so a member that was away cannot give the old state back (see
            :mod:`crdtgossip.keylife`). Then the key leaves memory, storage and
            anti-entropy here; a member partitioned away for longer may bring it back.
            6 hours, as Akka Distributed Data keeps its pruning markers.
    """

    probe_interval: float = 1.0
    probe_timeout: float = 0.5
    indirect_checks: int = 3
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    awareness_max_multiplier: int = 8
    gossip_interval: float = 0.2
    fanout: int = 3
    retransmit_mult: int = 4
    push_pull_interval: float = 30.0
    join_retry_interval: float = 5.0
    reconnect_interval: float = 30.0
    dead_retention: float = 24 * 3600.0
    max_datagram: int = 1400
    max_reliable_frame: int = 16 * 1024 * 1024
    max_key_bytes: int = 64 * 1024 * 1024
    max_clock_offset: float = 0.5
    rollback_check_timeout: float = 2.0
    expire_keys_after: tuple[ExpiryRule, ...] = ()
    deleted_keys_kept: float = 6 * 3600.0

    def __post_init__(self) -> None:
        """Check every field.

        Raises:
            ConfigError: a value is of the wrong type, out of range, or inconsistent
                with another field; the message names the field.
        """
        for name in _INTERVAL_FIELDS:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ConfigError(f"{name} must be a number of seconds, not {value!r}")
            if not math.isfinite(value) or value <= 0:
                raise ConfigError(f"{name} must be a positive, finite number of seconds")
        for name in (*_INT_FIELDS_MIN_ONE, "max_datagram", "max_reliable_frame", "max_key_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an int, not {value!r}")
            if value < 1:
                raise ConfigError(f"{name} must be at least 1, not {value}")
        if self.probe_timeout >= self.probe_interval:
            raise ConfigError(
                f"probe_timeout ({self.probe_timeout} s) must be shorter than "
                f"probe_interval ({self.probe_interval} s): the indirect probe needs the "
                "rest of the interval"
            )
        if not MIN_DATAGRAM <= self.max_datagram <= MAX_UDP_PAYLOAD:
            raise ConfigError(
                f"max_datagram must be between {MIN_DATAGRAM} and {MAX_UDP_PAYLOAD} bytes, "
                f"not {self.max_datagram}"
            )
        if self.max_reliable_frame < self.max_datagram:
            raise ConfigError(
                f"max_reliable_frame ({self.max_reliable_frame}) must be at least "
                f"max_datagram ({self.max_datagram})"
            )
        object.__setattr__(self, "expire_keys_after", check_expiry_rules(self.expire_keys_after))

    @classmethod
    def lan(cls) -> Self:
        """memberlist's ``DefaultLANConfig``: one data centre, sub-millisecond RTTs.

        Returns:
            The default configuration.
        """
        return cls()

    @classmethod
    def wan(cls) -> Self:
        """memberlist's ``DefaultWANConfig``: links across regions, RTTs up to seconds.

        Slower probing with longer timeouts and suspicion, gossip less often to one
        more member, anti-entropy every minute.

        Returns:
            The WAN configuration.
        """
        return cls(
            probe_interval=5.0,
            probe_timeout=3.0,
            suspicion_mult=6,
            gossip_interval=0.5,
            fanout=4,
            push_pull_interval=60.0,
            join_retry_interval=30.0,
            reconnect_interval=60.0,
            rollback_check_timeout=10.0,
        )

    @classmethod
    def local(cls) -> Self:
        """memberlist's ``DefaultLocalConfig``: every node on one machine, and tests.

        Fast timeouts, fewer indirect checks and retransmissions, frequent
        anti-entropy.

        Returns:
            The local configuration.
        """
        return cls(
            probe_timeout=0.2,
            indirect_checks=1,
            suspicion_mult=3,
            gossip_interval=0.1,
            retransmit_mult=2,
            push_pull_interval=15.0,
            join_retry_interval=1.0,
            reconnect_interval=15.0,
        )

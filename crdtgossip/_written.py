"""The last-write stamps of expiring keys, as a node keeps them in its storage.

A key that expires (``GossipConfig.expire_keys_after``) goes when no write reached it for
its time, measured from its last-write stamp (see :mod:`crdtgossip.protocol.expiry`).
That stamp must survive a restart: a node that came back stamping its keys "now" would
keep every idle key alive one more period, and give it back to the members that had
dropped it. So the node stores it beside the key, under a reserved storage key
(:func:`stamp_key`: U+0000, which no data key starts with), as an
:class:`~crdtgossip.LWWRegister` whose timestamp is the stamp: the storage folds the
appended records of it like any state, keeping the largest. The node reads them back
when it starts (``_persistence.read_stored``).
"""

from __future__ import annotations

from typing import Final

from crdtgossip.codec import encode
from crdtgossip.crdts import LWWRegister
from crdtgossip.protocol.wire import RESERVED_KEY_PREFIX

__all__ = ["STAMP_PREFIX", "encode_stamp", "is_reserved", "stamp_key"]

STAMP_PREFIX: Final = RESERVED_KEY_PREFIX + "written/"
"""The storage key of data key ``k``'s stamp is ``STAMP_PREFIX + k``."""


def stamp_key(key: str) -> str:
    """The storage key that holds data key ``key``'s last-write stamp."""
    return STAMP_PREFIX + key


def is_reserved(storage_key: str) -> bool:
    """Whether a storage key is one of crdtgossip's own records, not a data key."""
    return storage_key.startswith(RESERVED_KEY_PREFIX)


def encode_stamp(stamp: int, replica: str) -> bytes:
    """The record of a last-write stamp (ns, > 0) written by ``replica``."""
    return encode(LWWRegister[int]().set(0, replica, timestamp=stamp))

"""The format's constants (version, extension code, type tags) and the decoder's limits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeAlias

#: Bumped on any incompatible change of the layout; decode refuses other versions.
FORMAT_VERSION = 1

#: msgpack extension type code carrying a tuple (its items as a packed msgpack array).
TUPLE_EXT_CODE = 1

# Type tags: small integers, fixed forever (a tag is never reused for another layout).
TAG_GCOUNTER, TAG_PNCOUNTER, TAG_GSET, TAG_ORSET, TAG_EWFLAG = 1, 2, 3, 4, 5
TAG_LWWREGISTER, TAG_MVREGISTER, TAG_LWWMAP, TAG_ORMAP = 6, 7, 8, 9

#: The first tag of the users' range. Built-in types use 1 to 9 today; everything below
#: 1024 stays reserved for crdtgossip's own types in any later format, so a user's tag
#: can never collide with a type added by an upgrade.
USER_TAG_MIN = 1024

#: The last tag of the users' range: tags up to 65,535 cost at most three bytes
#: (msgpack uint16), and 64,512 tags are more than one deployment registers.
USER_TAG_MAX = 65535

#: The highest body version a type may declare; 65,535 versions cost three bytes at
#: most, like the tags.
MAX_BODY_VERSION = 65535

#: msgpack extension code of a registered type inside a value (a tuple is code 1).
USER_VALUE_EXT_CODE = 2


#: Tuple extension payloads may add up to this many times the input's size (each level
#: of nested tuples is a copy of the level inside it); bounds decode memory to a small
#: multiple of the input.
EXT_COPY_FACTOR = 4

#: The largest and smallest integers msgpack carries (uint64 and int64).
INT_MAX = 2**64 - 1
INT_MIN = -(2**63)


@dataclass(frozen=True)
class Limits:
    """Hard limits applied by :func:`decode`; every one is checked before allocating.

    Attributes:
        max_bytes: the largest input accepted. 16 MiB, the TCP frame limit of the node:
            a state larger than that is not sent in one piece anyway. (Akka's remote
            frame default is 256 KiB; memberlist caps a push-pull at 10 MiB of state.)
        max_collection_len: the most items in one msgpack array or map; bounds the
            allocation a header can request. One block of an ORSet holds one replica's
            live dots, so this is also the largest per-replica set decoded.
        max_str_len: the longest str or bytes value. 1 MiB: replica ids, keys and
            values are small; large blobs do not belong in a CRDT element.
        max_depth: the deepest nesting of tuples, lists and dicts inside one value,
            and of ORMaps inside ORMaps. 32 levels, far above any real schema, far below
            the interpreter's recursion limit.
    """

    max_bytes: int = 16 * 1024 * 1024
    max_collection_len: int = 4 * 1024 * 1024
    max_str_len: int = 1024 * 1024
    max_depth: int = 32


#: The limits used when none are given.
DEFAULT_LIMITS = Limits()

Wire: TypeAlias = Any  # a structure of msgpack-native objects, before packing

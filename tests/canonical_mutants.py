"""Non-canonical variants of valid encodings, made by mutation, for the strict decoder.

A valid encoding is parsed into its msgpack tree and written back by :func:`write`,
which gives the same bytes as msgpack (checked for every source) except at one chosen
node, where it applies one mutation:

* **form** mutations change how a node is written, never what it is: an integer, a
  str, bytes, an array, a map or an extension with a wider header than needed, a
  float64 as a float32 (when exact). The result decodes, in msgpack, to the same tree,
  so it is never what ``encode`` writes: each must be a DecodeError.
* **order** mutations change the tree: two items of an array swapped, an item
  duplicated, an array or a map reversed. Most make an invalid or non-canonical state
  (unsorted, duplicated); some make another valid state (two items of a list value
  swapped). Each must be a DecodeError *or* the canonical encoding of what it decodes
  to: never accepted in a form ``encode`` would not write.

msgpack cannot write non-minimal forms, hence the small writer here (test code only).
Run as a script for a long bounded run: ``python -m tests.canonical_mutants 1000000``.
"""

from __future__ import annotations

import contextlib
import random
import struct
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from crdtgossip import (
    CRDT,
    DecodeError,
    EWFlag,
    GCounter,
    GSet,
    LWWMap,
    LWWRegister,
    MVRegister,
    ORMap,
    ORSet,
    PNCounter,
    decode,
    encode,
)
from crdtgossip.codec import registration_of
from tests.maxregister import MaxRegister, registered

FORM_MUTATIONS = ("widen",)
ORDER_MUTATIONS = ("swap", "duplicate", "reverse")


@dataclass(frozen=True)
class Ext:
    """An extension in the tree, its payload parsed too."""

    code: int
    payload: Any


def parse(data: bytes) -> Any:
    """The msgpack tree of ``data``, extension payloads included."""
    return msgpack.unpackb(
        data, raw=False, strict_map_key=False, ext_hook=lambda code, b: Ext(code, parse(b))
    )


def _pick(forms: list[bytes], widen: bool) -> tuple[bytes, bool]:
    """The shortest form, or with ``widen`` the next one; and whether it widened."""
    if widen and len(forms) > 1:
        return forms[1], True
    return forms[0], False


def _int(n: int, widen: bool) -> tuple[bytes, bool]:
    if n >= 0:
        forms = [struct.pack("B", n)] if n < 128 else []
        for byte, width, bound in ((0xCC, ">B", 8), (0xCD, ">H", 16), (0xCE, ">I", 32)):
            if n < 2**bound:
                forms.append(bytes([byte]) + struct.pack(width, n))
        forms.append(b"\xcf" + struct.pack(">Q", n))
    else:
        forms = [struct.pack("b", n)] if n >= -32 else []
        for byte, width, bound in ((0xD0, ">b", 7), (0xD1, ">h", 15), (0xD2, ">i", 31)):
            if n >= -(2**bound):
                forms.append(bytes([byte]) + struct.pack(width, n))
        forms.append(b"\xd3" + struct.pack(">q", n))
    return _pick(forms, widen)


def _header(
    length: int, fix: tuple[int, int] | None, sized: list[tuple[int, str]], widen: bool
) -> tuple[bytes, bool]:
    """A length header: ``fix`` (base byte, largest length), then the sized forms."""
    forms: list[bytes] = []
    if fix is not None and length <= fix[1]:
        forms.append(bytes([fix[0] | length]))
    for byte, width in sized:
        if length < 2 ** (8 * struct.calcsize(width)):
            forms.append(bytes([byte]) + struct.pack(width, length))
    return _pick(forms, widen)


_STR = [(0xD9, ">B"), (0xDA, ">H"), (0xDB, ">I")]
_BIN = [(0xC4, ">B"), (0xC5, ">H"), (0xC6, ">I")]
_ARRAY = [(0xDC, ">H"), (0xDD, ">I")]
_MAP = [(0xDE, ">H"), (0xDF, ">I")]
_FIXEXT = {1: 0xD4, 2: 0xD5, 4: 0xD6, 8: 0xD7, 16: 0xD8}


def _ext_header(length: int, code: int, widen: bool) -> tuple[bytes, bool]:
    forms = [bytes([_FIXEXT[length]])] if length in _FIXEXT else []
    for byte, width in ((0xC7, ">B"), (0xC8, ">H"), (0xC9, ">I")):
        if length < 2 ** (8 * struct.calcsize(width)):
            forms.append(bytes([byte]) + struct.pack(width, length))
    header, widened = _pick(forms, widen)
    return header + struct.pack(">b", code), widened


def _exact_float32(number: float) -> bool:
    try:
        return bool(struct.unpack(">f", struct.pack(">f", number))[0] == number)
    except OverflowError:  # past float32's range
        return False


class _Writer:
    """Writes a tree, mutating the node numbered ``target`` in pre-order."""

    def __init__(self, target: int, mutation: str | None, rng: random.Random) -> None:
        self.target, self.mutation, self.rng = target, mutation, rng
        self.index = -1
        self.applied = False

    def write(self, node: Any) -> bytes:
        self.index += 1
        mutate = self.index == self.target and self.mutation is not None
        widen = mutate and self.mutation == "widen"
        if node is None:
            return b"\xc0"
        if node is True or node is False:
            return b"\xc3" if node else b"\xc2"
        if isinstance(node, int):
            return self._note(_int(node, widen))
        if isinstance(node, float):
            if widen and _exact_float32(node):
                self.applied = True
                return b"\xca" + struct.pack(">f", node)
            return b"\xcb" + struct.pack(">d", node)
        if isinstance(node, str):
            raw = node.encode()
            return self._note(_header(len(raw), (0xA0, 31), _STR, widen)) + raw
        if isinstance(node, bytes):
            return self._note(_header(len(node), None, _BIN, widen)) + node
        if isinstance(node, Ext):
            payload = self.write(node.payload)
            return self._note(_ext_header(len(payload), node.code, widen)) + payload
        if isinstance(node, list):
            items = self._reordered(list(node), mutate)
            head = self._note(_header(len(items), (0x90, 15), _ARRAY, widen))
            return head + b"".join(self.write(item) for item in items)
        if isinstance(node, dict):
            pairs = list(node.items())
            if mutate and self.mutation == "reverse" and len(pairs) > 1:
                pairs.reverse()
                self.applied = True
            head = self._note(_header(len(pairs), (0x80, 15), _MAP, widen))
            return head + b"".join(self.write(k) + self.write(v) for k, v in pairs)
        raise TypeError(f"unexpected {type(node).__name__} in a tree")

    def _note(self, written: tuple[bytes, bool]) -> bytes:
        self.applied |= written[1]
        return written[0]

    def _reordered(self, items: list[Any], mutate: bool) -> list[Any]:
        if not mutate or not items:
            return items
        if self.mutation == "duplicate":
            at = self.rng.randrange(len(items))
            items.insert(at, items[at])
            self.applied = True
        elif self.mutation == "swap" and len(items) > 1:
            at = self.rng.randrange(len(items) - 1)
            items[at], items[at + 1] = items[at + 1], items[at]
            self.applied = True
        elif self.mutation == "reverse" and len(items) > 1:
            items.reverse()
            self.applied = True
        return items


def write(tree: Any, target: int = -1, mutation: str | None = None, seed: int = 0) -> bytes | None:
    """``tree`` written as msgpack; with a ``mutation`` at node ``target``, or None when
    that node has no such variant (a bool has no wider form)."""
    writer = _Writer(target, mutation, random.Random(seed))
    data = writer.write(tree)
    if mutation is not None and not writer.applied:
        return None
    return data


def count_nodes(tree: Any) -> int:
    if isinstance(tree, Ext):
        return 1 + count_nodes(tree.payload)
    if isinstance(tree, list):
        return 1 + sum(count_nodes(item) for item in tree)
    if isinstance(tree, dict):
        return 1 + sum(count_nodes(k) + count_nodes(v) for k, v in tree.items())
    return 1


# ---- the valid encodings mutated ----------------------------------------------------------

_ELEMENTS: list[Any] = [
    0,
    1,
    127,
    128,
    255,
    256,
    65_535,
    65_536,
    2**32,
    2**64 - 1,
    -1,
    -32,
    -33,
    -129,
    -(2**15) - 1,
    -(2**31) - 1,
    -(2**63),
    1.5,
    -2.25,
    1.5e-300,
    float("inf"),
    "",
    "x",
    "a" * 31,
    "b" * 32,
    "c" * 300,
    b"",
    b"\x00" * 20,
    None,
    (1, "t"),
    ((2.5,), b"y"),
    (),
]
_VALUES: list[Any] = [*_ELEMENTS, True, False, 0.0, -0.0, [1, 2], {"b": 1, "a": [None]}]
_REPLICAS = ["a", "b", "ccc", "r" * 40]


def _random_state(rng: random.Random) -> CRDT:
    def element() -> Any:
        return rng.choice(_ELEMENTS)

    def replica() -> str:
        return rng.choice(_REPLICAS)

    def stamp() -> int:
        return rng.choice([0, 1, 2**20, 2**40])

    writers: dict[str, Callable[[Any], object]] = {
        "gcounter": lambda s: s.increment(replica(), rng.choice([1, 200, 2**33])),
        "pncounter": lambda s: s.decrement(replica(), rng.choice([1, 70_000])),
        "gset": lambda s: s.add(element()),
        "orset": lambda s: (
            s.add(element(), replica()) if rng.random() < 0.7 else s.remove(element())
        ),
        "ewflag": lambda s: s.enable(replica()) if rng.random() < 0.7 else s.disable(),
        "lwwregister": lambda s: s.set(rng.choice(_VALUES), replica(), stamp()),
        "mvregister": lambda s: s.set(rng.choice(_VALUES), replica()),
        "lwwmap": lambda s: s.set(element(), rng.choice(_VALUES), replica(), stamp()),
        "maxregister": lambda s: s.write(rng.choice([0, 3, 2**40])),
    }
    factories: dict[str, Callable[[], Any]] = {
        "gcounter": GCounter,
        "pncounter": PNCounter,
        "gset": GSet,
        "orset": ORSet,
        "ewflag": EWFlag,
        "lwwregister": LWWRegister,
        "mvregister": MVRegister,
        "lwwmap": LWWMap,
        "maxregister": MaxRegister,
    }
    name = rng.choice(sorted(writers))
    if rng.random() < 0.35:
        state: Any = ORMap(factories[name])
        for _ in range(rng.randint(1, 6)):
            key = element()
            if rng.random() < 0.2:
                state.remove(key)
            else:
                state.update(key, replica(), writers[name])
        return state  # type: ignore[no-any-return]
    state = factories[name]()
    # Replicas that merge each other's states leave dot clouds in causal contexts.
    other = factories[name]()
    for _ in range(rng.randint(0, 8)):
        writers[name](state if rng.random() < 0.7 else other)
    if rng.random() < 0.5:
        state.merge(other)
    return state  # type: ignore[no-any-return]


@dataclass
class Tally:
    """What a run of mutants found."""

    form_refused: int = 0
    order_refused: int = 0
    order_canonical: int = 0
    sources: int = 0
    accepted: list[bytes] | None = None

    @property
    def mutants(self) -> int:
        return self.form_refused + self.order_refused + self.order_canonical


def mutants(seed: int) -> Iterator[tuple[str, bytes, bytes]]:
    """Endless ``(mutation, source, mutant)`` triples, deterministic for ``seed``."""
    rng = random.Random(seed)
    while True:
        source = encode(_random_state(rng))
        tree = parse(source)
        assert write(tree) == source, f"the writer is not msgpack's on {source.hex()}"
        nodes = count_nodes(tree)
        for _ in range(min(4 * nodes, 64)):
            mutation = rng.choice([*FORM_MUTATIONS, *FORM_MUTATIONS, *ORDER_MUTATIONS])
            mutant = write(tree, rng.randrange(nodes), mutation, rng.randrange(2**32))
            if mutant is not None and mutant != source:
                yield mutation, source, mutant


def run(count: int, seed: int) -> Tally:
    """Decode ``count`` mutants; tally them, keeping any accepted in a non-canonical form."""
    tally = Tally(accepted=[])
    with contextlib.ExitStack() as stack:
        if registration_of(MaxRegister) is None:
            stack.enter_context(registered())
        for mutation, _, mutant in _take(mutants(seed), count):
            try:
                state = decode(mutant)
            except DecodeError:
                if mutation in FORM_MUTATIONS:
                    tally.form_refused += 1
                else:
                    tally.order_refused += 1
                continue
            if mutation in FORM_MUTATIONS or encode(state) != mutant:
                tally.accepted.append(mutant)  # type: ignore[union-attr]
            else:
                tally.order_canonical += 1
    return tally


def _take(
    items: Iterator[tuple[str, bytes, bytes]], count: int
) -> Iterator[tuple[str, bytes, bytes]]:
    for index, item in enumerate(items):
        if index >= count:
            return
        yield item


def main(argv: list[str]) -> int:
    """``python -m tests.canonical_mutants [COUNT] [SEED]``: a long bounded run."""
    count = int(argv[0]) if argv else 1_000_000
    seed = int(argv[1]) if len(argv) > 1 else 1
    started = time.perf_counter()
    tally = run(count, seed)
    seconds = time.perf_counter() - started
    print(
        f"{tally.mutants:,} mutants in {seconds:.1f} s: {tally.form_refused:,} form mutants "
        f"refused, {tally.order_refused:,} order mutants refused, {tally.order_canonical:,} "
        f"order mutants that are another state's canonical encoding, "
        f"{len(tally.accepted or []):,} accepted in a non-canonical form"
    )
    return 1 if tally.accepted else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Against Python peers: crdtgossip beside ``crdts`` and ``python3-crdt`` from PyPI.

The peers are installed only in the bench environment (``nox -s bench`` pins the versions
read here: crdts 0.0.4, python3-crdt 1.0.3). A peer that cannot be imported is skipped and
the notes say so; crdtgossip's own figures and semantics checks still run.

**Ratios** divide crdtgossip's figure by the peer's, measured in the same rounds
(``crdtgossip / crdts``, ``crdtgossip / python3-crdt``): costs, so lower is better for
crdtgossip, and below 1 crdtgossip is the faster (or smaller) one. All timing is on the
thread's CPU clock, each sample on fresh inputs, the cases of one comparison in turn.

What each peer offers, read from its source:

* ``crdts`` (import ``crdts``) works by state updates: the replicas of one object share a
  clock uuid, every operation returns a ``StateUpdate`` that the others ``update()`` with,
  and ``history()`` lists the updates that bring another replica up to date. It has no
  state merge, so a merge here applies the other replica's ``history()`` (built before the
  clock starts). Its ``ORSet`` stamps each element with a Lamport time (the later of add
  and remove wins, an add wins a tie) and keeps one tombstone per removed element.
  ``Counter`` and ``PNCounter`` hold one integer each, joined by max; ``CounterSet`` keeps a
  PN-counter per replica id and is the type compared with crdtgossip's ``PNCounter``.
  ``LWWRegister`` breaks timestamp ties by writer id, then value. Every operation costs
  tens of microseconds, so its sizes are smaller than bench_orset's.
* ``python3-crdt`` (import ``py3crdt``) is state-based (``merge(other)``). Its ``ORSet``
  keeps lists of ``{elem, tags}`` with tags the caller supplies, scanned linearly and
  re-sorted on every add, remove and merge: n adds cost O(n^2) and a merge O(n*m), so its
  sizes are capped lower still. Its ``GCounter`` needs every replica id registered on every
  replica (``add_new_node``); counters are compared through it, with crdtgossip's
  ``GCounter``. It has no LWW register (only an LWW element set).

Timed, for each peer: ``ORSet`` adds of n new elements; the merge of two independent
n-element replicas (half the elements overlapping) followed by one membership test, into
a receiver that has served a read (as bench_orset does: crdtgossip rebuilds its element
index and crdts its cached view on that read); counter increments, and counter merges
per replica slot; (crdts only) register writes each merged into a second register.
Memory: bytes still allocated after n add/remove pairs of distinct elements.

Semantics, run on every library with the same scenario (a check passes when the
library does what an add-wins OR-Set, a G/PN-counter and an LWW register promise):

* *concurrent increments*: two replicas increment once each, then exchange states: 2.
* *concurrent add/remove*: both replicas hold x; one adds x again while the other removes
  it; after the exchange x is on both (the remove did not see that add).
* *concurrent add/remove, remover's clock ahead*: the same after the remover made three
  unrelated adds first (a timestamp-ordered set then lets the remove win).
* *remove then re-add*: x removed on one replica and merged back, then added again: x is
  on both after the exchange.
* *merge idempotent and commutative*: a+b equals b+a, and merging either again changes
  nothing (compared by the elements each holds).
* *replica unchanged until it merges*: after b merged a and removed x, an add of x on a
  must not show on b before b merges again.
* *remove of an absent element*: on an empty replica, remove x then add y: y is there.
* *equal-timestamp tie*: two registers written concurrently at the same timestamp read
  the same value after the exchange.

A replica merges a copy of the other's state, as one in another process would, except
in *replica unchanged until it merges*, which merges the live object. An exception or a
peer type that cannot be built fails its check, with the error quoted.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import importlib.metadata
import io
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any

from benchmarks._measure import CPU_CLOCK, Case, Timing, retained_bytes, time_cases
from benchmarks._result import BenchResult, Figure
from crdtgossip import GCounter, LWWRegister, ORSet, PNCounter

__all__ = ["run"]

#: PyPI names of the peers, as the notes and params show them.
CRDTS = "crdts"
PY3CRDT = "python3-crdt"
#: Modules each peer must provide (python3-crdt's package has no top-level exports).
CRDTS_MODULES = ("crdts",)
PY3CRDT_MODULES = ("py3crdt.orset", "py3crdt.gcounter", "py3crdt.pncounter")
#: What params record for a peer that could not be imported.
NOT_INSTALLED = "not installed"

#: Samples per case: odd, so the median is a sample.
REPEATS = 5
QUICK_REPEATS = 3
#: The clock of every timed case (see benchmarks._measure.CPU_CLOCK).
CLOCK_NAME = "thread_time_ns"

#: One clock uuid shared by the crdts replicas of each object (crdts refuses an update
#: from another uuid): any 16 bytes do.
SHARED_CLOCK = b"crdtgossip-bench"
#: An element no replica ever holds: the membership test after a merge.
_ABSENT = -1


@dataclass(frozen=True)
class _Sizes:
    crdts_elements: int
    py3_elements: int
    crdts_churn: int
    py3_churn: int
    increments: int
    counter_slots: int
    counter_merges: int
    register_writes: int
    repeats: int


#: Full run. crdts spends ~80 us per ORSet operation (type checks on every update), so
#: 10,000 elements keep each sample near a second; python3-crdt's ORSet is quadratic
#: (2,000 adds take ~0.3 s, 4,000 ~1.2 s), so it stops at 2,000.
FULL = _Sizes(
    crdts_elements=10_000,
    py3_elements=2_000,
    crdts_churn=10_000,
    py3_churn=2_000,
    increments=10_000,
    counter_slots=1_000,
    counter_merges=5,
    register_writes=10_000,
    repeats=REPEATS,
)
#: --quick: a smoke test of a few seconds; the figures mean little.
QUICK = _Sizes(
    crdts_elements=200,
    py3_elements=100,
    crdts_churn=200,
    py3_churn=100,
    increments=200,
    counter_slots=20,
    counter_merges=2,
    register_writes=200,
    repeats=QUICK_REPEATS,
)


def run(quick: bool) -> BenchResult:
    """Run the peer comparison; ``quick`` shrinks every size for a smoke test."""
    sizes = QUICK if quick else FULL
    crdts = _import(CRDTS_MODULES)
    py3 = _import(PY3CRDT_MODULES)
    result = BenchResult(
        title="crdtgossip beside the Python peers crdts and python3-crdt",
        params={
            "quick": quick,
            "crdts": _version(CRDTS) if crdts else NOT_INSTALLED,
            "python3_crdt": _version(PY3CRDT) if py3 else NOT_INSTALLED,
            "crdts_elements": sizes.crdts_elements,
            "py3crdt_elements": sizes.py3_elements,
            "crdts_churn_pairs": sizes.crdts_churn,
            "py3crdt_churn_pairs": sizes.py3_churn,
            "increments": sizes.increments,
            "counter_slots": sizes.counter_slots,
            "counter_merges": sizes.counter_merges,
            "register_writes": sizes.register_writes,
            "repeats": sizes.repeats,
            "clock": CLOCK_NAME,
        },
    )
    result.notes.append(
        "ratios are crdtgossip / peer on the same work in the same rounds: lower is better "
        "for crdtgossip, below 1 it is faster or smaller"
    )
    if crdts is None:
        result.notes.append(f"peer {CRDTS} not installed: its timings and checks skipped")
    else:
        mod = crdts["crdts"]
        result.notes.append(
            f"{CRDTS} has no state merge: its merges apply the other replica's history() "
            f"(one update per element or counter id, built off the clock); sizes "
            f"{sizes.crdts_elements:,} elements and {sizes.crdts_churn:,} churn pairs, "
            f"its operations costing tens of microseconds"
        )
        crdts_orsets = _CrdtsTimed(mod)
        _orset_add(result, CRDTS, sizes.crdts_elements, crdts_orsets, sizes)
        _orset_merge(result, CRDTS, sizes.crdts_elements, crdts_orsets, sizes)
        _pn_counter(result, mod, sizes)
        _register(result, mod, sizes)
        _churn_memory(result, CRDTS, sizes.crdts_churn, crdts_orsets)
    if py3 is None:
        result.notes.append(f"peer {PY3CRDT} not installed: its timings and checks skipped")
    else:
        result.notes.append(
            f"{PY3CRDT} ORSet capped at {sizes.py3_elements:,} elements and "
            f"{sizes.py3_churn:,} churn pairs: every add, remove and merge scans and "
            f"re-sorts its lists (n adds O(n^2), a merge O(n*m))"
        )
        result.notes.append(
            f"{PY3CRDT} has no LWW register (only an LWW element set): register timing "
            f"and the tie check skipped; its counters are timed through GCounter"
        )
        py3_orsets = _Py3Timed(py3["py3crdt.orset"])
        _orset_add(result, PY3CRDT, sizes.py3_elements, py3_orsets, sizes)
        _orset_merge(result, PY3CRDT, sizes.py3_elements, py3_orsets, sizes)
        _g_counter(result, py3["py3crdt.gcounter"], sizes)
        _churn_memory(result, PY3CRDT, sizes.py3_churn, py3_orsets)
    _semantics(result, crdts, py3)
    return result


# ---- loading the peers ----------------------------------------------------------------
def _import(names: Sequence[str]) -> dict[str, ModuleType] | None:
    """The modules ``names``, or None when any of them cannot be imported."""
    try:
        return {name: importlib.import_module(name) for name in names}
    except ImportError:
        return None


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _time(cases: Mapping[str, Case[Any]], sizes: _Sizes) -> dict[str, Timing]:
    return time_cases(cases, repeats=sizes.repeats, clock=CPU_CLOCK)


def _compare(
    result: BenchResult, what: str, peer: str, mine: Timing, theirs: Timing, note: str
) -> None:
    """Record crdtgossip's and the peer's time for ``what`` and their ratio."""
    ours = result.figure(Figure.time_per_op(f"{what}: crdtgossip", mine, note))
    other = result.figure(Figure.time_per_op(f"{what}: {peer}", theirs, note))
    result.ratio(f"{what}: crdtgossip / {peer}", ours.name, other.name)


# ---- the ORSet of each library, for timing --------------------------------------------
class _OrsetTimed(ABC):
    """How to build, copy, fill, merge and read one library's ORSet.

    The timed loops are module-level functions (``adds``, ``merge_read``, ``churn``), so
    each library's loop is as lean as the other's: no method lookup on this object per
    operation.
    """

    def build(self, replica: str, elements: Iterable[int]) -> Any:
        """A replica that added ``elements`` (and served one read)."""
        state = self.empty(replica)
        for element in elements:
            self.add(state, element, replica)
        self.read(state)
        return state

    @abstractmethod
    def empty(self, replica: str) -> Any:
        """A new empty replica."""

    @abstractmethod
    def add(self, state: Any, element: int, replica: str) -> None:
        """One add, outside the timed loops (used by :meth:`build`)."""

    @abstractmethod
    def fresh_receiver(self, state: Any) -> Any:
        """An independent copy of ``state`` that has served a read."""

    def payload(self, state: Any) -> Any:
        """What a merge receives from ``state``, built before the clock starts."""
        return state

    @abstractmethod
    def read(self, state: Any) -> None:
        """One membership test."""

    adds: Callable[[Any, list[int]], None]
    merge_read: Callable[[Any, Any], None]
    churn: Callable[[Any, int], None]


def _cg_adds(state: ORSet[int], elements: list[int]) -> None:
    for element in elements:
        state.add(element, "a")


def _cg_merge_read(receiver: ORSet[int], other: ORSet[int]) -> None:
    receiver.merge(other)
    _ = _ABSENT in receiver


def _cg_churn(state: ORSet[int], pairs: int) -> None:
    for element in range(pairs):
        state.add(element, "a")
        state.remove(element)


class _CgTimed(_OrsetTimed):
    adds = staticmethod(_cg_adds)
    merge_read = staticmethod(_cg_merge_read)
    churn = staticmethod(_cg_churn)

    def empty(self, replica: str) -> ORSet[int]:
        return ORSet()

    def add(self, state: Any, element: int, replica: str) -> None:
        state.add(element, replica)

    def fresh_receiver(self, state: Any) -> ORSet[int]:
        receiver: ORSet[int] = state.copy()
        self.read(receiver)
        return receiver

    def read(self, state: Any) -> None:
        _ = _ABSENT in state


def _crdts_adds(state: Any, elements: list[int]) -> None:
    for element in elements:
        state.observe(element)


def _crdts_merge_read(receiver: Any, updates: Any) -> None:
    for update in updates:
        receiver.update(update)
    _ = _ABSENT in receiver.read()


def _crdts_churn(state: Any, pairs: int) -> None:
    for element in range(pairs):
        state.observe(element)
        state.remove(element)


class _CrdtsTimed(_OrsetTimed):
    adds = staticmethod(_crdts_adds)
    merge_read = staticmethod(_crdts_merge_read)
    churn = staticmethod(_crdts_churn)

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def empty(self, replica: str) -> Any:
        return self._module.ORSet(clock=self._module.ScalarClock(uuid=SHARED_CLOCK))

    def add(self, state: Any, element: int, replica: str) -> None:
        state.observe(element)

    def fresh_receiver(self, state: Any) -> Any:
        receiver = copy.deepcopy(state)
        self.read(receiver)
        return receiver

    def payload(self, state: Any) -> Any:
        return state.history()

    def read(self, state: Any) -> None:
        _ = _ABSENT in state.read()


def _py3_adds(state: Any, elements: list[int]) -> None:
    for element in elements:
        state.add(element, ("a", element))


def _py3_merge_read(receiver: Any, other: Any) -> None:
    receiver.merge(other)
    receiver.query(_ABSENT)


def _py3_churn(state: Any, pairs: int) -> None:
    for element in range(pairs):
        state.add(element, ("a", element))
        state.remove(element)


class _Py3Timed(_OrsetTimed):
    adds = staticmethod(_py3_adds)
    merge_read = staticmethod(_py3_merge_read)
    churn = staticmethod(_py3_churn)

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def empty(self, replica: str) -> Any:
        return self._module.ORSet(replica)

    def add(self, state: Any, element: int, replica: str) -> None:
        # Tags are the caller's: (replica, element) is unique, as a dot is.
        state.add(element, (replica, element))

    def fresh_receiver(self, state: Any) -> Any:
        return copy.deepcopy(state)

    def read(self, state: Any) -> None:
        state.query(_ABSENT)


# ---- ORSet timings --------------------------------------------------------------------
def _orset_add(result: BenchResult, peer: str, n: int, theirs: _OrsetTimed, sizes: _Sizes) -> None:
    elements = list(range(n))
    mine = _CgTimed()
    timings = _time(
        {
            "mine": Case(lambda: mine.empty("a"), lambda s: mine.adds(s, elements), n),
            "theirs": Case(lambda: theirs.empty("a"), lambda s: theirs.adds(s, elements), n),
        },
        sizes,
    )
    _compare(
        result,
        f"ORSet add ({n:,})",
        peer,
        timings["mine"],
        timings["theirs"],
        f"{n:,} new elements into an empty replica, per add",
    )


def _orset_merge(
    result: BenchResult, peer: str, n: int, theirs: _OrsetTimed, sizes: _Sizes
) -> None:
    mine = _CgTimed()
    half = n // 2
    my_a, my_b = mine.build("a", range(n)), mine.build("b", range(half, half + n))
    their_a, their_b = theirs.build("a", range(n)), theirs.build("b", range(half, half + n))
    their_payload = theirs.payload(their_b)
    timings = _time(
        {
            "mine": Case(lambda: mine.fresh_receiver(my_a), lambda r: mine.merge_read(r, my_b)),
            "theirs": Case(
                lambda: theirs.fresh_receiver(their_a),
                lambda r: theirs.merge_read(r, their_payload),
            ),
        },
        sizes,
    )
    _compare(
        result,
        f"ORSet merge+read ({n:,} + {n:,})",
        peer,
        timings["mine"],
        timings["theirs"],
        "half the elements shared, then one membership test",
    )


def _churn_memory(result: BenchResult, peer: str, pairs: int, theirs: _OrsetTimed) -> None:
    mine = _CgTimed()
    name = f"ORSet after {pairs:,} add/remove pairs"
    for library, orsets in (("crdtgossip", mine), (peer, theirs)):
        empty_name = f"empty ORSet: {library}"
        if all(figure.name != empty_name for figure in result.figures):  # once per library
            empty_bytes, _, _ = retained_bytes(partial(orsets.empty, "a"))
            result.figure(Figure(empty_name, empty_bytes, "bytes"))
        churned, _, _ = retained_bytes(partial(_churned, orsets, pairs))
        result.figure(Figure(f"{name}: {library}", churned, "bytes", note="tracemalloc, after gc"))
    result.ratio(
        f"{name}: crdtgossip / {peer}",
        f"{name}: crdtgossip",
        f"{name}: {peer}",
        note="bytes retained; distinct elements, each added then removed",
    )


def _churned(orsets: _OrsetTimed, pairs: int) -> Any:
    state = orsets.empty("a")
    orsets.churn(state, pairs)
    return state


# ---- counters -------------------------------------------------------------------------
def _cg_increments(counter: GCounter | PNCounter, count: int) -> None:
    for _ in range(count):
        counter.increment("a")


def _cg_merges(receivers: Sequence[GCounter | PNCounter], other: Any) -> None:
    for receiver in receivers:
        receiver.merge(other)


def _crdts_increments(counter: Any, count: int) -> None:
    for _ in range(count):
        counter.increase("a")


def _crdts_apply(receivers: Sequence[Any], updates: Any) -> None:
    for receiver in receivers:
        for update in updates:
            receiver.update(update)


def _py3_increments(counter: Any, count: int) -> None:
    for _ in range(count):
        counter.inc("a")


def _py3_merges(receivers: Sequence[Any], other: Any) -> None:
    for receiver in receivers:
        receiver.merge(other)


def _slot_counts(slots: int, reverse: bool) -> dict[str, int]:
    """One count per replica slot; the reversed pair raises half the receiver's slots."""
    return {f"r{i}": (slots - i if reverse else i + 1) for i in range(slots)}


def _pn_counter(result: BenchResult, mod: ModuleType, sizes: _Sizes) -> None:
    """crdtgossip's PNCounter against crdts' CounterSet (a PN-counter per replica id)."""
    k, slots, merges = sizes.increments, sizes.counter_slots, sizes.counter_merges

    def mine(reverse: bool) -> PNCounter:
        counter = PNCounter()
        for replica, n in _slot_counts(slots, reverse).items():
            counter.increment(replica, n)
        return counter

    def theirs(reverse: bool) -> Any:
        counter = mod.CounterSet(uuid=SHARED_CLOCK)
        for replica, n in _slot_counts(slots, reverse).items():
            counter.increase(replica, n)
        return counter

    my_receiver, my_other = mine(False), mine(True)
    their_receiver, their_updates = theirs(False), theirs(True).history()
    timings = _time(
        {
            "mine+": Case(PNCounter, lambda c: _cg_increments(c, k), k),
            "theirs+": Case(
                lambda: mod.CounterSet(uuid=SHARED_CLOCK), lambda c: _crdts_increments(c, k), k
            ),
            "mine": Case(
                lambda: [my_receiver.copy() for _ in range(merges)],
                lambda rs: _cg_merges(rs, my_other),
                merges * slots,
            ),
            "theirs": Case(
                lambda: [copy.deepcopy(their_receiver) for _ in range(merges)],
                lambda rs: _crdts_apply(rs, their_updates),
                merges * slots,
            ),
        },
        sizes,
    )
    _compare(
        result,
        f"PN-counter increment ({k:,})",
        CRDTS,
        timings["mine+"],
        timings["theirs+"],
        "crdtgossip PNCounter vs crdts CounterSet, one replica, per increment",
    )
    _compare(
        result,
        f"PN-counter merge ({slots:,} slots)",
        CRDTS,
        timings["mine"],
        timings["theirs"],
        "per replica slot; half the receiver's slots raised",
    )


def _g_counter(result: BenchResult, mod: ModuleType, sizes: _Sizes) -> None:
    """crdtgossip's GCounter against python3-crdt's GCounter."""
    k, slots, merges = sizes.increments, sizes.counter_slots, sizes.counter_merges

    def mine(reverse: bool) -> GCounter:
        counter = GCounter()
        for replica, n in _slot_counts(slots, reverse).items():
            counter.increment(replica, n)
        return counter

    def theirs(reverse: bool) -> Any:
        counter = mod.GCounter("bench")
        for replica, n in _slot_counts(slots, reverse).items():
            counter.add_new_node(replica)
            counter.payload[replica] = n  # its documented attribute; inc() adds only 1
        return counter

    def their_incrementer() -> Any:
        counter = mod.GCounter("a")
        counter.add_new_node("a")
        return counter

    my_receiver, my_other = mine(False), mine(True)
    their_receiver, their_other = theirs(False), theirs(True)
    timings = _time(
        {
            "mine+": Case(GCounter, lambda c: _cg_increments(c, k), k),
            "theirs+": Case(their_incrementer, lambda c: _py3_increments(c, k), k),
            "mine": Case(
                lambda: [my_receiver.copy() for _ in range(merges)],
                lambda rs: _cg_merges(rs, my_other),
                merges * slots,
            ),
            "theirs": Case(
                lambda: [copy.deepcopy(their_receiver) for _ in range(merges)],
                lambda rs: _py3_merges(rs, their_other),
                merges * slots,
            ),
        },
        sizes,
    )
    _compare(
        result,
        f"G-counter increment ({k:,})",
        PY3CRDT,
        timings["mine+"],
        timings["theirs+"],
        "GCounter vs GCounter, one replica, per increment",
    )
    _compare(
        result,
        f"G-counter merge ({slots:,} slots)",
        PY3CRDT,
        timings["mine"],
        timings["theirs"],
        "per replica slot; half the receiver's slots raised",
    )


# ---- registers ------------------------------------------------------------------------
def _cg_register(pair: tuple[LWWRegister[int], LWWRegister[int]], writes: int) -> None:
    writer, reader = pair
    for value in range(writes):
        reader.merge(writer.set(value, "a"))


def _crdts_register(pair: tuple[Any, Any], writes: int) -> None:
    writer, reader = pair
    for value in range(writes):
        reader.update(writer.write(value, "a"))


def _register(result: BenchResult, mod: ModuleType, sizes: _Sizes) -> None:
    k = sizes.register_writes

    def their_register() -> Any:
        return mod.LWWRegister("bench", clock=mod.ScalarClock(uuid=SHARED_CLOCK))

    def their_pair() -> tuple[Any, Any]:
        return their_register(), their_register()

    timings = _time(
        {
            "mine": Case(
                lambda: (LWWRegister[int](), LWWRegister[int]()), lambda p: _cg_register(p, k), k
            ),
            "theirs": Case(their_pair, lambda p: _crdts_register(p, k), k),
        },
        sizes,
    )
    _compare(
        result,
        f"LWW register set+merge ({k:,})",
        CRDTS,
        timings["mine"],
        timings["theirs"],
        "one write, its delta/update applied to a second register",
    )


# ---- semantics ------------------------------------------------------------------------
@dataclass(frozen=True)
class _Outcome:
    """What a semantics check saw: whether it matched the expectation, and how."""

    ok: bool
    detail: str


INCREMENTS = "concurrent increments"
ADD_REMOVE = "concurrent add/remove"
ADD_REMOVE_AHEAD = "concurrent add/remove, remover's clock ahead"
READD = "remove then re-add"
LAWS = "merge idempotent and commutative"
INDEPENDENT = "replica unchanged until it merges"
REMOVE_ABSENT = "remove of an absent element"
TIE = "equal-timestamp tie"

#: The element the set scenarios add and remove, and the elements the law check reads.
_X = 7
_UNIVERSE = range(1, 10)
#: Unrelated adds the remover makes before removing, in the "clock ahead" scenario.
_AHEAD_ADDS = 3
#: Longest exception text quoted in a note.
_DETAIL_LIMIT = 100


@dataclass
class _Replica:
    """One replica in a semantics scenario: its state, its id, the tags it has issued."""

    state: Any
    name: str
    issued: int = 0


class _SetOps(ABC):
    """A library's OR-Set, as the semantics scenarios drive it."""

    @abstractmethod
    def new(self, name: str) -> _Replica:
        """An empty replica called ``name``."""

    @abstractmethod
    def add(self, replica: _Replica, element: int) -> None:
        """Add ``element`` on ``replica``."""

    @abstractmethod
    def remove(self, replica: _Replica, element: int) -> None:
        """Remove ``element`` on ``replica``."""

    @abstractmethod
    def contains(self, replica: _Replica, element: int) -> bool:
        """Whether ``replica`` holds ``element``."""

    @abstractmethod
    def merge(self, into: _Replica, other: _Replica) -> None:
        """Bring ``into`` up to date with ``other``, the library's way."""

    def copy(self, replica: _Replica) -> _Replica:
        """An independent copy of ``replica`` (a deep copy unless the library has one)."""
        return _Replica(copy.deepcopy(replica.state), replica.name, replica.issued)


class _CgSet(_SetOps):
    def new(self, name: str) -> _Replica:
        return _Replica(ORSet[int](), name)

    def add(self, replica: _Replica, element: int) -> None:
        replica.state.add(element, replica.name)

    def remove(self, replica: _Replica, element: int) -> None:
        replica.state.remove(element)

    def contains(self, replica: _Replica, element: int) -> bool:
        return element in replica.state

    def merge(self, into: _Replica, other: _Replica) -> None:
        into.state.merge(other.state)

    def copy(self, replica: _Replica) -> _Replica:
        return _Replica(replica.state.copy(), replica.name)


class _CrdtsSet(_SetOps):
    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def new(self, name: str) -> _Replica:
        clock = self._module.ScalarClock(uuid=SHARED_CLOCK)
        return _Replica(self._module.ORSet(clock=clock), name)

    def add(self, replica: _Replica, element: int) -> None:
        replica.state.observe(element)

    def remove(self, replica: _Replica, element: int) -> None:
        replica.state.remove(element)

    def contains(self, replica: _Replica, element: int) -> bool:
        return element in replica.state.read()

    def merge(self, into: _Replica, other: _Replica) -> None:
        for update in other.state.history():
            into.state.update(update)


class _Py3Set(_SetOps):
    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def new(self, name: str) -> _Replica:
        return _Replica(self._module.ORSet(name), name)

    def add(self, replica: _Replica, element: int) -> None:
        replica.issued += 1  # a fresh tag per add, as its docs ask
        replica.state.add(element, (replica.name, replica.issued))

    def remove(self, replica: _Replica, element: int) -> None:
        replica.state.remove(element)

    def contains(self, replica: _Replica, element: int) -> bool:
        return bool(replica.state.query(element))

    def merge(self, into: _Replica, other: _Replica) -> None:
        into.state.merge(other.state)


def _where(ops: _SetOps, a: _Replica, b: _Replica, element: int) -> str:
    on_a, on_b = ops.contains(a, element), ops.contains(b, element)
    if on_a and on_b:
        return "present on both"
    if not on_a and not on_b:
        return "absent on both"
    return "present on a only" if on_a else "present on b only"


def _send(ops: _SetOps, into: _Replica, other: _Replica) -> None:
    """``into`` merges a copy of ``other``, as a replica in another process receives it.

    A copy, so these scenarios test the merge rule alone: a library whose merge shares
    objects with the replica merged from fails :func:`_independent` instead.
    """
    ops.merge(into, ops.copy(other))


def _exchange(ops: _SetOps, a: _Replica, b: _Replica) -> None:
    """Each replica merges the other's state as it was before either merged."""
    sent_a, sent_b = ops.copy(a), ops.copy(b)
    ops.merge(a, sent_b)
    ops.merge(b, sent_a)


def _add_remove(ops: _SetOps, ahead: int) -> _Outcome:
    a, b = ops.new("a"), ops.new("b")
    ops.add(a, _X)
    _send(ops, b, a)
    for element in range(100, 100 + ahead):
        ops.add(b, element)
    ops.add(a, _X)
    ops.remove(b, _X)
    _exchange(ops, a, b)
    where = _where(ops, a, b, _X)
    verdict = "add wins" if where == "present on both" else "the remove wins"
    if where not in {"present on both", "absent on both"}:
        verdict = "replicas disagree"
    return _Outcome(where == "present on both", f"element {where} ({verdict})")


def _readd(ops: _SetOps) -> _Outcome:
    a, b = ops.new("a"), ops.new("b")
    ops.add(a, _X)
    _send(ops, b, a)
    ops.remove(b, _X)
    _send(ops, a, b)
    removed = not ops.contains(a, _X)
    ops.add(a, _X)
    _send(ops, b, a)
    where = _where(ops, a, b, _X)
    ok = removed and where == "present on both"
    if not removed:
        return _Outcome(ok, "the remove did not reach a through the merge")
    return _Outcome(ok, f"re-added element {where}")


def _laws(ops: _SetOps) -> _Outcome:
    a, b = ops.new("a"), ops.new("b")
    for element in (1, 2, 3):
        ops.add(a, element)
    ops.remove(a, 2)
    for element in (3, 4, 5):  # no add/remove race here: that has checks of its own
        ops.add(b, element)

    def joined(first: _Replica, second: _Replica) -> _Replica:
        out = ops.copy(first)
        _send(ops, out, second)
        return out

    def value(replica: _Replica) -> list[int]:
        return [element for element in _UNIVERSE if ops.contains(replica, element)]

    ab, ba = joined(a, b), joined(b, a)
    again, twice = joined(ab, b), joined(ab, ab)
    values = {"a+b": value(ab), "b+a": value(ba), "a+b+b": value(again), "a+b+a+b": value(twice)}
    if len({tuple(v) for v in values.values()}) == 1:
        return _Outcome(True, f"every order and repeat holds {values['a+b']}")
    return _Outcome(False, ", ".join(f"{key} holds {held}" for key, held in values.items()))


def _independent(ops: _SetOps) -> _Outcome:
    a, b = ops.new("a"), ops.new("b")
    ops.add(a, _X)
    ops.merge(b, a)  # the live replica, not a copy: two replicas in one process
    ops.remove(b, _X)
    ops.add(a, _X)
    if ops.contains(b, _X):
        return _Outcome(False, "b shows a's later add without merging it (state shared by merge)")
    return _Outcome(True, "b does not show a's later add before merging it")


def _remove_absent(ops: _SetOps) -> _Outcome:
    replica = ops.new("a")
    ops.remove(replica, _X)
    ops.add(replica, _X + 1)
    ok = ops.contains(replica, _X + 1) and not ops.contains(replica, _X)
    return _Outcome(ok, "then an add works" if ok else "the later add is not visible")


def _set_checks(ops: _SetOps) -> list[tuple[str, Callable[[], _Outcome]]]:
    return [
        (ADD_REMOVE, partial(_add_remove, ops, 0)),
        (ADD_REMOVE_AHEAD, partial(_add_remove, ops, _AHEAD_ADDS)),
        (READD, partial(_readd, ops)),
        (LAWS, partial(_laws, ops)),
        (INDEPENDENT, partial(_independent, ops)),
        (REMOVE_ABSENT, partial(_remove_absent, ops)),
    ]


@dataclass(frozen=True)
class _CounterOps:
    """A library's counter: a new replica, one increment, a merge, a read."""

    new: Callable[[str], Any]
    increment: Callable[[Any, str], None]
    merge: Callable[[Any, Any], None]
    value: Callable[[Any], int]


def _increments(ops: _CounterOps) -> _Outcome:
    a, b = ops.new("a"), ops.new("b")
    ops.increment(a, "a")
    ops.increment(b, "b")
    sent_a, sent_b = copy.deepcopy(a), copy.deepcopy(b)
    ops.merge(a, sent_b)
    ops.merge(b, sent_a)
    on_a, on_b = ops.value(a), ops.value(b)
    return _Outcome(on_a == on_b == 2, f"reads {on_a} and {on_b} after the exchange (expected 2)")


def _crdts_replay(into: Any, other: Any) -> None:
    for update in other.history():
        into.update(update)


def _cg_checks() -> list[tuple[str, str, Callable[[], _Outcome]]]:
    def gcounter(_: str) -> GCounter:
        return GCounter()

    def pncounter(_: str) -> PNCounter:
        return PNCounter()

    counter_ops = {
        "GCounter": _CounterOps(
            gcounter, lambda c, r: c.increment(r), lambda i, o: i.merge(o), lambda c: c.value
        ),
        "PNCounter": _CounterOps(
            pncounter, lambda c, r: c.increment(r), lambda i, o: i.merge(o), lambda c: c.value
        ),
    }
    checks: list[tuple[str, str, Callable[[], _Outcome]]] = [
        (name, INCREMENTS, partial(_increments, ops)) for name, ops in counter_ops.items()
    ]
    checks += [("ORSet", kind, check) for kind, check in _set_checks(_CgSet())]
    checks.append(("LWWRegister", TIE, _cg_tie))
    return checks


def _cg_tie() -> _Outcome:
    a, b = LWWRegister[str](), LWWRegister[str]()
    from_a = a.set("from-a", "a", timestamp=10)
    from_b = b.set("from-b", "b", timestamp=10)
    a.merge(from_b)
    b.merge(from_a)
    return _tie_outcome(a.value, b.value, "both at timestamp 10")


def _tie_outcome(on_a: object, on_b: object, stamps: str) -> _Outcome:
    if on_a == on_b:
        return _Outcome(True, f"both read {on_a!r} ({stamps})")
    return _Outcome(False, f"a reads {on_a!r}, b reads {on_b!r} ({stamps})")


def _crdts_checks(mod: ModuleType) -> list[tuple[str, str, Callable[[], _Outcome]]]:
    def clock() -> Any:
        return mod.ScalarClock(uuid=SHARED_CLOCK)

    counter_ops = {
        "Counter": _CounterOps(
            lambda _: mod.Counter(clock=clock()),
            lambda c, _: c.increase(),
            _crdts_replay,
            lambda c: c.read(),
        ),
        "PNCounter": _CounterOps(
            lambda _: mod.PNCounter(clock=clock()),
            lambda c, _: c.increase(),
            _crdts_replay,
            lambda c: c.read(),
        ),
        "CounterSet": _CounterOps(
            lambda _: mod.CounterSet(uuid=SHARED_CLOCK),
            lambda c, replica: c.increase(replica),
            _crdts_replay,
            lambda c: c.read(),
        ),
    }
    checks: list[tuple[str, str, Callable[[], _Outcome]]] = [
        (name, INCREMENTS, partial(_increments, ops)) for name, ops in counter_ops.items()
    ]
    checks += [("ORSet", kind, check) for kind, check in _set_checks(_CrdtsSet(mod))]

    def tie() -> _Outcome:
        a = mod.LWWRegister("register", clock=clock())
        b = mod.LWWRegister("register", clock=clock())
        from_a, from_b = a.write("from-a", "a"), b.write("from-b", "b")
        a.update(from_b)
        b.update(from_a)
        return _tie_outcome(a.read(), b.read(), f"timestamps {from_a.ts} and {from_b.ts}")

    checks.append(("LWWRegister", TIE, tie))
    return checks


def _py3_checks(
    modules: Mapping[str, ModuleType],
) -> list[tuple[str, str, Callable[[], _Outcome]]]:
    counters, pn = modules["py3crdt.gcounter"], modules["py3crdt.pncounter"]

    def registered(ids: Sequence[str]) -> Callable[[str], Any]:
        def new(name: str) -> Any:
            counter = counters.GCounter(name)
            for replica in ids or (name,):
                counter.add_new_node(replica)
            return counter

        return new

    def pn_new(name: str) -> Any:
        counter = pn.PNCounter(name)
        for replica in ("a", "b"):
            counter.add_new_node(replica)
        return counter

    def merge(into: Any, other: Any) -> None:
        into.merge(other)

    def inc(counter: Any, replica: str) -> None:
        counter.inc(replica)

    counter_ops = {
        "GCounter (each replica registers its own id)": _CounterOps(
            registered(()), inc, merge, lambda c: c.query()
        ),
        "GCounter (both ids registered on both replicas)": _CounterOps(
            registered(("a", "b")), inc, merge, lambda c: c.query()
        ),
        "PNCounter (both ids registered)": _CounterOps(pn_new, inc, merge, lambda c: c.query()),
    }
    checks: list[tuple[str, str, Callable[[], _Outcome]]] = [
        (name, INCREMENTS, partial(_increments, ops)) for name, ops in counter_ops.items()
    ]
    checks += [
        ("ORSet", kind, check) for kind, check in _set_checks(_Py3Set(modules["py3crdt.orset"]))
    ]
    return checks


def _check(check: Callable[[], _Outcome]) -> _Outcome:
    """Run one check; an exception is a failed check, and what it printed is quoted."""
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            outcome = check()
    except Exception as exc:  # a peer's bug must not stop the benchmark
        text = f"raised {type(exc).__name__}: {exc}"
        if len(text) > _DETAIL_LIMIT:
            text = text[: _DETAIL_LIMIT - 3] + "..."
        outcome = _Outcome(False, text)
    if printed.getvalue().strip():
        shown = printed.getvalue().strip().splitlines()[0][:40]
        outcome = _Outcome(outcome.ok, f"{outcome.detail}; printed {shown!r}")
    return outcome


def _semantics(
    result: BenchResult,
    crdts: Mapping[str, ModuleType] | None,
    py3: Mapping[str, ModuleType] | None,
) -> None:
    libraries: list[tuple[str, list[tuple[str, str, Callable[[], _Outcome]]]]] = [
        ("crdtgossip", _cg_checks())
    ]
    if crdts is not None:
        libraries.append((CRDTS, _crdts_checks(crdts["crdts"])))
    if py3 is not None:
        libraries.append((PY3CRDT, _py3_checks(py3)))
    reference: dict[str, list[tuple[str, _Outcome]]] = {}
    for library, checks in libraries:
        agreed: list[str] = []
        for type_name, kind, check in checks:
            outcome = _check(check)
            result.figure(
                Figure(
                    f"{library} {type_name}: {kind}",
                    1.0 if outcome.ok else 0.0,
                    "ok",
                    note=outcome.detail,
                )
            )
            if library == "crdtgossip":
                reference.setdefault(kind, []).append((type_name, outcome))
                if not outcome.ok:
                    result.notes.append(f"crdtgossip {type_name}: {kind} -> {outcome.detail}")
                continue
            if outcome.ok:
                agreed.append(f"{type_name} {kind}")
                continue
            line = f"{library} {type_name}: {kind} -> {outcome.detail}"
            if kind in reference:
                mine_type, mine = _counterpart(type_name, reference[kind])
                line += f"; crdtgossip {mine_type}: {mine.detail}"
            result.notes.append(line)
        if agreed:
            result.notes.append(f"{library} behaves as expected on: {'; '.join(agreed)}")


def _counterpart(
    type_name: str, candidates: Sequence[tuple[str, _Outcome]]
) -> tuple[str, _Outcome]:
    """crdtgossip's check of the same kind on the type named like ``type_name``, if any."""
    for candidate in candidates:
        if type_name.startswith(candidate[0]):
            return candidate
    return candidates[0]

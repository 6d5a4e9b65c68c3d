"""The convergent replicated data types: pure state, no I/O.

See :mod:`crdtgossip.crdts._base` for the laws every type keeps, and
:mod:`crdtgossip.crdts._pruning` for how the :class:`Prunable` ones forget a replica
that has left.
"""

from crdtgossip.crdts._base import CRDT, Element, Value
from crdtgossip.crdts._causal import CausalContext, Dot
from crdtgossip.crdts._pruning import Prunable
from crdtgossip.crdts.ewflag import EWFlag
from crdtgossip.crdts.gcounter import GCounter
from crdtgossip.crdts.gset import GSet
from crdtgossip.crdts.lwwmap import LWWMap
from crdtgossip.crdts.lwwregister import LWWRegister
from crdtgossip.crdts.mvregister import MVRegister
from crdtgossip.crdts.ormap import ORMap
from crdtgossip.crdts.orset import ORSet
from crdtgossip.crdts.pncounter import PNCounter

__all__ = [
    "CRDT",
    "CausalContext",
    "Dot",
    "EWFlag",
    "Element",
    "GCounter",
    "GSet",
    "LWWMap",
    "LWWRegister",
    "MVRegister",
    "ORMap",
    "ORSet",
    "PNCounter",
    "Prunable",
    "Value",
]

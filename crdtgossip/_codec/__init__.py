"""The codec's implementation, one concern a module; the public names are in ``codec``.

Imports go downward only: ``limits`` < ``reader`` < ``values`` < ``shapes`` < ``bodies``
< ``types`` < :mod:`crdtgossip.codec`.
"""

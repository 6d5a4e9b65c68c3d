"""The codec's implementation, one concern a module; the public names are in ``codec``.

Imports go downward only: ``limits`` < ``reader`` < ``table`` < ``checks`` < ``shapes``
< ``body`` < ``registry`` < ``user`` < ``values`` < ``bodies`` < ``types`` <
``canonical`` < :mod:`crdtgossip.codec`.
"""

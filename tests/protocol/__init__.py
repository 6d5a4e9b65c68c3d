"""Tests of the sans-I/O engine, driven on virtual time by :mod:`.cluster`."""

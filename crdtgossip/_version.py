"""The one place the version of crdtgossip is written."""

__version__ = "0.1.0"

"""Reference apps built on crdtgossip's public API.

* :mod:`crdtgossip.apps.registry`: the service registry and its REST API;
* :mod:`crdtgossip.apps.lb`: nginx, haproxy and template rendering from the registry.

They need the ``apps`` extra: ``pip install 'crdtgossip[apps]'``.
"""

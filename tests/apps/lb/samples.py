"""Registry contents that the renderer tests share."""

from __future__ import annotations

from crdtgossip.apps.lb import Instance, Services

#: Three services: several instances (one IPv6) given out of order, a host name, and
#: none at all. "localhost" is a host name every machine resolves, as nginx -t and
#: haproxy -c must.
SERVICES: Services = {
    "web": [
        Instance("web-2", "10.0.0.2", 8080),
        Instance("web-1", "10.0.0.1", 8080),
        Instance("web-6", "2001:db8::6", 8080),
    ],
    "api": [Instance("api-1", "localhost", 9000)],
    "idle": [],
}

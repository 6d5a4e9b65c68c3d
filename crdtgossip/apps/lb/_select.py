"""Which services and instances a renderer may write, in a fixed order.

Every built-in renderer (templates too) goes through :func:`select`, so the rules are
the same everywhere: names and endpoints that could not be written safely are left
out, and what was left out is counted with safe words only (never the offending text),
so the rendered file itself tells the operator and no registration can inject a line.
The order is by name, so the same state always renders to the same bytes and an
unchanged state never looks like a change.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from crdtgossip.apps.lb._model import Instance, Services, endpoint, safe_name

__all__ = ["Selected", "Selection", "render_sections", "select"]


@dataclass(frozen=True, slots=True)
class Selected:
    """One service as it is written.

    Attributes:
        name: the service name (safe, see :func:`~crdtgossip.apps.lb.safe_name`).
        servers: ``(instance, "address:port")`` pairs, sorted by instance id.
        notes: one line per instance left out, in safe words.
    """

    name: str
    servers: tuple[tuple[Instance, str], ...]
    notes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Selection:
    """Everything a renderer writes.

    Attributes:
        services: the services with safe names, sorted by name.
        unsafe_services: how many services were left out for their names.
    """

    services: tuple[Selected, ...]
    unsafe_services: int


def select(services: Services) -> Selection:
    """Keep what can be written safely, sorted by name.

    Args:
        services: service name to instances (those the agent reports as passing).

    Returns:
        The services with safe names, each with its instances that have a safe id and a
        writable endpoint; an instance id seen twice in one service keeps its first
        instance in id order, since nginx would silently double its weight and haproxy
        refuses duplicate server names.
    """
    chosen: list[Selected] = []
    for name in sorted(services):
        if not safe_name(name):
            continue
        servers: list[tuple[Instance, str]] = []
        notes: list[str] = []
        unsafe_ids = 0
        seen: set[str] = set()
        for instance in sorted(services[name], key=lambda i: (i.id, i.address, i.port)):
            if not safe_name(instance.id):
                unsafe_ids += 1
                continue
            if instance.id in seen:
                notes.append(f"{instance.id}: left out, the id appears twice")
                continue
            seen.add(instance.id)
            written = endpoint(instance.address, instance.port)
            if written is None:
                notes.append(f"{instance.id}: left out, its address or port is not valid")
                continue
            servers.append((instance, written))
        if unsafe_ids:
            notes.append(f"{unsafe_ids} instance(s) left out for ids that are not valid names")
        chosen.append(Selected(name, tuple(servers), tuple(notes)))
    return Selection(tuple(chosen), sum(1 for name in services if not safe_name(name)))


def render_sections(
    services: Services,
    *,
    header: str,
    kind: str,
    section: Callable[[Selected], list[str]],
    closing: str | None = None,
) -> str:
    """The text of a fixed-output renderer: one section per service, in :func:`select`'s
    order, with what was left out written as comments.

    Args:
        services: service name to instances, as :meth:`Renderer.render
            <crdtgossip.apps.lb.Renderer.render>` gets them.
        header: the file's first line, newline included.
        kind: what the proxy calls a section (``upstream``, ``backend``), for the
            comment that counts the services left out for their names.
        section: a service's opening line and its (indented) server lines.
        closing: the line that ends a section, after its notes, if the syntax has one.

    Returns:
        The header, then each section after a blank line.
    """
    selection = select(services)
    parts = [header]
    if selection.unsafe_services:
        parts.append(
            f"# {selection.unsafe_services} service(s) left out for names that are "
            f"not valid {kind} names\n"
        )
    for service in selection.services:
        lines = section(service)
        lines.extend(f"    # {note}" for note in service.notes)
        if closing is not None:
            lines.append(closing)
        parts.append("\n" + "\n".join(lines) + "\n")
    return "".join(parts)

"""What the built-in renderers keep, drop and in which order, and how they write it."""

from __future__ import annotations

import pytest

from crdtgossip.apps.lb import (
    HAProxyRenderer,
    Instance,
    NginxRenderer,
    Renderer,
    RendererFactory,
    RenderOptions,
    select,
)
from crdtgossip.apps.lb._select import Selected, render_sections
from crdtgossip.errors import ConfigError
from tests.apps.lb.samples import SERVICES

#: The renderers with a fixed output, which write through render_sections.
FIXED_RENDERERS: list[RendererFactory] = [NginxRenderer, HAProxyRenderer]


def test_sorted_by_service_then_instance_id() -> None:
    selection = select(
        {
            "web": [Instance("web-2", "10.0.0.2", 80), Instance("web-1", "10.0.0.1", 80)],
            "api": [],
        }
    )
    assert [service.name for service in selection.services] == ["api", "web"]
    web = selection.services[1]
    assert [(inst.id, address) for inst, address in web.servers] == [
        ("web-1", "10.0.0.1:80"),
        ("web-2", "10.0.0.2:80"),
    ]
    assert selection.unsafe_services == 0


def test_unsafe_entries_are_counted_never_echoed() -> None:
    selection = select(
        {
            "web": [
                Instance("web-1", "10.0.0.1", 80),
                Instance("web-1", "10.0.0.9", 80),
                Instance("bad; id", "10.0.0.3", 80),
                Instance("web-4", "10.0.0.4; evil", 80),
            ],
            "evil;service": [Instance("x", "10.0.0.5", 80)],
        }
    )
    assert selection.unsafe_services == 1
    (web,) = selection.services
    assert [address for _, address in web.servers] == ["10.0.0.1:80"]
    assert web.notes == (
        "web-1: left out, the id appears twice",
        "web-4: left out, its address or port is not valid",
        "1 instance(s) left out for ids that are not valid names",
    )
    assert not any(";" in note for note in web.notes)


def test_same_services_in_another_order_select_the_same() -> None:
    first = {"b": [Instance("2", "10.0.0.2", 1), Instance("1", "10.0.0.1", 1)], "a": []}
    second = {"a": [], "b": list(reversed(first["b"]))}
    assert select(first) == select(second)


# ---- render_sections, and the fixed-output renderers built on it ------------------------
def _block(service: Selected) -> list[str]:
    return [f"block {service.name} {{", *(f"    at {address}" for _, address in service.servers)]


def test_render_sections_writes_what_was_left_out_as_comments() -> None:
    services = {
        "web": [Instance("web-1", "10.0.0.1", 80), Instance("web-1", "10.0.0.9", 80)],
        "idle": [],
        "bad name": [Instance("x", "10.0.0.5", 80)],
    }
    text = render_sections(services, header="# header\n", kind="block", section=_block, closing="}")
    assert text == (
        "# header\n"
        "# 1 service(s) left out for names that are not valid block names\n"
        "\nblock idle {\n}\n"
        "\nblock web {\n    at 10.0.0.1:80\n    # web-1: left out, the id appears twice\n}\n"
    )
    assert render_sections({}, header="# header\n", kind="block", section=_block) == "# header\n"


@pytest.mark.parametrize("factory", FIXED_RENDERERS)
def test_fixed_output_does_not_depend_on_input_order(factory: RendererFactory) -> None:
    renderer: Renderer = factory(RenderOptions())
    shuffled = {name: list(reversed(SERVICES[name])) for name in reversed(list(SERVICES))}
    assert renderer.render(shuffled) == renderer.render(SERVICES)


@pytest.mark.parametrize("factory", FIXED_RENDERERS)
def test_a_fixed_output_renderer_refuses_a_template(factory: RendererFactory) -> None:
    with pytest.raises(ConfigError, match="only used with --format template"):
        factory(RenderOptions(template="{{ services }}"))

"""Renderer discovery: the built-ins, and a plugin installed as a real distribution."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from crdtgossip.apps.lb import (
    HAProxyRenderer,
    Instance,
    NginxRenderer,
    Renderer,
    RenderOptions,
    TemplateRenderer,
    load_renderer,
    renderer_names,
)
from crdtgossip.errors import ConfigError

PLUGIN_MODULE = '''\
from pathlib import Path

from crdtgossip.apps.lb import RenderOptions, Services, select


class CaddyRenderer:
    """A reverse_proxy line per service: a proxy crdtgossip does not ship."""

    name = "caddy"

    def __init__(self, options: RenderOptions) -> None:
        self.options = options

    def render(self, services: Services) -> str:
        return "".join(
            f"{s.name}: " + " ".join(address for _, address in s.servers) + "\\n"
            for s in select(services).services
        )

    def check_command(self, candidate: Path, scratch: Path) -> str:
        return f"test -s {candidate}"


def not_a_renderer(options: RenderOptions) -> object:
    return object()
'''

ENTRY_POINTS = """\
[crdtgossip.renderers]
caddy = lbtest_caddy:CaddyRenderer
nginx = lbtest_caddy:CaddyRenderer
broken = lbtest_no_such_module:Nothing
hollow = lbtest_caddy:not_a_renderer
"""


@pytest.fixture
def installed_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A distribution with entry points in the crdtgossip.renderers group, on sys.path."""
    (tmp_path / "lbtest_caddy.py").write_text(PLUGIN_MODULE)
    info = tmp_path / "lbtest_caddy-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: lbtest-caddy\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(ENTRY_POINTS)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield
    sys.modules.pop("lbtest_caddy", None)


@pytest.mark.parametrize(
    ("name", "kind"),
    [("nginx", NginxRenderer), ("haproxy", HAProxyRenderer)],
)
def test_builtins(name: str, kind: type) -> None:
    renderer = load_renderer(name)
    assert isinstance(renderer, kind)
    assert isinstance(renderer, Renderer)
    assert renderer.name == name


def test_template_builtin_gets_the_options() -> None:
    renderer = load_renderer("template", RenderOptions(template="{{ services | length }}"))
    assert isinstance(renderer, TemplateRenderer)
    assert renderer.render({"a": [], "b": []}) == "2"


def test_unknown_format_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="unknown format 'caddy': choose one of nginx, haproxy"):
        load_renderer("caddy")


@pytest.mark.usefixtures("installed_plugin")
def test_an_installed_plugin_is_a_format() -> None:
    assert renderer_names() == ["nginx", "haproxy", "template", "broken", "caddy", "hollow"]
    renderer = load_renderer("caddy", RenderOptions(template_name="unused"))
    assert renderer.name == "caddy"
    assert renderer.render({"web": [Instance("w", "10.0.0.1", 80)]}) == "web: 10.0.0.1:80\n"
    assert renderer.check_command(Path("/x"), Path("/y")) == "test -s /x"


@pytest.mark.usefixtures("installed_plugin")
def test_a_plugin_cannot_take_a_builtin_name() -> None:
    assert isinstance(load_renderer("nginx"), NginxRenderer)


@pytest.mark.usefixtures("installed_plugin")
def test_a_plugin_that_fails_to_import_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"plugin 'broken' .* failed to load: ModuleNotFound"):
        load_renderer("broken")


@pytest.mark.usefixtures("installed_plugin")
def test_a_plugin_that_builds_no_renderer_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="'hollow' returned a 'object' object, which lacks"):
        load_renderer("hollow")

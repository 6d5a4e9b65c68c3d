"""User templates: sandboxed, strict, given the same filtered services."""

from __future__ import annotations

from pathlib import Path

import pytest

from crdtgossip.apps.lb import Instance, Renderer, RenderOptions, TemplateRenderer
from crdtgossip.errors import ConfigError


def template(source: str) -> TemplateRenderer:
    return TemplateRenderer(RenderOptions(template=source, template_name="t.j2"))


def test_renders_services_sorted_and_filtered() -> None:
    renderer = template(
        "{% for name, instances in services.items() %}"
        "{{ name }}:{% for i in instances %} {{ i.id }}@{{ i.endpoint }}/{{ i.env }}"
        "{% endfor %}\n{% endfor %}"
    )
    text = renderer.render(
        {
            "web": [
                Instance("web-2", "::1", 81, env="prod"),
                Instance("web-1", "10.0.0.1", 80, env="prod"),
                Instance("web-3", "10.0.0.3; x", 80),
            ],
            "api": [],
            "bad name": [Instance("x", "10.0.0.4", 80)],
        }
    )
    assert text == "api:\nweb: web-1@10.0.0.1:80/prod web-2@[::1]:81/prod\n"


def test_trailing_newline_is_kept() -> None:
    assert template("x\n").render({}) == "x\n"


def test_an_undefined_name_is_an_error_not_a_blank() -> None:
    renderer = template("{{ services.web }}")
    with pytest.raises(ConfigError, match=r"template t\.j2: .*web"):
        renderer.render({"api": []})


def test_the_sandbox_refuses_python_internals() -> None:
    renderer = template("{{ services.__class__.__mro__ }}")
    with pytest.raises(ConfigError, match=r"t\.j2"):
        renderer.render({})
    renderer = template(
        "{% for n, i in services.items() %}{{ i[0].endpoint.__class__.__subclasses__() }}"
        "{% endfor %}"
    )
    with pytest.raises(ConfigError, match="unsafe"):
        renderer.render({"web": [Instance("w", "10.0.0.1", 80)]})


def test_an_error_raised_by_an_expression_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="ZeroDivisionError"):
        template("{{ 1 // 0 }}").render({})


def test_a_syntax_error_names_the_template_and_line() -> None:
    with pytest.raises(ConfigError, match=r"template t\.j2, line 2: "):
        template("ok\n{% for x in %}\n")


def test_a_template_is_required() -> None:
    with pytest.raises(ConfigError, match="needs --template"):
        TemplateRenderer(RenderOptions())


def test_no_check_of_its_own(tmp_path: Path) -> None:
    renderer: Renderer = template("x")
    assert renderer.check_command(tmp_path / "candidate", tmp_path) is None

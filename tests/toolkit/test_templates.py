"""Prompt templates: sandboxed Jinja2, typed variables, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmgate.config import ConfigError, load_settings
from llmgate.core.errors import InvalidRequest, NotFound
from llmgate.toolkit.templates import Prompt, Prompts, Variable, from_settings


def prompts() -> Prompts:
    return Prompts(
        {
            "greet": Prompt(
                "greet",
                "Hello {{ name }}! Items: {% for i in items %}{{ i }};{% endfor %} n={{ count }}",
                system="You help {{ name }}.",
                variables=(
                    Variable("name"),
                    Variable("items", "list", default=[], required=False),
                    Variable("count", "integer", default=1, required=False),
                ),
            ),
            "free": Prompt("free", "{{ anything }}"),
        }
    )


def test_render_with_defaults_and_system() -> None:
    rendered = prompts().render("greet", {"name": "Ann", "items": ["a", "b"]})
    assert rendered.user == "Hello Ann! Items: a;b; n=1"
    assert rendered.messages() == [
        {"role": "system", "content": "You help Ann."},
        {"role": "user", "content": "Hello Ann! Items: a;b; n=1"},
    ]


def test_missing_variable_names_it() -> None:
    with pytest.raises(InvalidRequest, match="needs the variable 'name'") as caught:
        prompts().render("greet", {})
    assert caught.value.param == "prompt.variables.name"


def test_wrong_type_names_the_variable_and_type() -> None:
    with pytest.raises(InvalidRequest, match="'count' must be integer, not str"):
        prompts().render("greet", {"name": "x", "count": "3"})
    with pytest.raises(InvalidRequest, match="'count' must be integer, not bool"):
        prompts().render("greet", {"name": "x", "count": True})


def test_unknown_variable_is_refused() -> None:
    with pytest.raises(InvalidRequest, match="has no variable 'nmae'"):
        prompts().render("greet", {"name": "x", "nmae": "y"})


def test_undeclared_template_variables_must_be_given() -> None:
    with pytest.raises(InvalidRequest, match="'anything' is undefined"):
        prompts().render("free", {})
    assert prompts().render("free", {"anything": 5}).user == "5"


def test_unknown_prompt_lists_the_known() -> None:
    with pytest.raises(NotFound, match=r"unknown prompt 'nope' \(prompts: free, greet\)"):
        prompts().render("nope", {})


def test_the_sandbox_refuses_python_internals() -> None:
    evil = Prompts({"evil": Prompt("evil", "{{ x.__class__.__mro__[1].__subclasses__() }}")})
    with pytest.raises(InvalidRequest, match="prompt 'evil'"):
        evil.render("evil", {"x": "s"})


def test_a_runaway_template_is_bounded() -> None:
    big = Prompts({"big": Prompt("big", "{% for i in range(n) %}{{ s }}{% endfor %}")})
    with pytest.raises(InvalidRequest, match="failed to render: OverflowError"):
        big.render("big", {"n": 10**6, "s": "x"})
    with pytest.raises(InvalidRequest, match="rendered to more than 1000000 characters"):
        big.render("big", {"n": 90_000, "s": "x" * 100})


def test_a_template_using_an_undeclared_variable_fails_at_load() -> None:
    with pytest.raises(ValueError, match="uses undeclared variables: typo"):
        Prompts({"p": Prompt("p", "{{ typo }}", variables=(Variable("name"),))})


def test_a_syntax_error_names_the_line() -> None:
    with pytest.raises(ValueError, match="line 2"):
        Prompts({"p": Prompt("p", "ok\n{% if %}")})


def test_the_loader_reads_prompt_files_beside_the_config(tmp_path: Path) -> None:
    (tmp_path / "review.j2").write_text("Review {{ code }}")
    config = tmp_path / "llmgate.yaml"
    config.write_text(
        "prompts:\n  review: {file: review.j2, variables: {code: string}}\n"
        "  inline: {template: 'Hi {{ who }}', variables: {who: {type: string, default: you}}}\n"
    )
    built = from_settings(load_settings(config, environ={}).prompts)
    assert built.render("review", {"code": "x = 1"}).user == "Review x = 1"
    assert built.render("inline", {}).user == "Hi you"
    assert built.get("review").source == str(tmp_path / "review.j2")


def test_an_unreadable_prompt_file_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "llmgate.yaml"
    config.write_text("prompts:\n  gone: {file: missing.j2}\n")
    with pytest.raises(ConfigError, match=r"prompts\.gone: cannot read"):
        load_settings(config, environ={})
    config.write_text("prompts:\n  both: {file: missing.j2, template: x}\n")
    with pytest.raises(ConfigError, match="not both"):
        load_settings(config, environ={})


def test_multiplications_are_bounded_before_they_run() -> None:
    times = Prompts({"t": Prompt("t", "{{ '-' * n }}"), "p": Prompt("p", "{{ 2 ** n }}")})
    assert times.render("t", {"n": 3}).user == "---"
    with pytest.raises(InvalidRequest, match="multiplication would make more than 1000000"):
        times.render("t", {"n": 10**9})
    with pytest.raises(InvalidRequest, match="power over 1000"):
        times.render("p", {"n": 10**9})
    assert times.render("p", {"n": 10}).user == "1024"

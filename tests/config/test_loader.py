"""YAML + environment -> Settings, with errors naming file, line and field."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from llmgate.config import ConfigError, Settings, load_settings
from llmgate.gateway import Gateway

SPEC_EXAMPLE = """\
server: {host: 127.0.0.1, port: 8000, master_key: ${LLMGATE_MASTER_KEY}}
storage: {database: sqlite:///llmgate.db, redis: null}
providers:
  openai:    {type: openai, api_keys: [${OPENAI_API_KEY}, ${OPENAI_API_KEY_2}], rpm: 500, tpm: 200000}
  anthropic: {type: anthropic, api_keys: [${ANTHROPIC_API_KEY}]}
  local:     {type: openai, base_url: http://127.0.0.1:8001/v1}
models:
  - name: smart
    deployments:
      - {provider: openai, model: gpt-4o, weight: 2}
      - {provider: anthropic, model: claude-3-5-sonnet-latest}
    fallbacks: [cheap]
    strategy: hybrid
  - name: cheap
    deployments: [{provider: openai, model: gpt-4o-mini}]
routing: {strategy: hybrid, retries: 3, timeouts: {connect: 5, first_token: 30, idle: 30, total: 600}}
cache: {mode: exact, backend: memory, ttl: 3600, max_entries: 1000}
limits: {global: {rpm: 10000}, default_key: {rpm: 60, tpm: 100000}}
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmgate.yaml"
    path.write_text(text)
    return path


def test_spec_example_loads_with_env_references(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "sk-one", "ANTHROPIC_API_KEY": "sk-ant", "LLMGATE_MASTER_KEY": "master"}
    settings = load_settings(write(tmp_path, SPEC_EXAMPLE), environ=env)
    openai = settings.providers["openai"]
    assert [key.get_secret_value() for key in openai.api_keys] == ["sk-one"]  # unset _2 is dropped
    assert settings.server.master_key is not None
    assert settings.server.master_key.get_secret_value() == "master"
    assert settings.models[0].deployments[0].weight == 2
    assert settings.models[0].fallbacks == ("cheap",)
    assert settings.limits.global_.rpm == 10000
    assert "sk-one" not in repr(settings)


def test_secrets_are_not_in_repr(tmp_path: Path) -> None:
    settings = load_settings(write(tmp_path, SPEC_EXAMPLE), environ={"OPENAI_API_KEY": "sk-hidden-1234"})
    assert "sk-hidden-1234" not in repr(settings)
    assert "sk-hidden-1234" not in str(settings.providers)


def test_validation_error_names_file_line_and_field(tmp_path: Path) -> None:
    text = SPEC_EXAMPLE.replace(
        "{provider: openai, model: gpt-4o, weight: 2}", "{provider: openai, weight: -1}"
    )
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert f"{path}:10: models[0].deployments[0].weight" in message
    assert f"{path}:10: models[0].deployments[0].model: Field required" in message


def test_unknown_field_is_rejected_with_its_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: 127.0.0.1\n  prot: 80\n")
    with pytest.raises(ConfigError, match=r":3: server\.prot: Extra inputs"):
        load_settings(path, environ={})


def test_unknown_provider_reference(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "providers: {a: {type: mock}}\nmodels:\n  - {name: g, deployments: [{provider: b, model: x}]}\n",
    )
    with pytest.raises(ConfigError, match="unknown provider 'b'"):
        load_settings(path, environ={})


def test_bad_yaml_names_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, "server:\n  host: [unclosed\n")
    with pytest.raises(ConfigError, match=r"llmgate\.yaml:3: not valid YAML"):
        load_settings(path, environ={})


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_settings(tmp_path / "absent.yaml", environ={})


def test_required_variable(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {master_key: '${SECRET:?set SECRET}'}\n")
    with pytest.raises(ConfigError, match=r":1: environment variable SECRET is required: set SECRET"):
        load_settings(path, environ={})
    assert load_settings(path, environ={"SECRET": "s"}).server.master_key is not None


def test_default_value_reference(tmp_path: Path) -> None:
    path = write(tmp_path, "server: {port: '${PORT:-9123}'}\n")
    assert load_settings(path, environ={}).server.port == 9123
    assert load_settings(path, environ={"PORT": "9000"}).server.port == 9000


def test_nothing_configured_means_mock_only() -> None:
    settings = load_settings(None, environ={})
    assert list(settings.providers) == ["mock"]
    assert settings.providers["mock"].type == "mock"


def test_providers_detected_from_standard_variables() -> None:
    env = {
        "OPENAI_API_KEY": "sk-o",
        "ANTHROPIC_API_KEY": "sk-a",
        "GOOGLE_API_KEY": "g",
        "COHERE_API_KEY": "c",
        "AZURE_OPENAI_API_KEY": "az",
        "AZURE_OPENAI_ENDPOINT": "https://r.openai.azure.com",
        "HF_TOKEN": "hf",
        "OLLAMA_HOST": "127.0.0.1:11434",
    }
    providers = load_settings(None, environ=env).providers
    assert {name: p.type for name, p in providers.items()} == {
        "openai": "openai",
        "anthropic": "anthropic",
        "gemini": "gemini",
        "cohere": "cohere",
        "azure": "azure",
        "huggingface": "huggingface",
        "ollama": "ollama",
        "mock": "mock",
    }
    assert providers["ollama"].base_url == "http://127.0.0.1:11434"
    assert providers["azure"].base_url == "https://r.openai.azure.com"


def test_azure_needs_both_variables() -> None:
    assert "azure" not in load_settings(None, environ={"AZURE_OPENAI_API_KEY": "k"}).providers


@pytest.mark.parametrize(
    ("variable", "value", "read"),
    [
        ("LLMGATE_STRATEGY", "round_robin", lambda s: s.routing.strategy),
        ("LLM_PROXY_LOAD_BALANCE", "least_loaded", lambda s: s.routing.strategy),
        ("LLMGATE_MAX_RETRIES", "5", lambda s: s.routing.retries),
        ("LLM_PROXY_MAX_RETRIES", "6", lambda s: s.routing.retries),
        ("LLMGATE_CACHE_SIZE", "77", lambda s: s.cache.max_entries),
        ("LLM_PROXY_CACHE_TTL", "12", lambda s: s.cache.ttl),
    ],
)
def test_environment_overrides(variable: str, value: str, read: object) -> None:
    settings = load_settings(None, environ={variable: value})
    assert str(read(settings)) in (value, f"{value}.0")  # type: ignore[operator]


def test_bad_override_is_reported() -> None:
    with pytest.raises(ConfigError, match=r"routing\.strategy"):
        load_settings(None, environ={"LLMGATE_STRATEGY": "random-guess"})


@pytest.mark.parametrize("value", ["!ENV FOO", "2024-02-30"])
def test_unreadable_values_name_their_line(tmp_path: Path, value: str) -> None:
    path = write(tmp_path, f"server:\n  host: 127.0.0.1\n  port: {value}\n")
    with pytest.raises(ConfigError, match=r"llmgate\.yaml:3: cannot read this value"):
        load_settings(path, environ={})


def test_the_embedded_database_lives_in_the_data_directory_not_the_current_one(tmp_path: Path) -> None:
    chosen = tmp_path / "chosen"
    settings = load_settings(None, environ={"LLMGATE_DATA_DIR": str(chosen)})
    assert settings.storage.database == f"sqlite:///{chosen / 'llmgate.db'}"
    assert chosen.is_dir()
    xdg = load_settings(None, environ={"XDG_DATA_HOME": str(tmp_path / "xdg")})
    assert xdg.storage.database.startswith("sqlite:///") and "llmgate.db" in xdg.storage.database
    assert not xdg.storage.database.startswith("sqlite:///llmgate.db")
    explicit = load_settings(None, environ={"LLMGATE_DATABASE": "memory"})
    assert explicit.storage.database == "memory"


async def test_a_gateway_with_no_config_writes_nothing_into_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LLMGATE_DATA_DIR", str(tmp_path / "data"))
    caplog.set_level(logging.INFO, logger="llmgate")
    async with Gateway() as gateway:
        await gateway.chat("mock:echo", [{"role": "user", "content": "hi"}])
    assert (tmp_path / "data" / "llmgate.db").is_file()
    assert not (tmp_path / "llmgate.db").exists()
    assert any(str(tmp_path / "data" / "llmgate.db") in line for line in caplog.messages)


def test_an_unknown_provider_is_reported_at_its_own_line(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "providers:\n  m: {type: mock}\nmodels:\n  - name: a\n    deployments:\n"
        "      - provider: m\n        model: echo\n      - provider: nope\n        model: echo\n"
        "    fallbacks: [a, zzz]\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    lines = str(raised.value).splitlines()[1:]
    assert lines == [
        f"  {path}:8: models[0].deployments[1].provider: unknown provider 'nope' (configured: m)",
        f"  {path}:10: models[0].fallbacks[1]: unknown model group 'zzz' (groups: a)",
    ]


def test_a_misspelt_field_is_one_line_with_a_suggestion(tmp_path: Path) -> None:
    path = tmp_path / "c.yaml"
    path.write_text(
        "providers:\n  m: {type: mock}\nmodels:\n  - name: a\n    deployments:\n"
        "      - provider: m\n        model: echo\n        wieght: 2\n"
    )
    with pytest.raises(ConfigError) as raised:
        load_settings(path)
    lines = str(raised.value).splitlines()[1:]
    assert lines == [
        f"  {path}:8: models[0].deployments[0].wieght: Extra inputs are not permitted: did you mean 'weight'?"
    ]


def test_settings_built_in_code_also_find_the_data_directory_when_built(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LLMGATE_DATA_DIR", str(tmp_path / "here"))
    settings = Settings.model_validate({})
    assert settings.storage.database == f"sqlite:///{tmp_path / 'here' / 'llmgate.db'}"
    assert settings.cache.path == f"sqlite:///{tmp_path / 'here' / 'cache.db'}"


def test_the_servers_start_reaches_its_workers() -> None:
    from llmgate.config import started_at_from_environment

    assert started_at_from_environment({"LLMGATE_STARTED_AT": "1796235332.5"}) == 1796235332.5
    assert started_at_from_environment({}) is None
    assert started_at_from_environment({"LLMGATE_STARTED_AT": "soon"}) is None

"""``llmgate check`` (config validation and provider probes) and ``llmgate models``."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from llmgate.cli.main import main


def closed_port() -> int:
    with socket.socket() as probe:  # bound and closed: nothing listens there
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "llmgate.yaml"
    path.write_text(text)
    return str(path)


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LLMGATE_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("LLMGATE_CONFIG", raising=False)
    return CliRunner()


def test_check_one_good_and_one_unreachable_provider(runner: CliRunner, tmp_path: Path) -> None:
    config = write(
        tmp_path,
        f"""
providers:
  sim: {{type: mock}}
  dead: {{type: openai, base_url: "http://127.0.0.1:{closed_port()}/v1", api_keys: [sk-test-secret-123456789]}}
models:
  - {{name: smart, deployments: [{{provider: sim, model: mock}}]}}
  - {{name: broken, deployments: [{{provider: dead, model: gpt-4o-mini}}]}}
""",
    )
    result = runner.invoke(main, ["check", "--config", config])
    assert result.exit_code == 1, result.output
    assert "valid (2 model groups)" in result.output
    rows = {line.split("│")[1].strip(): line for line in result.output.splitlines() if line.startswith("│ ")}
    assert "yes" in rows["sim"] and "list" in rows["sim"]
    assert "NO" in rows["dead"] and "connection failed" in result.output
    assert "sk-test-secret" not in result.output

    as_json = json.loads(runner.invoke(main, ["check", "--config", config, "--json"]).output)
    assert as_json["key_problems"] == []
    by_name = {row["provider"]: row for row in as_json["providers"]}
    assert by_name["sim"]["ok"] and by_name["sim"]["models"] == 3 and by_name["sim"]["key_accepted"]
    assert by_name["dead"]["reachable"] is False and not by_name["dead"]["ok"]


def test_check_all_good_exits_0(runner: CliRunner, tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "providers: {sim: {type: mock}}\nmodels: [{name: a, deployments: [{provider: sim, model: mock}]}]\n",
    )
    result = runner.invoke(main, ["check", "--config", config])
    assert result.exit_code == 0, result.output


def test_check_finds_keys_naming_models_no_longer_served(runner: CliRunner, tmp_path: Path) -> None:
    database = f"sqlite:///{tmp_path / 'keys.db'}"
    both = write(
        tmp_path,
        f"storage: {{database: '{database}'}}\nproviders: {{sim: {{type: mock}}}}\nmodels:\n"
        "  - {name: a, deployments: [{provider: sim, model: mock}]}\n"
        "  - {name: b, deployments: [{provider: sim, model: mock}]}\n",
    )
    created = runner.invoke(main, ["keys", "create", "--config", both, "--name", "team", "--models", "a,b"])
    assert created.exit_code == 0, created.output
    assert runner.invoke(main, ["check", "--config", both]).exit_code == 0
    only_a = write(
        tmp_path,
        f"storage: {{database: '{database}'}}\nproviders: {{sim: {{type: mock}}}}\nmodels:\n"
        "  - {name: a, deployments: [{provider: sim, model: mock}]}\n",
    )
    result = runner.invoke(main, ["check", "--config", only_a])
    assert result.exit_code == 1
    assert "(team): models not served: b" in result.output


def test_check_names_the_line_of_a_bad_reference(runner: CliRunner, tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "providers: {sim: {type: mock}}\nmodels:\n  - name: a\n    deployments: [{provider: sim, model: mock}]\n"
        "    fallbacks: [nowhere]\n",
    )
    result = runner.invoke(main, ["check", "--config", config])
    assert result.exit_code == 1
    assert "llmgate.yaml:5: models[0].fallbacks[0]: unknown model group 'nowhere'" in result.output


def test_check_catches_references_only_the_gateway_resolves(runner: CliRunner, tmp_path: Path) -> None:
    config = write(tmp_path, "providers: {sim: {type: mock}}\ncondense: {model: nowhere}\n")
    result = runner.invoke(main, ["check", "--config", config])
    assert result.exit_code == 1
    assert "condense.model" in result.output


def test_models_lists_groups_and_the_catalogue(runner: CliRunner, tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "providers: {sim: {type: mock}}\nmodels:\n  - {name: smart, context_overflow: truncate,"
        " deployments: [{provider: sim, model: mock, context_length: 4096}]}\n",
    )
    table = runner.invoke(main, ["models", "--config", config, "--search", "gpt-4o-mini"])
    assert table.exit_code == 0, table.output
    assert "gpt-4o-mini" in table.output and "smart" not in table.output
    found = json.loads(runner.invoke(main, ["models", "--config", config, "--json"]).output)
    assert found["groups"] == [
        {
            "name": "smart",
            "deployments": [{"provider": "sim", "model": "mock", "context_length": 4096}],
            "fallbacks": [],
            "strategy": "hybrid",
            "context_overflow": "truncate",
        }
    ]
    assert any(model["id"] == "gpt-4o" for model in found["models"])
    vision = json.loads(
        runner.invoke(
            main,
            ["models", "--config", config, "--json", "--capability", "vision", "--provider", "anthropic"],
        ).output
    )
    assert vision["models"] and all(
        "vision" in m["capabilities"] and m["provider"] == "anthropic" for m in vision["models"]
    )

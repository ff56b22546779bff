"""``llmgate keys create|list|revoke`` against a real SQLite database."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmgate.cli.main import main

CONFIG = """
providers: {m: {type: mock}}
models:
  - {name: a, deployments: [{provider: m, model: echo}]}
  - {name: b, deployments: [{provider: m, model: echo}]}
"""


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("LLMGATE_DATABASE", f"sqlite:///{tmp_path / 'keys.db'}")
    config = tmp_path / "llmgate.yaml"
    config.write_text(CONFIG)
    monkeypatch.setenv("LLMGATE_CONFIG", str(config))
    return CliRunner()


def test_create_list_revoke(runner: CliRunner) -> None:
    created = runner.invoke(main, ["keys", "create", "--name", "ci", "--rpm", "5", "--models", "a, b"])
    assert created.exit_code == 0, created.output
    first, secret = created.output.strip().splitlines()
    key_id = first.split()[1]
    assert secret.startswith("sk-llmgate-")

    listed = runner.invoke(main, ["keys", "list"])
    assert listed.exit_code == 0
    assert key_id in listed.output and "active" in listed.output and "rpm=5" in listed.output
    assert secret not in listed.output  # shown once, at creation only

    revoked = runner.invoke(main, ["keys", "revoke", key_id])
    assert revoked.exit_code == 0 and f"revoked {key_id}" in revoked.output
    assert "revoked" in runner.invoke(main, ["keys", "list"]).output


def test_revoking_an_unknown_key_fails_clearly(runner: CliRunner) -> None:
    result = runner.invoke(main, ["keys", "revoke", "key_nope"])
    assert result.exit_code == 1
    assert "no key with id 'key_nope'" in result.output


def test_bad_options_are_refused(runner: CliRunner) -> None:
    assert runner.invoke(main, ["keys", "create", "--name", "x", "--rpm", "0"]).exit_code == 2
    assert runner.invoke(main, ["keys", "create"]).exit_code == 2  # --name is required


def test_a_key_for_a_model_nobody_serves_is_refused_with_the_groups(runner: CliRunner) -> None:
    refused = runner.invoke(main, ["keys", "create", "--name", "x", "--models", "smart"])
    assert refused.exit_code == 1
    assert "unknown model 'smart'" in refused.output and "groups: a, b" in refused.output
    assert "no keys" in runner.invoke(main, ["keys", "list"]).output
    direct = runner.invoke(main, ["keys", "create", "--name", "x", "--models", "a,m:echo"])
    assert direct.exit_code == 0, direct.output


def test_list_shows_models_limits_and_the_budget_period(runner: CliRunner) -> None:
    created = runner.invoke(
        main,
        [
            "keys",
            "create",
            "--name",
            "team",
            "--models",
            "a",
            "--tpm",
            "900",
            "--budget",
            "25",
            "--period",
            "month",
        ],
    )
    assert created.exit_code == 0, created.output
    assert runner.invoke(main, ["keys", "create", "--name", "free"]).exit_code == 0
    team, free = runner.invoke(main, ["keys", "list"]).output.strip().splitlines()
    assert "team" in team and "  a  " in team and "tpm=900" in team and "budget=$25/month" in team
    assert "free" in free and "all models" in free and "no limits" in free

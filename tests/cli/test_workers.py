"""`llmgate serve --workers N --config F` hands the same config to every worker process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmgate.cli import main as cli


def test_workers_get_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "prod.yaml"
    config.write_text("server: {master_key: literal-secret}\n")
    started: dict[str, Any] = {}

    def fake_run(app: object, **options: Any) -> None:
        started.update(options, app=app, config=os.environ.get("LLMGATE_CONFIG"))

    monkeypatch.setattr(cli.uvicorn, "run", fake_run)
    monkeypatch.delenv("LLMGATE_CONFIG", raising=False)
    result = CliRunner().invoke(
        cli.main, ["serve", "--config", str(config), "--workers", "2", "--host", "0.0.0.0"]
    )
    assert result.exit_code == 0, result.output
    assert started["workers"] == 2
    assert started["app"] == "llmgate.server.app:app_from_environment"
    assert started["config"] == str(config.resolve())
    from llmgate.config import config_path_from_environment, load_settings

    worker_settings = load_settings(config_path_from_environment())
    assert worker_settings.server.master_key is not None

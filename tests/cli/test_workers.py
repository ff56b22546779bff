"""`llmgate serve --workers N --config F` hands the same config to every worker process."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from llmgate.cli import main as cli
from llmgate.cli import serve as serve_command


def test_workers_get_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "prod.yaml"
    config.write_text("server: {master_key: literal-secret}\n")
    started: dict[str, Any] = {}

    def fake_run(app: object, **options: Any) -> None:
        started.update(options, app=app, config=os.environ.get("LLMGATE_CONFIG"))

    monkeypatch.setattr(serve_command.uvicorn, "run", fake_run)
    monkeypatch.setattr(serve_command, "configure_logs", lambda **_: _Listener())
    for name in ("LLMGATE_CONFIG", "PROMETHEUS_MULTIPROC_DIR", "LLMGATE_CACHE_SIZE", "LLMGATE_LOG_LEVEL"):
        monkeypatch.setenv(name, "")  # so that the serve command's own setting is undone afterwards
        monkeypatch.delenv(name)
    result = CliRunner().invoke(
        cli.main,
        ["serve", "--config", str(config), "--workers", "2", "--host", "0.0.0.0", "--cache-size", "77"],
    )
    assert result.exit_code == 0, result.output
    assert started["workers"] == 2
    assert started["app"] == "llmgate.server.app:app_from_environment"
    assert started["config"] == str(config.resolve())
    from llmgate.config import config_path_from_environment, load_settings

    worker_settings = load_settings(config_path_from_environment())
    assert worker_settings.server.master_key is not None
    assert worker_settings.cache.max_entries == 77  # --cache-size reaches the workers
    metrics_dir = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    assert (
        metrics_dir and worker_settings.server.metrics_dir == metrics_dir
    )  # one place for all workers' counts
    assert started["log_config"] is None


class _Listener:
    def stop(self) -> None:
        """Nothing was started."""

"""`llmgate serve` refuses what it must refuse before it binds anything."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from llmgate.cli.main import main


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.10", "example.invalid"])
def test_open_mode_refuses_non_loopback_hosts(host: str) -> None:
    result = CliRunner().invoke(main, ["serve", "--host", host], env={"LLMGATE_MASTER_KEY": ""})
    assert result.exit_code == 2
    assert "refusing to bind" in result.output
    assert "LLMGATE_MASTER_KEY" in result.output


def test_bad_config_exits_2_naming_the_line(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server:\n  port: not-a-port\n")
    result = CliRunner().invoke(main, ["serve", "--config", str(config)])
    assert result.exit_code == 2
    assert f"{config}:2: server.port" in result.output


def test_version() -> None:
    result = CliRunner().invoke(main, ["--version"])
    assert result.exit_code == 0
    assert "0.1.0" in result.output

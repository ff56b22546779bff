"""Run every test from a scratch directory, with a scratch data directory, so no test run writes the
default SQLite file into the checkout or into the user's own data directory."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest


@pytest.fixture(autouse=True, scope="session")
def _scratch_cwd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    scratch = tmp_path_factory.mktemp("cwd")
    data = tmp_path_factory.mktemp("xdg-data")
    previous = Path.cwd()
    saved = {name: os.environ.get(name) for name in ("XDG_DATA_HOME", "LLMGATE_DATA_DIR")}
    os.environ["XDG_DATA_HOME"] = str(data)  # also reaches the gateway processes the e2e tests start
    os.environ.pop("LLMGATE_DATA_DIR", None)
    os.chdir(scratch)
    try:
        yield scratch
    finally:
        os.chdir(previous)
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value

"""The suites find the provider recordings wherever ``LLMGATE_RECORDINGS`` says, and say how when
they cannot (a clone that is not beside ../shared must not lose hundreds of tests silently)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parent
PROBE = "import recordings_location as r; print(r.RECORDINGS_DIR); print(r.MISSING_REASON)"


def _probe(**env: str) -> list[str]:
    environ = {k: v for k, v in os.environ.items() if k != "LLMGATE_RECORDINGS"} | env
    done = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=TESTS,
        env=environ,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return done.stdout.splitlines()


def test_llmgate_recordings_chooses_the_folder(tmp_path: Path) -> None:
    where, reason = _probe(LLMGATE_RECORDINGS=str(tmp_path))
    assert where == str(tmp_path)
    assert str(tmp_path) in reason and "LLMGATE_RECORDINGS" in reason


def test_the_default_is_beside_the_repository() -> None:
    where, _ = _probe()
    assert Path(where) == TESTS.parent.parent / "shared" / "provider-recordings"

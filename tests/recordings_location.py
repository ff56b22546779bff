"""Where the shared provider recordings are: ``LLMGATE_RECORDINGS``, else ``../shared/provider-recordings``
beside the repository. Every suite that reads them skips with ``MISSING_REASON`` when they are absent."""

from __future__ import annotations

import os
from pathlib import Path

_BESIDE = Path(__file__).resolve().parents[1].parent / "shared" / "provider-recordings"
RECORDINGS_DIR = Path(os.environ.get("LLMGATE_RECORDINGS") or _BESIDE)
MISSING_REASON = (
    f"the provider recordings are not at {RECORDINGS_DIR}: set LLMGATE_RECORDINGS to the folder that holds "
    "them (by default ../shared/provider-recordings beside the repository)"
)

"""What every provider's recording suite shares: where the recordings are, and how to cut a stream."""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from itertools import pairwise
from typing import Any

from recordings_location import MISSING_REASON, RECORDINGS_DIR

__all__ = ["MISSING_REASON", "RECORDINGS_DIR", "Recording", "fragmentations", "load"]


def fragmentations(raw: bytes) -> dict[str, list[bytes]]:
    """The same bytes cut every way a network might: whole, byte by byte, by line, at random points."""

    def split(points: list[int]) -> list[bytes]:
        edges = [0, *sorted(set(points)), len(raw)]
        return [raw[start:end] for start, end in pairwise(edges)]

    seeded = {}
    for seed in (1, 2, 3):
        rng = random.Random(seed)
        seeded[f"random-{seed}"] = split([rng.randrange(1, len(raw)) for _ in range(rng.randint(1, 200))])
    return {
        "whole": [raw],
        "bytes": [raw[i : i + 1] for i in range(len(raw))],
        "lines": raw.splitlines(keepends=True),
        **seeded,
    }


@dataclass(frozen=True)
class Recording:
    """One recorded exchange."""

    name: str
    scenario: str
    request: dict[str, Any]
    response: dict[str, Any]

    @property
    def body(self) -> dict[str, Any]:
        """The recorded request body."""
        return dict(self.request["body"])

    @property
    def path(self) -> str:
        """The recorded path and query."""
        return str(self.request["url_path"])

    @property
    def status(self) -> int:
        """The recorded response status."""
        return int(self.response["status"])


def load(pattern: str) -> list[Recording]:
    """Every recording whose file name matches ``pattern``, sorted by name."""
    recordings = []
    for path in sorted(RECORDINGS_DIR.glob(pattern)):
        data = json.loads(path.read_text(encoding="utf-8"))
        recordings.append(Recording(path.name, data["scenario"], data["request"], data["response"]))
    return recordings

"""What every provider's recording suite shares: where the recordings are, and how to cut a stream."""

from __future__ import annotations

import random
from itertools import pairwise
from pathlib import Path

RECORDINGS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "provider-recordings"


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

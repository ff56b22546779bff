#!/usr/bin/env python3
"""How fast usage reports summarise a large ledger on SQLite (the embedded default).

    python bench/usage_report.py [--records 1000000] [--db PATH]

Writes ``--records`` synthetic usage records (30 days, 20 keys, 6 groups, 3 providers, a spread of
latencies and statuses) into a fresh SQLite file, then times ``summary`` for every grouping, over the
whole ledger and over one day, and for one key. Prints a table; the README states the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from llmgate.state.ports import UsageRecord
from llmgate.state.sqlite import SqliteStore
from llmgate.state.summary import GROUPINGS

DAY = 86_400.0


def records(count: int, start: float, rng: random.Random) -> list[UsageRecord]:
    groups = ["smart", "cheap", "fast", "vision", "embed", "batch"]
    providers = ["openai", "anthropic", "gemini"]
    out = []
    for n in range(count):
        status = rng.choices([200, 400, 429, 502], [90, 4, 4, 2])[0]
        out.append(
            UsageRecord(
                time=start + rng.random() * 30 * DAY,
                request_id=f"req_{n:012d}",
                key_id=f"key_{rng.randrange(20):02d}",
                model_group=rng.choice(groups),
                provider=rng.choice(providers) if status != 400 else None,
                deployment=None,
                upstream_model=rng.choice(["gpt-4o", "claude-sonnet-4-5", "gemini-2.5-flash"]),
                prompt_tokens=rng.randrange(5000),
                completion_tokens=rng.randrange(1000),
                cached_tokens=rng.randrange(100),
                reasoning_tokens=0,
                cost_usd=rng.random() / 100,
                latency_ms=rng.lognormvariate(6, 1),
                ttft_ms=None,
                status=status,
                error_type=None if status == 200 else "upstream_error",
                cache=rng.choice(["miss", "hit", "skip"]),
                attempts=1,
                stream=rng.random() < 0.5,
            )
        )
    return out


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--db", default=None)
    args = parser.parse_args()
    path = args.db or str(Path(tempfile.mkdtemp(prefix="llmgate-usage-")) / "ledger.db")
    store = await SqliteStore.connect(path)
    rng, start = random.Random(0), time.time() - 30 * DAY
    try:
        if await store.count() < args.records:
            written = time.perf_counter()
            for offset in range(0, args.records, 50_000):
                await store.write(records(min(50_000, args.records - offset), start, rng))
            print(f"wrote {args.records:,} records in {time.perf_counter() - written:.1f} s ({path})")
        print("| report | rows | seconds |\n|---|--:|--:|")
        for group_by in GROUPINGS:
            began = time.perf_counter()
            rows = await store.summary(since=None, until=None, group_by=group_by)
            print(f"| all, by {group_by} | {len(rows)} | {time.perf_counter() - began:.3f} |")
        for label, options in (
            (
                "one day, by group",
                {"since": start + 10 * DAY, "until": start + 11 * DAY, "group_by": "group"},
            ),
            ("one key, by day", {"since": None, "until": None, "group_by": "day", "key_id": "key_07"}),
        ):
            began = time.perf_counter()
            rows = await store.summary(**options)  # type: ignore[arg-type]
            print(f"| {label} | {len(rows)} | {time.perf_counter() - began:.3f} |")
    finally:
        await store.close()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

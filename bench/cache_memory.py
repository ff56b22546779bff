#!/usr/bin/env python3
"""How much memory the in-process response cache really takes against its ``max_bytes`` bound.

    python bench/cache_memory.py [--max-mib 64] [--sizes 600,4000,32000]

For each answer size, a fresh process fills a ``MemoryCache`` (``max_bytes`` = ``--max-mib``, entries
unbounded) with twice as many answers as fit, through the same store the gateway uses (encoded
``CachedAnswer`` values), and reports the bytes the cache counts, the process's RSS growth and the
ratio of the two: the overhead the README states. Semantic entries add the vector table: 256 float32
per entry, measured the same way.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def fill(max_mib: int, size: int) -> dict[str, float]:
    sys.path.insert(0, str(HERE.parent / "src"))
    import hashlib

    import msgspec

    from llmgate.core.response import ChatResponse
    from llmgate.policies.cache import AnswerStore, CachedAnswer
    from llmgate.state.cache.memory import MemoryCache
    from llmgate.state.ports import CacheKey

    backend = MemoryCache(max_entries=10**8, max_bytes=max_mib * 1024 * 1024)
    store = AnswerStore(backend, timeout=5.0, max_entry_bytes=10**8)
    template = {
        "id": "chatcmpl-x",
        "object": "chat.completion",
        "created": 1,
        "model": "gpt-4o-mini",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": ""}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 40, "total_tokens": 60},
    }
    gc.collect()
    before = rss_mib()
    count = 2 * max_mib * 1024 * 1024 // size
    for index in range(count):
        body = dict(template)
        body["choices"] = [
            {
                "index": 0,
                "message": {"role": "assistant", "content": f"{index} " + "x" * size},
                "finish_reason": "stop",
            }
        ]
        answer = CachedAnswer(
            response=msgspec.convert(body, ChatResponse),
            cost_usd=0.001,
            provider="p",
            deployment="p/m",
            upstream_model="m",
            stored_at=0.0,
        )
        digest = hashlib.sha256(str(index).encode()).hexdigest()
        await store.put(CacheKey("ns", "g", digest), answer, ttl=3600)
    gc.collect()
    stats = await backend.stats()
    grown = rss_mib() - before
    counted = stats.bytes / 1024 / 1024
    return {"size": size, "entries": stats.entries, "counted_mib": counted, "rss_growth_mib": grown}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--max-mib", type=int, default=64)
    parser.add_argument("--sizes", default="600,4000,32000")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # a child process: one size
    args = parser.parse_args()
    if args.one:
        print(json.dumps(asyncio.run(fill(args.max_mib, args.one))))
        return 0
    print(f"max_bytes {args.max_mib} MiB, filled with twice what fits\n")
    print("| answer bytes | entries kept | counted MiB | RSS growth MiB | RSS / max_bytes |")
    print("|--:|--:|--:|--:|--:|")
    for size in (int(part) for part in args.sizes.split(",")):
        command = [sys.executable, __file__, "--max-mib", str(args.max_mib), "--one", str(size)]
        out = subprocess.run(command, capture_output=True, text=True, check=True, timeout=600).stdout
        row = json.loads(out.strip().splitlines()[-1])
        print(
            f"| {size:,} | {row['entries']:,} | {row['counted_mib']:.1f} | {row['rss_growth_mib']:.1f} | "
            f"{row['rss_growth_mib'] / args.max_mib:.2f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Paired A/B benchmark: several llmgate configurations side by side with the bare pass-through proxy.

    python bench/ab.py --set cache [--rounds 3] [--duration 10] [--conc 16] [--modes nonstream,stream]
    python bench/ab.py --set observe
    python bench/ab.py --set default --baseline /path/to/other/checkout/src

Starts the yardstick's mock upstream and bare proxy (../shared/bench) and one llmgate process per
configuration of the set (one worker each, all pinned to the same core as the bare proxy). Each round
runs every target back to back (order rotated), so ratios compare runs seconds apart on a VM that
drifts. Prints req/s, p50 and p99 per target, the ratio to bare and to the set's first configuration,
each llmgate's RSS at the end.

Sets:
- ``cache``: cache off; exact cache at 0% hits (every request a prompt of its own); exact at 100% hits
  (one prompt, stored by the warm-up); semantic at 0% hits (an embedding and a vector search per
  request). Also times the semantic lookup itself at 10k and 100k entries. Bars: 0%-hit throughput
  >= 0.90x cache-off; 100%-hit >= 1.5x bare.
- ``default``: the default features with usage records in SQLite; with ``--baseline SRC`` the same
  configuration also runs from another checkout's source, for a regression check.
- ``platform``: the rows of the performance table side by side: default features; + a master key, a
  virtual key with rpm / tpm / budget and a global limit, exact in Redis (database 9); + the exact cache
  at 0% hits, metrics and JSON request lines; the Anthropic and Gemini adapters; ``/v1/messages`` in.
- ``translation``: the default features in front of the OpenAI mock, and of the Anthropic- and
  Gemini-format mocks (bench/vendor_mock.py): the translating adapters' cost.
- ``protocols``: the default features, called as Chat Completions, Anthropic Messages
  (``/v1/messages``), OpenAI Responses (``/v1/responses``) and legacy completions, all to the same
  OpenAI-compatible upstream (bar: Messages >= 0.70x of chat).
- ``observe``: metrics and request logs off; metrics on; metrics and JSON request lines on (bar:
  >= 0.90x off). ``observe-sqlite``: the same with usage records in SQLite and text lines (the defaults).

Uses ports 18100 (mock), 18110 (vendor mock), 18200 (bare) and 18300+; every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
YARDSTICK = HERE.parents[1] / "shared" / "bench"
MOCK, BARE, VENDOR = 18100, 18200, 18110
MODEL = "mock-gpt-4o-mini"
SQLITE = {"storage": {"database": "sqlite:///{work}/{name}.db"}}
MASTER = "sk-bench-master-key"
# A master key, limits shared exactly through Redis (a global one, far above what the bench reaches) and a
# virtual key with rpm / tpm / budget that every request is made with (``_key``: created at start-up).
KEYED: dict[str, Any] = {
    "server": {"master_key": MASTER},
    "storage": {"database": "sqlite:///{work}/{name}.db", "redis": "redis://127.0.0.1:6379/9"},
    "limits": {"global": {"rpm": 100_000_000, "tpm": 100_000_000_000}},
    "_key": {"rpm": 100_000_000, "tpm": 100_000_000_000, "budget_usd": 1_000_000},
}
SETS: dict[str, dict[str, dict[str, Any]]] = {
    "cache": {
        "off": {},
        "exact-0%": {"cache": {"mode": "exact", "max_entries": 100_000}},
        "exact-100%": {"cache": {"mode": "exact"}},
        "semantic-0%": {
            "cache": {"mode": "semantic", "embedding_model": "mock:mock-embed", "max_entries": 100_000}
        },
    },
    "observe": {
        "off": {"server": {"metrics": False}, "log": {"requests": False}},
        "metrics": {"log": {"requests": False}},
        "metrics+json-logs": {"log": {"requests": True, "format": "json", "level": "info"}},
    },
    "default": {"default": SQLITE},
    # The rows of the performance table: what a platform team runs, feature by feature.
    "platform": {
        "default": SQLITE,
        "keys+redis": {**SQLITE, **KEYED},
        "+cache+metrics+logs": {
            **SQLITE,
            **KEYED,
            "cache": {"mode": "exact", "max_entries": 100_000},
            "log": {"requests": True, "format": "json", "level": "info"},
        },
        "anthropic": {**SQLITE, "_provider": "anthropic"},
        "gemini": {**SQLITE, "_provider": "gemini"},
        "messages-in": {**SQLITE, "_protocol": "messages"},
    },
    "keyed": {"keys+redis": {**SQLITE, **KEYED}},  # with --baseline: the shared-limits row, old vs new
    "translation": {
        "openai": SQLITE,
        "anthropic": {**SQLITE, "_provider": "anthropic"},
        "gemini": {**SQLITE, "_provider": "gemini"},
    },
    "protocols": {
        "chat": SQLITE,
        "messages": {**SQLITE, "_protocol": "messages"},
        "responses": {**SQLITE, "_protocol": "responses"},
        "completions": {**SQLITE, "_protocol": "completions"},
    },
    "observe-sqlite": {
        "off": {**SQLITE, "server": {"metrics": False}, "log": {"requests": False}},
        "metrics": {**SQLITE, "log": {"requests": False}},
        "metrics+text-logs": {**SQLITE, "log": {"requests": True, "format": "text", "level": "info"}},
    },
}
PATHS = {
    "chat": "/v1/chat/completions",
    "messages": "/v1/messages",
    "responses": "/v1/responses",
    "completions": "/v1/completions",
}
SAME_PROMPT = {"exact-100%"}  # targets whose requests all carry one prompt (the others: a prompt each)


# The upstream of each configuration (``_provider``): the yardstick's OpenAI mock, or the vendor mock in
# Anthropic's or Gemini's format (bench/vendor_mock.py), with the model name it serves.
UPSTREAMS = {
    "openai": (f"{{type: openai, base_url: 'http://127.0.0.1:{MOCK}/v1', api_keys: [sk-bench]}}", MODEL),
    "anthropic": (
        f"{{type: anthropic, base_url: 'http://127.0.0.1:{VENDOR}', api_keys: [sk-bench]}}",
        "claude-mock",
    ),
    "gemini": (
        f"{{type: gemini, base_url: 'http://127.0.0.1:{VENDOR}', api_keys: [sk-bench]}}",
        "gemini-mock",
    ),
}


def config(extra: dict[str, Any]) -> str:
    upstream, model = UPSTREAMS[extra.get("_provider", "openai")]
    text = (
        "providers:\n"
        f"  upstream: {upstream}\n"
        "  mock: {type: mock}\n"
        f"models:\n  - {{name: {MODEL}, deployments: [{{provider: upstream, model: {model}}}]}}\n"
    )
    extra = {"storage": {"database": "memory"}, **extra}
    for how in ("_protocol", "_provider", "_key"):  # how the target is called and what it calls
        extra.pop(how, None)
    return text + "".join(f"{section}: {json.dumps(value)}\n" for section, value in extra.items())


def wait_ready(url: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError):
            urllib.request.urlopen(url, timeout=1).read()
            return
        time.sleep(0.1)
    raise SystemExit(f"{url} did not answer")


def virtual_key(base: str, limits: dict[str, Any]) -> str:
    """A virtual key with these limits, made with the master key."""
    request = urllib.request.Request(
        f"{base}/admin/keys",
        data=json.dumps({"name": "bench", **limits}).encode(),
        headers={"Authorization": f"Bearer {MASTER}", "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return str(json.loads(answer.read())["key"])


def wrk(
    url: str,
    *,
    unique: bool,
    stream: bool,
    conc: int,
    duration: float,
    protocol: str = "chat",
    api_key: str = "",
) -> dict[str, Any]:
    env = {
        **os.environ,
        "BENCH_PROTOCOL": protocol,
        "BENCH_API_KEY": api_key,
        "BENCH_UNIQUE": "1" if unique else "0",
        "BENCH_STREAM": "1" if stream else "0",
        "BENCH_NONCE": str(time.monotonic_ns()),  # prompts never repeat across runs
    }
    command = [
        "taskset",
        "-c",
        "0",
        "wrk",
        f"-t{min(conc, 2)}",
        f"-c{conc}",
        f"-d{max(1, round(duration))}s",
        "-s",
        str(HERE / "wrk_ab.lua"),
        url,
    ]
    out = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=duration + 30, check=True
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def semantic_lookup_ms() -> dict[int, float]:
    sys.path.insert(0, str(HERE.parent / "src"))
    import numpy as np

    from llmgate.state.cache.vectors import VectorTable
    from llmgate.state.ports import CacheKey

    bucket, times = CacheKey("ns", "g", "p"), {}
    rng = np.random.default_rng(0)
    for size in (10_000, 100_000):
        table = VectorTable(max_entries=size)
        vectors = rng.standard_normal((size, 256)).astype(np.float32)
        for index in range(size):
            table.add(bucket, f"d{index}", vectors[index], time.time() + 3600)
        started = time.perf_counter()
        for index in range(50):
            table.nearest(bucket, vectors[index])
        times[size] = (time.perf_counter() - started) / 50 * 1000
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument("--conc", type=int, default=16)
    parser.add_argument("--modes", default="nonstream,stream")
    parser.add_argument("--set", dest="set_name", choices=sorted(SETS), default="cache")
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also run the set's first configuration from another checkout's src/ (a regression check)",
    )
    args = parser.parse_args()
    started: list[subprocess.Popen[bytes]] = []
    work = Path(tempfile.mkdtemp(prefix="llmgate-ab-bench-"))
    llmgate = str(Path(sys.executable).with_name("llmgate"))
    try:
        mock_env = {**os.environ, "MOCK_PORT": str(MOCK)}
        started.append(
            subprocess.Popen(
                ["taskset", "-c", "0", sys.executable, str(YARDSTICK / "mock_upstream.py")],
                env=mock_env,
                stdout=subprocess.DEVNULL,
            )
        )
        vendor_env = {**os.environ, "MOCK_PORT": str(VENDOR)}
        started.append(
            subprocess.Popen(
                ["taskset", "-c", "0", sys.executable, str(HERE / "vendor_mock.py")],
                env=vendor_env,
                stdout=subprocess.DEVNULL,
            )
        )
        started.append(
            subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "1",
                    sys.executable,
                    str(YARDSTICK / "bare_proxy.py"),
                    "--port",
                    str(BARE),
                    "--upstream",
                    f"http://127.0.0.1:{MOCK}/v1",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        targets = {"bare": f"http://127.0.0.1:{BARE}/v1/chat/completions"}
        pids: dict[str, int] = {}
        protocols: dict[str, str] = {"bare": "chat"}
        api_keys: dict[str, str] = {"bare": ""}
        configs = dict(SETS[args.set_name])
        runs_from: dict[str, str | None] = dict.fromkeys(configs)
        if args.baseline:
            first = next(iter(configs))
            configs["baseline"] = configs[first]
            runs_from["baseline"] = str(Path(args.baseline).resolve())
        for offset, (name, extra) in enumerate(configs.items()):
            path = work / f"{name}.yaml"
            path.write_text(config(extra).replace("{work}", str(work)).replace("{name}", name))
            port = 18300 + offset
            env = {**os.environ, "LLMGATE_DATA_DIR": str(work)}  # logs go to /dev/null below
            if runs_from[name] is not None:
                env["PYTHONPATH"] = str(runs_from[name])
            proc = subprocess.Popen(
                [
                    "taskset",
                    "-c",
                    "1",
                    llmgate,
                    "serve",
                    "--config",
                    str(path),
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            started.append(proc)
            pids[name] = proc.pid
            protocols[name] = extra.get("_protocol", "chat")
            targets[name] = f"http://127.0.0.1:{port}{PATHS[protocols[name]]}"
        wait_ready(f"http://127.0.0.1:{MOCK}/health")
        wait_ready(f"http://127.0.0.1:{VENDOR}/health")
        for name, url in targets.items():
            wait_ready(url.replace(PATHS[protocols[name]], "/health" if name != "bare" else "/v1/models"))
            limits = configs.get(name, {}).get("_key")
            api_keys[name] = virtual_key(url.replace(PATHS[protocols[name]], ""), limits) if limits else ""
        results: dict[tuple[str, str], list[dict[str, Any]]] = {}
        names = list(targets)
        for mode in args.modes.split(","):
            stream = mode == "stream"
            for name, url in targets.items():  # warm-up: stores the one prompt of the 100% case
                unique = name not in SAME_PROMPT
                wrk(
                    url,
                    unique=unique,
                    stream=stream,
                    conc=args.conc,
                    duration=2,
                    protocol=protocols[name],
                    api_key=api_keys[name],
                )
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    result = wrk(
                        targets[name],
                        unique=name not in SAME_PROMPT,
                        stream=stream,
                        conc=args.conc,
                        duration=args.duration,
                        protocol=protocols[name],
                        api_key=api_keys[name],
                    )
                    results.setdefault((mode, name), []).append(result)
                    print(
                        f"{mode:9} {name:12} round {round_ + 1}: {result['rps']:9.1f} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
        first = next(iter(configs))
        print(f"\n| mode | target | req/s | p50 ms | p99 ms | errors | vs bare | vs {first} |")
        print("|---|---|--:|--:|--:|--:|--:|--:|")
        for mode in args.modes.split(","):
            bare = [r["rps"] for r in results[(mode, "bare")]]
            off = [r["rps"] for r in results[(mode, first)]]
            for name in names:
                runs = results[(mode, name)]
                rps = [r["rps"] for r in runs]
                vs_bare = statistics.median(a / b for a, b in zip(rps, bare, strict=True))
                vs_off = statistics.median(a / b for a, b in zip(rps, off, strict=True))
                errors = sum(r["err_status"] + r["err_other"] for r in runs)
                print(
                    f"| {mode} | {name} | {statistics.median(rps):,.0f} | {statistics.median(r['p50_ms'] for r in runs):.2f} | "
                    f"{statistics.median(r['p99_ms'] for r in runs):.2f} | {errors} | {vs_bare:.2f}x | {vs_off:.2f}x |"
                )
        print(
            "\nRSS after the run (MiB): "
            + ", ".join(f"{name} {rss_mib(pid):.1f}" for name, pid in pids.items())
        )
        if args.set_name != "cache":
            return 0
        lookups = semantic_lookup_ms()
        print(
            "semantic lookup (one bucket, 256 dims): "
            + ", ".join(f"{size:,} entries {ms:.2f} ms" for size, ms in lookups.items())
        )
        return 0
    finally:
        for proc in reversed(started):
            proc.terminate()
        for proc in started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()


if __name__ == "__main__":
    sys.exit(main())

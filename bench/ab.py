#!/usr/bin/env python3
"""Paired A/B benchmark: several llmgate configurations side by side with the bare pass-through proxy.

    python bench/ab.py --set platform --conc 1,16,64 --with-litellm --profile 10   # the whole table
    python bench/ab.py --set cache [--rounds 3] [--duration 10] [--conc 16] [--modes nonstream,stream]
    python bench/ab.py --set default --baseline /path/to/other/checkout/src

Starts the yardstick's mock upstream and bare proxy (../shared/bench) and one llmgate process per
configuration of the set (one worker each, all pinned to the same core as the bare proxy). Each round
runs every target back to back (order rotated), so ratios compare runs seconds apart on a VM that
drifts. Prints req/s, p50 and p99 per target, the ratio to bare and to the set's first configuration,
the differences of p50 and p99 to bare (paired by round), each process's RSS at the end. ``--with-litellm``
adds LiteLLM (one worker, the yardstick's configuration, on the same core); ``--profile S`` then samples each
llmgate configuration with py-spy for S seconds per mode under load (``profiles.md``). Everything goes to
``bench/results/ab-<set>-<time>/`` too: ``report.md``, ``raw.json`` (every run), the collapsed stacks.

Sets:
- ``cache``: cache off; exact cache at 0% hits (every request a prompt of its own); exact at 100% hits
  (one prompt, stored by the warm-up); semantic at 0% hits (an embedding and a vector search per
  request). Also times the semantic lookup itself at 10k and 100k entries. Bars: 0%-hit throughput
  >= 0.90x cache-off; 100%-hit >= 1.5x bare.
- ``default``: the default features with usage records in SQLite; with ``--baseline SRC`` the same
  configuration also runs from another checkout's source, for a regression check.
- ``platform``: the rows of the performance table side by side: default features; + a master key, a
  virtual key with rpm / tpm / budget and a global limit, exact in Redis (database 9, a key prefix of
  the run's own, deleted at its end; the model is priced, so every call reserves and settles a cost);
  + the exact cache at 0% hits, metrics and JSON request lines; the Anthropic and Gemini adapters;
  ``/v1/messages`` in.
- ``keyed`` and ``full``: the Redis row and the full row alone (with ``--baseline``: old against new);
  ``shared``: the default row beside the Redis row (what the shared limits add); ``features``: the Redis
  row beside the full row (what the cache, metrics and request lines add).
- ``translation``: the default features in front of the OpenAI mock, and of the Anthropic- and
  Gemini-format mocks (bench/vendor_mock.py): the translating adapters' cost.
- ``protocols``: the default features, called as Chat Completions, Anthropic Messages
  (``/v1/messages``), OpenAI Responses (``/v1/responses``) and legacy completions, all to the same
  OpenAI-compatible upstream (bar: Messages >= 0.70x of chat).
- ``observe``: metrics and request logs off; metrics on; metrics and JSON request lines on (bar:
  >= 0.90x off). ``observe-sqlite``: the same with usage records in SQLite and text lines (the defaults).

Uses ports 18100 (mock), 18110 (vendor mock), 18200 (bare), 18300+ (llmgate) and 18400 (LiteLLM); every process it starts is stopped by PID.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
YARDSTICK = HERE.parents[1] / "shared" / "bench"
MOCK, BARE, VENDOR, LITELLM = 18100, 18200, 18110, 18400
MODEL = "mock-gpt-4o-mini"
SQLITE = {"storage": {"database": "sqlite:///{work}/{name}.db"}}
MASTER = "sk-bench-master-key"
REDIS = "redis://127.0.0.1:6379/9"
# A master key, limits shared exactly through Redis (a global one, far above what the bench reaches) and a
# virtual key with rpm / tpm / budget that every request is made with (``_key``: created at start-up). The
# model has a price, so every request reserves its worst-case cost and settles the real one.
KEYED: dict[str, Any] = {
    "server": {"master_key": MASTER},
    "model_prices": {"mock-gpt-4o-mini": {"input_per_mtok": 0.15, "output_per_mtok": 0.6}},
    "storage": {
        "database": "sqlite:///{work}/{name}.db",
        "redis": REDIS,
        "redis_prefix": "llmgate-bench-{run}:",  # each run's own keys, deleted at its end
    },
    "limits": {"global": {"rpm": 100_000_000, "tpm": 100_000_000_000}},
    "_key": {"rpm": 100_000_000, "tpm": 100_000_000_000, "budget_usd": 1_000_000},
}
# ... and the exact cache at 0% hits, Prometheus metrics (on by default) and JSON request lines.
FULL: dict[str, Any] = {
    **SQLITE,
    **KEYED,
    "cache": {"mode": "exact", "max_entries": 100_000},
    "log": {"requests": True, "format": "json", "level": "info"},
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
        "+cache+metrics+logs": FULL,
        "anthropic": {**SQLITE, "_provider": "anthropic"},
        "gemini": {**SQLITE, "_provider": "gemini"},
        "messages-in": {**SQLITE, "_protocol": "messages"},
    },
    "keyed": {"keys+redis": {**SQLITE, **KEYED}},  # with --baseline: the shared-limits row, old vs new
    "shared": {"default": SQLITE, "keys+redis": {**SQLITE, **KEYED}},  # what the shared limits add
    "features": {"keys+redis": {**SQLITE, **KEYED}, "+cache+metrics+logs": FULL},  # what the rest adds
    "full": {"+cache+metrics+logs": FULL},  # with --baseline: the row with every feature on, old vs new
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
        "--timeout",
        "30s",  # wrk's default of 2 s would count a slow target's queueing as errors
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


@dataclass
class Target:
    """One process under load: how it is called (its URL, protocol and key) and its PID (for RSS)."""

    url: str
    protocol: str = "chat"
    api_key: str = ""
    pid: int | None = None
    health: str = "/health"


class Processes:
    """The processes the run started, stopped by PID at the end (also on error or Ctrl-C)."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(command, **kwargs)
        self.started.append(proc)
        return proc

    def stop(self) -> None:
        for proc in reversed(self.started):
            proc.terminate()
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(10)
            if proc.poll() is None:
                proc.kill()


def find_litellm(given: str) -> str:
    for candidate in (given, str(HERE.parent / ".venv-litellm/bin/litellm"), shutil.which("litellm") or ""):
        if candidate and Path(candidate).exists():
            return candidate
    raise SystemExit(
        "--with-litellm: no litellm found (--litellm, .venv-litellm/bin/litellm, PATH); install it in a venv "
        "of its own: python3 -m venv .venv-litellm && .venv-litellm/bin/pip install 'litellm[proxy]'"
    )


def start_targets(
    args: argparse.Namespace, procs: Processes, work: Path
) -> tuple[dict[str, Target], list[str]]:
    """The mocks, the bare proxy, one llmgate per configuration (and LiteLLM): their targets, and the
    names of the llmgate ones."""
    procs.start(
        ["taskset", "-c", "0", sys.executable, str(YARDSTICK / "mock_upstream.py")],
        env={**os.environ, "MOCK_PORT": str(MOCK)},
    )
    procs.start(
        ["taskset", "-c", "0", sys.executable, str(HERE / "vendor_mock.py")],
        env={**os.environ, "MOCK_PORT": str(VENDOR)},
    )
    bare = [
        sys.executable,
        str(YARDSTICK / "bare_proxy.py"),
        "--port",
        str(BARE),
        "--upstream",
        f"http://127.0.0.1:{MOCK}/v1",
    ]
    targets = {"bare": Target(f"http://127.0.0.1:{BARE}/v1/chat/completions", health="/v1/models")}
    targets["bare"].pid = procs.start(["taskset", "-c", "1", *bare]).pid
    configs = dict(SETS[args.set_name])
    runs_from: dict[str, str | None] = dict.fromkeys(configs)
    if args.baseline:
        configs["baseline"] = configs[next(iter(configs))]
        runs_from["baseline"] = str(Path(args.baseline).resolve())
    llmgate = str(Path(sys.executable).with_name("llmgate"))
    for offset, (name, extra) in enumerate(configs.items()):
        path = work / f"{name}.yaml"
        text = config(extra).replace("{work}", str(work)).replace("{name}", name)
        path.write_text(text.replace("{run}", work.name))
        port = 18300 + offset
        env = {**os.environ, "LLMGATE_DATA_DIR": str(work)}
        env.pop("LLMGATE_MASTER_KEY", None)
        if runs_from[name] is not None:
            env["PYTHONPATH"] = str(runs_from[name])
        serve = [llmgate, "serve", "--config", str(path), "--port", str(port)]
        if "log" not in extra:  # quiet, unless the configuration's own log level is what is measured
            serve += ["--log-level", "warning"]
        protocol = extra.get("_protocol", "chat")
        target = Target(f"http://127.0.0.1:{port}{PATHS[protocol]}", protocol)
        target.pid = procs.start(["taskset", "-c", "1", *serve], env=env).pid
        targets[name] = target
    if args.with_litellm:
        # The yardstick's LiteLLM configuration (one model, its master key, no database), on this mock.
        litellm_config = work / "litellm_config.yaml"
        text = (YARDSTICK / "litellm_config.yaml").read_text()
        litellm_config.write_text(text.replace("http://127.0.0.1:8100/v1", f"http://127.0.0.1:{MOCK}/v1"))
        command = [
            find_litellm(args.litellm),
            "--config",
            str(litellm_config),
            "--host",
            "127.0.0.1",
            "--port",
            str(LITELLM),
        ]
        env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
        pid = procs.start(["taskset", "-c", "1", *command], env=env, cwd=work).pid
        targets["litellm"] = Target(
            f"http://127.0.0.1:{LITELLM}/v1/chat/completions",
            api_key="sk-bench",
            pid=pid,
            health="/health/liveliness",
        )
    wait_ready(f"http://127.0.0.1:{MOCK}/health")
    wait_ready(f"http://127.0.0.1:{VENDOR}/health")
    for name, target in targets.items():
        base = target.url.removesuffix(PATHS[target.protocol])
        wait_ready(base + target.health, 240 if name == "litellm" else 20)
        limits = configs.get(name, {}).get("_key")
        if limits:
            target.api_key = virtual_key(base, limits)
    return targets, list(configs)


def run_target(target: Target, name: str, *, stream: bool, conc: int, duration: float) -> dict[str, Any]:
    return wrk(
        target.url,
        unique=name not in SAME_PROMPT,
        stream=stream,
        conc=conc,
        duration=duration,
        protocol=target.protocol,
        api_key=target.api_key,
    )


Results = dict[tuple[str, int, str], list[dict[str, Any]]]


def measure(args: argparse.Namespace, targets: dict[str, Target]) -> Results:
    """Every target back to back in each round (order rotated), per mode and concurrency."""
    results: Results = {}
    names = list(targets)
    for mode in args.modes.split(","):
        stream = mode == "stream"
        for name, target in targets.items():  # warm-up: also stores the one prompt of the 100% case
            run_target(target, name, stream=stream, conc=16, duration=2)
        for conc in args.conc:
            for round_ in range(args.rounds):
                order = names[round_ % len(names) :] + names[: round_ % len(names)]
                for name in order:
                    result = run_target(targets[name], name, stream=stream, conc=conc, duration=args.duration)
                    results.setdefault((mode, conc, name), []).append(result)
                    print(
                        f"{mode:9} c={conc:<3} {name:20} round {round_ + 1}: {result['rps']:9.1f} req/s",
                        file=sys.stderr,
                        flush=True,
                    )
    return results


def report(args: argparse.Namespace, results: Results, targets: dict[str, Target], first: str) -> list[str]:
    """The table: medians of the rounds, and per round paired ratios / differences to bare and ``first``."""
    lines = [
        f"| mode | c | target | req/s | p50 ms | p99 ms | errors | vs bare | p50 - bare ms | p99 - bare ms | vs {first} |",
        "|---|--:|---|--:|--:|--:|--:|--:|--:|--:|--:|",
    ]
    for mode in args.modes.split(","):
        for conc in args.conc:
            bare = results[(mode, conc, "bare")]
            off = results[(mode, conc, first)]
            for name in targets:
                runs = results[(mode, conc, name)]

                def paired(
                    key: str, how: Any, base: list[dict[str, Any]], runs: list[dict[str, Any]] = runs
                ) -> float:
                    return statistics.median(how(a[key], b[key]) for a, b in zip(runs, base, strict=True))

                ratio, minus = (lambda a, b: a / b), (lambda a, b: a - b)
                errors = sum(r["err_status"] + r["err_other"] for r in runs)
                lines.append(
                    f"| {mode} | {conc} | {name} | {statistics.median(r['rps'] for r in runs):,.0f} "
                    f"| {statistics.median(r['p50_ms'] for r in runs):.2f} | {statistics.median(r['p99_ms'] for r in runs):.2f} "
                    f"| {errors} | {paired('rps', ratio, bare):.2f}x | {paired('p50_ms', minus, bare):+.2f} "
                    f"| {paired('p99_ms', minus, bare):+.2f} | {paired('rps', ratio, off):.2f}x |"
                )
    rss = ", ".join(f"{name} {rss_mib(t.pid):.1f}" for name, t in targets.items() if t.pid is not None)
    return [*lines, "", f"RSS after the run (MiB): {rss}"]


def profile(args: argparse.Namespace, targets: dict[str, Target], names: list[str], out: Path) -> list[str]:
    """py-spy on each llmgate target under load at c=16, per mode: where its CPU goes (hotspots.py's summary)."""
    from hotspots import hot_spots

    pyspy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if pyspy is None:
        raise SystemExit("--profile needs py-spy: .venv/bin/pip install py-spy")
    lines: list[str] = []
    for name in names:
        target = targets[name]
        for mode in args.modes.split(","):
            env = {
                **os.environ,
                "BENCH_PROTOCOL": target.protocol,
                "BENCH_API_KEY": target.api_key,
                "BENCH_UNIQUE": "1",
                "BENCH_STREAM": "1" if mode == "stream" else "0",
                "BENCH_NONCE": str(time.monotonic_ns()),
            }
            load = [
                "taskset",
                "-c",
                "0",
                "wrk",
                "-t2",
                "-c16",
                f"-d{args.profile + 3}s",
                "-s",
                str(HERE / "wrk_ab.lua"),
                target.url,
            ]
            driver = subprocess.Popen(load, env=env, stdout=subprocess.DEVNULL)
            try:
                time.sleep(1.5)
                stacks = out / f"{name}-{mode}.collapsed.txt"
                record = [
                    pyspy,
                    "record",
                    "--pid",
                    str(target.pid),
                    "--duration",
                    str(args.profile),
                    "--rate",
                    "200",
                    "--format",
                    "raw",
                    "--output",
                    str(stacks),
                ]
                subprocess.run(record, capture_output=True, timeout=args.profile + 60, check=True)
            finally:
                driver.wait(args.profile + 60)
            lines += [f"## {name}, {mode}, c=16", "", *hot_spots(stacks, 12), ""]
            print(f"profiled {name} {mode}", file=sys.stderr, flush=True)
    return lines


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument(
        "--conc",
        type=lambda text: [int(c) for c in text.split(",")],
        default=[16],
        help="connections, a comma-separated list (e.g. 1,16,64) [16]",
    )
    parser.add_argument("--modes", default="nonstream,stream")
    parser.add_argument("--set", dest="set_name", choices=sorted(SETS), default="cache")
    parser.add_argument(
        "--baseline",
        metavar="SRC",
        help="also run the set's first configuration from another checkout's src/ (a regression check)",
    )
    parser.add_argument(
        "--with-litellm", action="store_true", help="LiteLLM (1 worker, same core) side by side"
    )
    parser.add_argument(
        "--litellm", default="", help="the litellm executable [.venv-litellm/bin/litellm, PATH]"
    )
    parser.add_argument(
        "--profile",
        type=int,
        default=0,
        metavar="SECONDS",
        help="then py-spy each llmgate configuration for this long per mode, at c=16",
    )
    args = parser.parse_args()
    procs = Processes()
    work = Path(tempfile.mkdtemp(prefix="llmgate-ab-bench-"))
    out = HERE / "results" / f"ab-{args.set_name}-{dt.datetime.now():%Y%m%d-%H%M%S}"
    out.mkdir(parents=True)
    try:
        targets, names = start_targets(args, procs, work)
        results = measure(args, targets)
        lines = [
            f"# bench/ab.py --set {args.set_name}: {args.rounds} rounds x {args.duration:g} s, paired",
            "",
        ]
        lines += report(args, results, targets, names[0])
        if args.set_name == "cache":
            lookups = semantic_lookup_ms()
            lines.append(
                "semantic lookup (one bucket, 256 dims): "
                + ", ".join(f"{size:,} entries {ms:.2f} ms" for size, ms in lookups.items())
            )
        (out / "raw.json").write_text(
            json.dumps(
                [{"mode": m, "conc": c, "target": n, "runs": r} for (m, c, n), r in results.items()], indent=1
            )
        )
        (out / "report.md").write_text("\n".join(lines) + "\n")
        print("\n" + "\n".join(lines[2:]))
        if args.profile:
            (out / "profiles.md").write_text("\n".join(profile(args, targets, names, out)))
        print(f"\nwrote {out}", file=sys.stderr)
        return 0
    finally:
        procs.stop()
        forget_redis_keys(f"llmgate-bench-{work.name}:")


def forget_redis_keys(prefix: str) -> None:
    """Delete the keys a run left in Redis (budgets without a period never expire)."""
    with contextlib.suppress(ImportError, OSError, ConnectionError):
        import redis

        client = redis.Redis.from_url(REDIS, socket_connect_timeout=2)
        try:
            for key in client.scan_iter(f"{prefix}*", count=1000):
                client.delete(key)
        except redis.exceptions.ConnectionError:
            pass  # no Redis, no keys
        finally:
            client.close()


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""What hedging buys and costs: tail latency with and without ``hedge``, one deployment having a slow tail.

    .venv/bin/python bench/hedging.py [--requests 400] [--concurrency 8] [--slow-ms 500] [--slow-share 0.1]

Starts two mock upstreams (``tests/e2e/upstream.py``, one process each, on 127.0.0.1): ``a`` answers
``--slow-share`` of its requests after ``--slow-ms`` and the rest after ``--base-ms``; ``b`` always after
``--base-ms``. One model group serves both, round robin, so about half the traffic meets ``a``. Then runs
``llmgate serve`` twice in front of them, once without hedging and once with
``hedge: {after_ms: --after-ms, max_share: --max-share}``, drives the same closed loop through each
(``--requests`` chat completions at ``--concurrency``, after a short warm-up) and prints the client-side
latency percentiles of both runs, and the extra upstream requests the hedged run sent.

The slow decisions come from a seeded random generator in the upstream, re-seeded before each run, so
both runs see the same pattern of slow answers (in arrival order). Everything it starts is stopped by PID,
also on Ctrl-C or error, and the whole run has a hard time limit (``--time-limit``). Logs and a JSON
summary go to ``bench/results/hedging-<timestamp>/`` (gitignored).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import select
import signal
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
UPSTREAM = REPO / "tests" / "e2e" / "upstream.py"
UPSTREAM_KEY = "sk-bench-hedging"
GROUP = "bench-hedge"
START_TIMEOUT_S = 20.0
WARMUP_REQUESTS = 32


@dataclass
class RunResult:
    """One measured run: latency figures (ms) and what the upstreams received."""

    name: str
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    mean_ms: float
    upstream_a: int
    upstream_b: int
    slow_answers_started: int
    cancelled_upstream: int

    @property
    def extra(self) -> int:
        """Upstream requests beyond one per client request."""
        return self.upstream_a + self.upstream_b - self.requests


class Processes:
    """Every process this script starts, stopped by PID."""

    def __init__(self) -> None:
        self.running: list[subprocess.Popen[Any]] = []

    def start(self, command: list[str], log: Path, **options: Any) -> subprocess.Popen[Any]:
        with log.open("w") as out:
            proc = subprocess.Popen(command, stderr=out, env=_clean_env(), **options)
        self.running.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any]) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self) -> None:
        for proc in list(reversed(self.running)):
            self.stop(proc)


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith(("LLMGATE_", "LLM_PROXY_"))}


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_upstream(procs: Processes, out: Path, name: str) -> str:
    """An upstream process; returns its base URL once it listens."""
    command = [sys.executable, str(UPSTREAM), "--port", "0", "--require-key", UPSTREAM_KEY]
    proc = procs.start(command, out / f"upstream-{name}.log", stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    line = ""
    while (left := deadline - time.monotonic()) > 0 and proc.poll() is None:
        if select.select([proc.stdout], [], [], left)[0]:
            line = proc.stdout.readline()
            break
    if not line.startswith("UPSTREAM READY"):
        raise RuntimeError(f"upstream {name} did not start; see {out}/upstream-{name}.log")
    return f"http://127.0.0.1:{int(line.split()[-1])}"


def llmgate_command() -> list[str]:
    script = Path(sys.executable).with_name("llmgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from llmgate.cli.main import main; main()"]


def gateway_config(upstreams: dict[str, str], hedge: dict[str, float] | None) -> dict[str, Any]:
    group: dict[str, Any] = {
        "name": GROUP,
        "strategy": "round_robin",
        "deployments": [{"provider": name, "model": f"bench-{name}"} for name in upstreams],
    }
    if hedge is not None:
        group["hedge"] = hedge
    providers = {
        name: {"type": "openai", "base_url": f"{url}/v1", "api_keys": [UPSTREAM_KEY]}
        for name, url in upstreams.items()
    }
    return {
        "server": {"grace_period": 2},
        "routing": {"retries": 1, "timeouts": {"connect": 2, "first_token": 10, "idle": 10, "total": 20}},
        "providers": providers,
        "models": [group],
    }


def start_gateway(procs: Processes, out: Path, name: str, config: dict[str, Any]) -> tuple[str, Any]:
    """``llmgate serve`` with ``config``; returns its URL (and process) once /health answers."""
    config_path = out / f"llmgate-{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    port = free_port()
    command = [*llmgate_command(), "serve", "--config", str(config_path), "--host", "127.0.0.1"]
    command += ["--port", str(port), "--log-level", "warning"]
    proc = procs.start(command, out / f"llmgate-{name}.log", stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                return url, proc
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"llmgate did not become healthy; see {out}/llmgate-{name}.log")


def set_upstreams(upstreams: dict[str, str], args: argparse.Namespace) -> None:
    """Reset logs and (re)seed the slow tail of ``a``; ``b`` only has the base latency."""
    for name, url in upstreams.items():
        httpx.delete(f"{url}/_log", timeout=5).raise_for_status()
        fault: dict[str, Any] = {"mode": "ok", "latency_ms": args.base_ms}
        if name == "a":
            fault |= {"mode": "slow", "slow_ms": args.slow_ms, "share": args.slow_share, "seed": args.seed}
        httpx.post(f"{url}/_fault", json=fault, timeout=5).raise_for_status()


async def drive(url: str, requests: int, concurrency: int, *, stream: bool) -> tuple[list[float], int, float]:
    """A closed loop: ``concurrency`` workers, each sending its next request when the last is done."""
    latencies: list[float] = []
    errors = 0
    queue = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for i in queue:
            body = {"model": GROUP, "messages": [{"role": "user", "content": f"hedge {i}"}], "stream": stream}
            started = time.perf_counter()
            try:
                if stream:
                    async with client.stream("POST", f"{url}/v1/chat/completions", json=body) as response:
                        text = "".join([line async for line in response.aiter_lines()])
                        ok = response.status_code == 200 and text.endswith("data: [DONE]")
                else:
                    response = await client.post(f"{url}/v1/chat/completions", json=body)
                    ok = response.status_code == 200
            except httpx.HTTPError:
                ok = False
            latencies.append((time.perf_counter() - started) * 1000)
            errors += not ok

    started = time.perf_counter()
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
    return latencies, errors, time.perf_counter() - started


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def upstream_figures(url: str) -> tuple[int, int, int]:
    """Requests received, slow answers started, and requests whose client went away."""
    entries = httpx.get(f"{url}/_log", timeout=10).json()["requests"]
    slow = sum(entry.get("runtime_fault") == "slow" for entry in entries)
    cancelled = sum(bool(entry.get("disconnected")) for entry in entries)
    return len(entries), slow, cancelled


def measure(
    procs: Processes,
    out: Path,
    upstreams: dict[str, str],
    args: argparse.Namespace,
    *,
    name: str,
    hedge: dict[str, float] | None,
) -> RunResult:
    url, proc = start_gateway(procs, out, name, gateway_config(upstreams, hedge))
    try:
        set_upstreams(upstreams, args)
        asyncio.run(
            drive(url, WARMUP_REQUESTS, args.concurrency, stream=args.stream)
        )  # connections, JIT-less
        set_upstreams(upstreams, args)  # same seed: the same slow pattern for both runs
        latencies, errors, seconds = asyncio.run(
            drive(url, args.requests, args.concurrency, stream=args.stream)
        )
        time.sleep(0.2)  # let cancelled upstream handlers record that their client went away
        a, slow_a, cancelled_a = upstream_figures(upstreams["a"])
        b, _, cancelled_b = upstream_figures(upstreams["b"])
    finally:
        procs.stop(proc)
    return RunResult(
        name=name,
        requests=len(latencies),
        errors=errors,
        seconds=round(seconds, 2),
        p50_ms=round(percentile(latencies, 0.50), 1),
        p95_ms=round(percentile(latencies, 0.95), 1),
        p99_ms=round(percentile(latencies, 0.99), 1),
        max_ms=round(max(latencies), 1),
        mean_ms=round(statistics.fmean(latencies), 1),
        upstream_a=a,
        upstream_b=b,
        slow_answers_started=slow_a,
        cancelled_upstream=cancelled_a + cancelled_b,
    )


def report(results: list[RunResult], args: argparse.Namespace) -> str:
    head = (
        f"{args.requests} requests at concurrency {args.concurrency} "
        f"({'streaming' if args.stream else 'non-streaming'}); "
        f"deployment a: {args.slow_share:.0%} of answers "
        f"after {args.slow_ms} ms, the rest after {args.base_ms} ms; b: {args.base_ms} ms; round robin."
    )
    lines = [
        head,
        "",
        "| run | req/s | p50 ms | p95 ms | p99 ms | max ms | mean ms | errors | upstream a/b | slow at a "
        "| extra upstream requests | cancelled upstream |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        cells = [
            r.name,
            f"{r.requests / r.seconds:.0f}",
            *(str(v) for v in (r.p50_ms, r.p95_ms, r.p99_ms, r.max_ms, r.mean_ms, r.errors)),
            f"{r.upstream_a}/{r.upstream_b}",
            str(r.slow_answers_started),
            f"{r.extra} ({r.extra / r.requests:.1%})",
            str(r.cancelled_upstream),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += [
        "",
        "extra upstream requests: upstream requests beyond one per client request (the hedges); "
        "cancelled upstream: requests whose client (llmgate) went away, i.e. hedge losers. A closed loop: "
        "when hedging frees the workers that slow answers held, throughput and load rise, and with them "
        "the p50 on a small machine.",
    ]
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--slow-ms", type=int, default=500, help="how long a slow answer of `a` takes")
    parser.add_argument(
        "--slow-share", type=float, default=0.1, help="fraction of `a`'s answers that are slow"
    )
    parser.add_argument("--base-ms", type=int, default=5, help="every other answer's latency")
    parser.add_argument("--after-ms", type=float, default=50, help="hedge.after_ms of the hedged run")
    parser.add_argument("--max-share", type=float, default=0.1, help="hedge.max_share of the hedged run")
    parser.add_argument("--stream", action="store_true", help="streaming requests (latency to [DONE])")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--time-limit", type=float, default=120, help="hard limit for the whole run (s)")
    parser.add_argument("--out", type=Path, default=None, help="default: bench/results/hedging-<timestamp>")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out: Path = args.out or HERE / "results" / f"hedging-{stamp}"
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes()

    def on_signal(signum: int, _frame: Any) -> None:
        raise SystemExit(f"stopped by signal {signum}")

    def on_time_limit(_signum: int, _frame: Any) -> None:
        raise SystemExit(f"time limit of {args.time_limit:g}s reached")

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGALRM, on_time_limit)
    signal.alarm(max(1, int(args.time_limit)))
    try:
        upstreams = {name: start_upstream(procs, out, name) for name in ("a", "b")}
        hedge = {"after_ms": args.after_ms, "max_share": args.max_share}
        results = [
            measure(procs, out, upstreams, args, name="no hedging", hedge=None),
            measure(procs, out, upstreams, args, name=f"hedge after {args.after_ms:g} ms", hedge=hedge),
        ]
    finally:
        signal.alarm(0)
        procs.stop_all()
    text = report(results, args)
    print(text)
    (out / "report.md").write_text(text + "\n")
    summary = {"args": {k: str(v) for k, v in vars(args).items()}, "runs": [asdict(r) for r in results]}
    (out / "report.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(f"\nlogs and report: {out}")
    return 1 if any(r.errors for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())

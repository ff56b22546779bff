#!/usr/bin/env python3
"""llmgate's own benchmark: one command, llmgate side by side with the yardstick.

    python bench/run.py [--quick] [--with-litellm]

Uses the shared yardstick harness (``../shared/bench`` next to the repository:
mock upstream, bare aiohttp pass-through proxy, wrk/loadgen driver and
``compare.py``) and adds llmgate as one more target:

1. idle RSS: starts the mock upstream and llmgate (one worker, ``taskset`` to
   the same core as the yardstick's proxies), warms llmgate up (2 s of
   non-streaming and 2 s of streaming load at c=16), lets it idle and reads
   VmRSS from /proc; then stops that mock;
2. runs ``compare.py --targets direct,bare[,litellm] --target llmgate=...
   --watch llmgate=PID --ttfb`` (it starts its own mock and reference proxies,
   alternates the targets and writes raw.jsonl + summary.md);
3. reads raw.jsonl and prints req/s, p50/p99 latency, TTFB and CPU per
   request per mode x concurrency, the llmgate/bare ratios, the latency
   llmgate adds at c=1, RSS, and PASS/FAIL against the performance bar.

Everything lands in bench/results/<timestamp>/ (gitignored). Every process
this script starts is stopped by PID. Exit status: 0 bar met, 1 bar missed,
2 could not run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
YARDSTICK = Path(__file__).resolve().parents[2] / "shared" / "bench"
CONFIG = HERE / "llmgate.yaml"
MOCK_PORT, BARE_PORT, LITELLM_PORT = 8100, 8200, 4000
MODEL, API_KEY = "mock-gpt-4o-mini", "sk-bench"

# The performance bar (one worker on one core, pass-through to the instant mock).
MIN_THROUGHPUT_RATIO = 0.60  # llmgate req/s over bare req/s, each mode, at saturating concurrency
MAX_ADDED_P50_MS = 0.6  # llmgate p50 - direct p50, non-streaming, c=1
MAX_IDLE_RSS_MIB = 80.0

FULL = {"rounds": 3, "duration": 10, "warmup": 3, "ttfb_duration": 5}
QUICK = {"rounds": 1, "duration": 3, "warmup": 1, "ttfb_duration": 2}


class SetupError(Exception):
    """The benchmark cannot run on this machine as it is; the message says what to do."""


def log(*parts: object) -> None:
    print(time.strftime("%H:%M:%S"), *parts, file=sys.stderr, flush=True)


# --- processes -----------------------------------------------------------------------------------------


@dataclass
class Processes:
    """What this script started; stopped by PID, newest first."""

    logdir: Path
    started: list[tuple[str, subprocess.Popen[Any]]] = field(default_factory=list)
    foreign: dict[int, str] = field(default_factory=dict)  # pid -> script, started by compare.py

    def start(
        self, name: str, cmd: list[str], *, cpus: str | None, env: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        if cpus:
            cmd = ["taskset", "-c", cpus, *cmd]
        with open(self.logdir / f"{name}.log", "ab") as out:
            proc = subprocess.Popen(
                cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        self.started.append((name, proc))
        log(f"started {name} pid={proc.pid}: {' '.join(cmd)}")
        return proc

    def stop(self, proc: subprocess.Popen[Any], name: str) -> None:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log(f"stopped {name} pid={proc.pid}")

    def stop_all(self) -> None:
        for name, proc in reversed(self.started):
            self.stop(proc, name)
        for pid, script in self.foreign.items():  # only if compare.py could not stop them itself
            if _cmdline_has(pid, script):
                log(f"stopping leftover {script} pid={pid}")
                _kill_pid(pid)


def _cmdline_has(pid: int, needle: str) -> bool:
    try:
        return needle.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def _kill_pid(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
        for _ in range(100):
            time.sleep(0.1)
            os.kill(pid, 0)
        os.kill(pid, signal.SIGKILL)


def proc_status_mib(pid: int, key: str) -> float | None:
    """A memory field of /proc/<pid>/status (VmRSS, VmHWM) in MiB."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return None


def wait_ready(base_url: str, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll a chat completion until it answers 200."""
    body = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "ping"}]}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_KEY}"}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise SetupError(f"the process for {base_url} exited with status {proc.returncode}")
        request = urllib.request.Request(base_url + "/chat/completions", data=body, headers=headers)
        with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=5) as response:
            if response.status == 200:
                return
        time.sleep(0.3)
    raise SetupError(f"{base_url} did not answer within {timeout:g}s")


# --- preflight -----------------------------------------------------------------------------------------


def preflight(args: argparse.Namespace) -> dict[str, Any]:
    """Check the machine; return what was found (tools, CPUs, executables)."""
    missing = [
        f
        for f in ("compare.py", "run.sh", "mock_upstream.py", "bare_proxy.py")
        if not (YARDSTICK / f).exists()
    ]
    if missing:
        raise SetupError(
            f"the yardstick harness is missing: expected {YARDSTICK} with compare.py, run.sh, "
            f"mock_upstream.py, bare_proxy.py (missing: {', '.join(missing)}). It lives in the shared "
            "workspace next to the repository (../shared/bench)."
        )
    for tool, package in (("taskset", "util-linux"), ("ps", "procps"), ("curl", "curl"), ("bash", "bash")):
        if shutil.which(tool) is None:
            raise SetupError(f"'{tool}' is required by the harness: apt-get install -y {package}")
    for module in ("aiohttp", "uvloop"):
        if importlib.util.find_spec(module) is None:
            raise SetupError(f"{sys.executable} lacks '{module}': pip install -e '.[dev]' in the venv")
    wrk = shutil.which("wrk")
    if wrk is None:
        log(
            "wrk not found: falling back to the harness's Python driver (loadgen.py), which is slower "
            "and competes for CPU. For the real numbers: apt-get update && apt-get install -y wrk"
        )
    llmgate = Path(sys.executable).with_name("llmgate")
    if not llmgate.exists():
        found = shutil.which("llmgate")
        if found is None:
            raise SetupError("the 'llmgate' command is not installed: pip install -e '.[dev]'")
        llmgate = Path(found)
    cpus = sorted(os.sched_getaffinity(0))
    for spec in (args.sut_cpus, args.aux_cpus):
        if any(int(c) not in cpus for c in spec.split(",")):
            raise SetupError(f"CPU {spec} is not available (this process may use {cpus}); see --sut-cpus")
    ports = [MOCK_PORT, BARE_PORT, args.port] + ([LITELLM_PORT] if args.with_litellm else [])
    busy = [p for p in ports if _port_busy(p)]
    if busy:
        raise SetupError(f"port(s) {busy} on 127.0.0.1 already in use: stop whatever listens there first")
    found: dict[str, Any] = {"llmgate": str(llmgate), "driver": "wrk" if wrk else "python", "cpus": cpus}
    if args.with_litellm:
        found["litellm"] = _find_litellm(args.litellm)
    return found


def _port_busy(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _find_litellm(given: str | None) -> str:
    candidates = [given] if given else []
    candidates += [str(REPO / ".venv-litellm/bin/litellm"), str(REPO.parent / ".venv-litellm/bin/litellm")]
    candidates += [shutil.which("litellm") or ""]
    for c in candidates:
        if c and Path(c).exists():
            return c
    raise SetupError(
        "--with-litellm: no litellm executable found (tried --litellm, .venv-litellm/bin/litellm, PATH). "
        "Install it in its own venv: python3 -m venv .venv-litellm && "
        ".venv-litellm/bin/pip install 'litellm[proxy]'"
    )


# --- phases --------------------------------------------------------------------------------------------


def llmgate_env() -> dict[str, str]:
    """The environment for llmgate: no master key (open mode), no stray config."""
    drop = {"LLMGATE_MASTER_KEY", "LLMGATE_CONFIG"}
    return {k: v for k, v in os.environ.items() if k not in drop}


def measure_idle(args: argparse.Namespace, procs: Processes, found: dict[str, Any]) -> dict[str, Any]:
    """Start llmgate (left running) and its own mock; warm up, idle, read RSS; stop the mock."""
    mock_env = dict(os.environ, MOCK_PORT=str(MOCK_PORT))
    mock = procs.start(
        "idle-mock", [sys.executable, str(YARDSTICK / "mock_upstream.py")], cpus=args.aux_cpus, env=mock_env
    )
    wait_ready(f"http://127.0.0.1:{MOCK_PORT}/v1", 15, mock)
    cmd = [found["llmgate"], "serve", "--config", str(args.config), "--port", str(args.port)]
    gate = procs.start("llmgate", cmd, cpus=args.sut_cpus, env=llmgate_env())
    url = f"http://127.0.0.1:{args.port}/v1"
    started = time.monotonic()
    wait_ready(url, 60, gate)
    ready_s = time.monotonic() - started
    first_rss = proc_status_mib(gate.pid, "VmRSS")
    for stream in (False, True):
        cmd = [sys.executable, str(YARDSTICK / "loadgen.py"), "--url", url, "-c", "16", "-d", "2", "-w", "0"]
        cmd = ["taskset", "-c", args.aux_cpus, *cmd, *(["--stream"] if stream else [])]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
        if out.returncode != 0:
            raise SetupError(f"warm-up load against llmgate failed: {out.stderr[-500:]}")
        log(f"warm-up {'stream' if stream else 'nonstream'}: {out.stdout.strip()[:160]}")
    time.sleep(args.idle)
    idle = {
        "ready_s": round(ready_s, 2),
        "rss_after_1_request_mib": first_rss,
        "idle_rss_mib": proc_status_mib(gate.pid, "VmRSS"),
        "idle_hwm_mib": proc_status_mib(gate.pid, "VmHWM"),
        "idle_s": args.idle,
        "pid": gate.pid,
        "url": url,
    }
    log(f"llmgate idle RSS {idle['idle_rss_mib']} MiB (after warm-up + {args.idle:g}s idle)")
    procs.stop(mock, "idle-mock")
    return idle


def compare_command(
    args: argparse.Namespace, found: dict[str, Any], idle: dict[str, Any], out: Path
) -> list[str]:
    targets = "direct,bare" + (",litellm" if args.with_litellm else "")
    cmd = [sys.executable, str(YARDSTICK / "compare.py"), "--targets", targets]
    cmd += ["--target", f"llmgate={idle['url']}", "--watch", f"llmgate={idle['pid']}", "--ttfb"]
    cmd += ["--rounds", str(args.rounds), "--duration", str(args.duration), "--warmup", str(args.warmup)]
    cmd += ["--ttfb-duration", str(args.ttfb_duration), "--conc", args.conc, "--modes", args.modes]
    cmd += ["--sut-cpus", args.sut_cpus, "--mock-cpus", args.aux_cpus, "--loadgen-cpus", args.aux_cpus]
    cmd += ["--python", sys.executable, "--out", str(out), "--logdir", str(out / "logs")]
    if args.with_litellm:
        cmd += ["--litellm", found["litellm"]]
    return cmd


def estimate_seconds(args: argparse.Namespace) -> float:
    """Rough wall time of the compare.py phase."""
    n_targets = 3 + int(args.with_litellm)
    modes = args.modes.split(",")
    conc = args.conc.split(",")
    per_cell = args.warmup + args.duration + 1.0
    cells = n_targets * len(conc) * args.rounds
    total = cells * per_cell * len(modes)
    if "stream" in modes:
        total += cells * (args.ttfb_duration + 2.0)
    return total + n_targets * len(modes) * 6 + 30 + (60 if args.with_litellm else 0)


def run_compare(cmd: list[str], procs: Processes, out: Path, deadline_s: float) -> None:
    """compare.py, its log echoed; interrupted (SIGINT, so it stops its children) past the deadline."""
    log(f"running: {' '.join(cmd)}")
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        bufsize=1,
        start_new_session=True,
    )
    procs.started.append(("compare.py", proc))
    deadline = time.monotonic() + deadline_s
    try:
        with open(out / "compare.log", "w") as logf, selectors.DefaultSelector() as sel:
            assert proc.stderr is not None
            sel.register(proc.stderr, selectors.EVENT_READ)
            _pump(proc.stderr, sel, logf, procs, deadline)
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            log("compare.py still running: interrupting it")
            _interrupt(proc)
    if proc.returncode not in (0, None):
        raise RuntimeError(f"compare.py exited with status {proc.returncode}; see {out / 'compare.log'}")


def _pump(
    stream: TextIO, sel: selectors.BaseSelector, logf: TextIO, procs: Processes, deadline: float
) -> None:
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError("compare.py ran past its time limit (see --timeout)")
        if not sel.select(timeout=min(left, 5.0)):
            continue
        line = stream.readline()
        if not line:
            return
        logf.write(line)
        logf.flush()
        sys.stderr.write("  | " + line)
        words = line.split()
        if len(words) >= 5 and words[1] == "started" and words[3].startswith("pid="):
            script = next((w for w in words[4:] if w.endswith((".py", "litellm"))), words[-1])
            procs.foreign[int(words[3][4:].rstrip(":"))] = Path(script).name


def _interrupt(proc: subprocess.Popen[str]) -> None:
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGINT)  # its finally: stops the mock and proxies it started
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # its own session: run.sh, wrk, loadgen
        proc.wait()


# --- report --------------------------------------------------------------------------------------------


def load_rows(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            row = json.loads(line)
            if "error" not in row:
                rows.append(row)
    return rows


def _med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _errors(row: dict[str, Any]) -> int:
    keys = ("err_connect", "err_read", "err_write", "err_status", "err_timeout")
    return sum(int(row.get(k, 0)) for k in keys)


def _cpu_ms(row: dict[str, Any], label: str) -> float | None:
    key = "cpu_mock_s" if label == "direct" else "cpu_proxy_s"
    if key not in row or not row.get("requests"):
        return None
    return float(row[key]) * 1000 / row["requests"]


@dataclass
class Cell:
    """One target at one mode x concurrency: medians over rounds."""

    rps: float
    p50: float
    p99: float
    cpu_ms: float | None
    ttfb_p50: float | None
    errors: int
    added_p50: float | None  # paired with direct, same round
    ratio_vs_bare: float | None  # req/s over bare's, paired by round


def summarise(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int], Cell]:
    by: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        by.setdefault((r["label"], r["mode"], r["conc"]), []).append(r)
    cells = {}
    for (label, mode, conc), rs in by.items():

        def paired(
            other: str, rs: list[dict[str, Any]] = rs, mode: str = mode, conc: int = conc
        ) -> list[Any]:
            pairs = []
            for r in rs:
                match = [x for x in by.get((other, mode, conc), []) if x["round"] == r["round"]]
                if match and other != r["label"]:
                    pairs.append((r, match[0]))
            return pairs

        cpu = [c for r in rs if (c := _cpu_ms(r, label)) is not None]
        cells[(label, mode, conc)] = Cell(
            rps=statistics.median(r["rps"] for r in rs),
            p50=statistics.median(r["p50_ms"] for r in rs),
            p99=statistics.median(r["p99_ms"] for r in rs),
            cpu_ms=_med(cpu),
            ttfb_p50=_med([r["ttfb_p50_ms"] for r in rs if "ttfb_p50_ms" in r]),
            errors=sum(_errors(r) for r in rs),
            added_p50=_med([a["p50_ms"] - d["p50_ms"] for a, d in paired("direct")]),
            ratio_vs_bare=None
            if label in ("direct", "bare")
            else _med([a["rps"] / b["rps"] for a, b in paired("bare") if b["rps"]]),
        )
    return cells


def _f(x: float | None, nd: int = 2, signed: bool = False) -> str:
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:+,.0f}" if signed else f"{x:,.0f}"
    return f"{x:+.{nd}f}" if signed else f"{x:.{nd}f}"


def table(header: list[str], rows: list[list[str]], left: tuple[int, ...] = (0,)) -> list[str]:
    """A Markdown table, padded so that it also reads well in a terminal; numbers right-aligned."""
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: list[str]) -> str:
        parts = [c.ljust(widths[i]) if i in left else c.rjust(widths[i]) for i, c in enumerate(cells)]
        return "| " + " | ".join(parts) + " |"

    rule = [("-" * (w + 1) + " ") if i in left else (" " + "-" * w + ":") for i, w in enumerate(widths)]
    return [line(header), "|" + "|".join(rule) + "|", *(line(r) for r in rows)]


def results_table(
    cells: dict[tuple[str, str, int], Cell], targets: list[str], modes: list[str], conc: list[int]
) -> list[str]:
    header = ["mode", "conc", "target", "req/s", "p50 ms", "p99 ms", "+p50 vs direct", "TTFB p50 ms"]
    header += ["CPU ms/req", "req/s vs bare", "errors"]
    rows = []
    for mode in modes:
        for c in conc:
            for t in targets:
                cell = cells.get((t, mode, c))
                if cell is None:
                    continue
                cpu = _f(cell.cpu_ms, 3) + (" (mock)" if t == "direct" and cell.cpu_ms is not None else "")
                ratio = f"{cell.ratio_vs_bare:.2f}x" if cell.ratio_vs_bare is not None else "-"
                ttfb = _f(cell.ttfb_p50, 3) if mode == "stream" else "-"
                added = _f(cell.added_p50, 3, signed=True)
                numbers = [_f(cell.rps, 0), _f(cell.p50, 3), _f(cell.p99, 3), added, ttfb, cpu, ratio]
                rows.append([mode, str(c), t, *numbers, str(cell.errors)])
    return table(header, rows, left=(0, 2))


def ratio_table(cells: dict[tuple[str, str, int], Cell], modes: list[str], conc: list[int]) -> list[str]:
    rows = []
    for mode in modes:
        row = [mode, "req/s"]
        row += [_f(getattr(cells.get(("llmgate", mode, c)), "ratio_vs_bare", None), 2) for c in conc]
        rows.append(row)
        cpu = []
        for c in conc:
            g, b = cells.get(("llmgate", mode, c)), cells.get(("bare", mode, c))
            cpu.append(_f(g.cpu_ms / b.cpu_ms, 2) if g and b and g.cpu_ms and b.cpu_ms else "-")
        rows.append([mode, "CPU/req", *cpu])
    return table(["llmgate / bare", "measure", *[f"c={c}" for c in conc]], rows, left=(0, 1))


def verdict(
    cells: dict[tuple[str, str, int], Cell], idle: dict[str, Any], modes: list[str], conc: list[int]
) -> tuple[list[str], bool]:
    """The bar, item by item, and whether all of it is met."""
    rows: list[list[str]] = []

    def judge(name: str, measured: str | None, limit: str, ok: bool | None) -> None:
        rows.append([name, measured or "n/a", limit, "n/a" if ok is None else ("PASS" if ok else "FAIL")])

    saturating = [c for c in conc if c >= 16] or conc
    where = ", ".join(f"c={c}" for c in saturating)
    for mode in modes:
        cells_at = [cells.get(("llmgate", mode, c)) for c in saturating]
        known = [cell.ratio_vs_bare for cell in cells_at if cell and cell.ratio_vs_bare is not None]
        worst = min(known) if known else None
        judge(
            f"{mode} req/s vs bare ({where}, worst)",
            f"{worst:.2f}x" if worst is not None else None,
            f">= {MIN_THROUGHPUT_RATIO:.2f}x",
            None if worst is None else worst >= MIN_THROUGHPUT_RATIO,
        )
    c1 = cells.get(("llmgate", "nonstream", 1))
    added = c1.added_p50 if c1 else None
    judge(
        "added p50 vs direct, nonstream, c=1",
        f"{added:+.3f} ms" if added is not None else None,
        f"<= {MAX_ADDED_P50_MS} ms",
        None if added is None else added <= MAX_ADDED_P50_MS,
    )
    rss = idle.get("idle_rss_mib")
    judge(
        f"idle RSS (after warm-up + {idle.get('idle_s', 0):g}s idle)",
        f"{rss} MiB" if rss else None,
        f"<= {MAX_IDLE_RSS_MIB:g} MiB",
        None if rss is None else rss <= MAX_IDLE_RSS_MIB,
    )
    errors = sum(cell.errors for (t, _, _), cell in cells.items() if t == "llmgate")
    judge("llmgate errors (non-2xx, socket, timeouts)", str(errors), "0", errors == 0)
    results = [r[3] for r in rows]
    passed = "FAIL" not in results and "PASS" in results
    return table(["bar", "measured", "limit", "result"], rows, left=(0, 3)), passed


def report(
    args: argparse.Namespace, out: Path, idle: dict[str, Any], after: dict[str, Any], meta: dict[str, Any]
) -> bool:
    rows = load_rows(out / "raw.jsonl")
    if not rows:
        raise RuntimeError(f"no measurements in {out / 'raw.jsonl'}; see {out / 'compare.log'}")
    modes = [m for m in args.modes.split(",") if any(r["mode"] == m for r in rows)]
    conc = [int(c) for c in args.conc.split(",")]
    labels = {r["label"] for r in rows}
    targets = [t for t in ("direct", "bare", "litellm", "llmgate") if t in labels]
    cells = summarise(rows)
    bar, passed = verdict(cells, idle, modes, conc)
    peak = max((r.get("hwm_proxy_mb", 0) for r in rows if r["label"] == "llmgate"), default=None)
    lines = [
        f"# llmgate benchmark, {meta['date']}",
        "",
        f"{args.rounds} round(s) x {args.duration}s measured (+{args.warmup}s warm-up) per cell, driver "
        f"{meta['driver']}, targets alternated; medians over rounds. llmgate {meta['git']}, one worker "
        f"pinned to CPU {args.sut_cpus}; mock and load generator on CPU {args.aux_cpus}.",
        "",
        *results_table(cells, targets, modes, conc),
        "",
        "CPU ms/req: the proxy's own CPU per request (utime+stime over the measured window); for "
        "`direct`, the mock's. +p50: paired with `direct` in the same round. Stream latency is to "
        "`data: [DONE]`; TTFB (loadgen.py) to the first body bytes.",
        "",
        *ratio_table(cells, modes, conc),
        "",
        f"llmgate memory: idle RSS {idle.get('idle_rss_mib')} MiB (after warm-up + {args.idle:g}s idle; "
        f"{idle.get('rss_after_1_request_mib')} MiB after start-up + 1 request), peak RSS during the run "
        f"{peak} MiB, RSS after the run {after.get('rss_mib')} MiB. Ready {idle.get('ready_s')}s after start.",
        "",
        *bar,
        "",
        f"**{'PASS' if passed else 'FAIL'}** (bar: one worker on one core; throughput >= "
        f"{MIN_THROUGHPUT_RATIO:.0%} of bare at c>=16 in each mode, added p50 <= {MAX_ADDED_P50_MS} ms at "
        f"c=1, idle RSS <= {MAX_IDLE_RSS_MIB:g} MiB)",
    ]
    text = "\n".join(lines) + "\n"
    (out / "report.md").write_text(text)
    summary = {
        "meta": meta,
        "idle": idle,
        "after": after,
        "peak_rss_mib": peak,
        "passed": passed,
        "cells": {f"{t}/{m}/{c}": vars(cell) for (t, m, c), cell in cells.items()},
    }
    (out / "report.json").write_text(json.dumps(summary, indent=1) + "\n")
    print("\n" + text)
    log(f"wrote {out}/report.md, report.json, raw.jsonl, summary.md (compare.py), logs/")
    return passed


def git_describe() -> str:
    def git(*a: str) -> str:
        res = subprocess.run(["git", "-C", str(REPO), *a], capture_output=True, text=True, check=False)
        return res.stdout.strip()

    head = git("rev-parse", "--short", "HEAD") or "unknown"
    dirty = git("status", "--porcelain", "--", "src")
    return head + (" + uncommitted changes in src/" if dirty else "")


# --- main ----------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="1 round, 3 s per cell (about 3 minutes)")
    ap.add_argument("--with-litellm", action="store_true", help="add LiteLLM (1 worker) as a reference")
    ap.add_argument("--litellm", default=None, help="litellm executable [.venv-litellm/bin/litellm]")
    ap.add_argument("--rounds", type=int, help="rounds [3; quick 1]")
    ap.add_argument("--duration", type=int, help="measured seconds per cell [10; quick 3]")
    ap.add_argument("--warmup", type=int, help="discarded seconds before each cell [3; quick 1]")
    ap.add_argument("--ttfb-duration", type=int, help="seconds of the stream TTFB pass [5; quick 2]")
    ap.add_argument("--conc", default="1,16,64", help="concurrencies [1,16,64]")
    ap.add_argument("--modes", default="nonstream,stream")
    ap.add_argument("--port", type=int, default=9000, help="llmgate port [9000]")
    ap.add_argument("--config", type=Path, default=CONFIG, help="llmgate config [bench/llmgate.yaml]")
    ap.add_argument("--sut-cpus", default="1", help="CPU for llmgate and the reference proxies [1]")
    ap.add_argument("--aux-cpus", default="0", help="CPU for the mock and the load generator [0]")
    ap.add_argument("--idle", type=float, default=3.0, help="seconds idle before reading idle RSS [3]")
    ap.add_argument("--out", type=Path, default=None, help="results dir [bench/results/<timestamp>]")
    ap.add_argument("--timeout", type=float, default=None, help="hard limit for the load phase, s [auto]")
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops what we started
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    out = (args.out or HERE / "results" / stamp).resolve()
    try:
        found = preflight(args)
    except SetupError as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 2
    (out / "logs").mkdir(parents=True, exist_ok=True)
    estimate = estimate_seconds(args)
    deadline = args.timeout or estimate * 1.5 + 180
    log(f"results in {out}; load phase about {estimate / 60:.1f} min (hard limit {deadline / 60:.0f} min)")
    meta = {
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "git": git_describe(),
        "driver": found["driver"],
        "python": sys.version.split()[0],
        "yardstick": str(YARDSTICK),
        "args": {k: str(v) for k, v in vars(args).items()},
        "orjson_for_bare": importlib.util.find_spec("orjson") is not None,
    }
    procs = Processes(out / "logs")
    after: dict[str, Any] = {}
    try:
        idle = measure_idle(args, procs, found)
        run_compare(compare_command(args, found, idle, out), procs, out, deadline)
        after = {
            "rss_mib": proc_status_mib(idle["pid"], "VmRSS"),
            "hwm_mib": proc_status_mib(idle["pid"], "VmHWM"),
        }
    except SetupError as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 2
    except (RuntimeError, TimeoutError, subprocess.SubprocessError) as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    (out / "idle.json").write_text(json.dumps({"idle": idle, "after": after}, indent=1) + "\n")
    try:
        return 0 if report(args, out, idle, after, meta) else 1
    except RuntimeError as exc:
        print(f"bench/run.py: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Profile llmgate under load: where does one request's CPU go?

    python bench/hotspots.py [--duration 10] [--conc 16] [--native]

Starts the yardstick's mock upstream (CPU 0) and llmgate (one worker, CPU 1),
and for each mode (non-streaming, streaming):

1. drives it with wrk (or the harness's loadgen.py) at --conc connections and
   reads /proc for CPU (user and system) and write/read syscalls per request;
2. drives it again while ``py-spy record`` samples it, and writes the stacks
   (collapsed format: open them in https://www.speedscope.app or feed them to
   flamegraph.pl) plus a summary of the hot spots: CPU by package, the hottest
   frames, and llmgate's own lines, self and inclusive.

``--native`` adds C frames (msgspec, httptools, uvloop, libc syscalls, the
CPython garbage collector): slower to sample, but it shows time that pure
Python frames hide. py-spy: ``.venv/bin/pip install py-spy`` (needs ptrace
rights: root, or kernel.yama.ptrace_scope=0). Results: bench/results/hotspots-<ts>/.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from run import (
    CONFIG,
    MOCK_PORT,
    YARDSTICK,
    Processes,
    SetupError,
    llmgate_env,
    log,
    table,
    wait_ready,
)

HERE = Path(__file__).resolve().parent
FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")
TICKS = os.sysconf("SC_CLK_TCK")
# Threads blocked waiting for work, which py-spy samples as if they ran (the SQLite writer's and the default
# executor's idle workers, the log queue's listener): left out of the shares.
IDLE = {("_worker", "concurrent/futures/thread.py"), ("Condition.wait", "threading.py")}


def counters(pid: int) -> dict[str, int]:
    """CPU ticks (user, system) and syscall counts of one process."""
    stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
    return {
        "utime": int(stat[11]),
        "stime": int(stat[12]),
        "syscr": int(io["syscr"]),
        "syscw": int(io["syscw"]),
    }


def driver(url: str, stream: bool, conc: int, seconds: float, cpus: str) -> list[str]:
    """The load generator's command line: wrk, or the harness's loadgen.py without it."""
    if shutil.which("wrk"):
        lua = str(YARDSTICK / "wrk_chat.lua")
        cmd = ["wrk", "-t1", f"-c{conc}", f"-d{seconds:g}s", "--timeout", "30s", "-s", lua]
        cmd.append(url + "/chat/completions")
    else:
        cmd = [sys.executable, str(YARDSTICK / "loadgen.py"), "--url", url, "-c", str(conc)]
        cmd += ["-d", f"{seconds:g}", "-w", "0", *(["--stream"] if stream else [])]
    return ["taskset", "-c", cpus, *cmd]


def drive(url: str, stream: bool, conc: int, seconds: float, cpus: str) -> dict[str, float]:
    """One closed-loop run; the driver's JSON summary."""
    env = dict(os.environ, BENCH_STREAM="1" if stream else "0")
    cmd = driver(url, stream, conc, seconds, cpus)
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=seconds + 60, check=False)
    line = next((x for x in out.stdout.splitlines() if x.startswith("{")), None)
    if line is None:
        raise SetupError(f"the load driver failed: {out.stderr[-400:]}")
    return json.loads(line)


def per_request(pid: int, url: str, stream: bool, args: argparse.Namespace) -> dict[str, float]:
    before = counters(pid)
    result = drive(url, stream, args.conc, args.duration, args.aux_cpus)
    after = counters(pid)
    n = max(1, int(result["requests"]))
    return {
        "rps": round(result["rps"], 1),
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
        "user_ms_per_req": round((after["utime"] - before["utime"]) * 1000 / TICKS / n, 4),
        "sys_ms_per_req": round((after["stime"] - before["stime"]) * 1000 / TICKS / n, 4),
        "read_syscalls_per_req": round((after["syscr"] - before["syscr"]) / n, 2),
        "write_syscalls_per_req": round((after["syscw"] - before["syscw"]) / n, 2),
        "errors": sum(
            int(result.get(k, 0)) for k in ("err_connect", "err_read", "err_status", "err_timeout")
        ),
    }


def record(pyspy: str, pid: int, url: str, *, stream: bool, args: argparse.Namespace, out: Path) -> Path:
    """py-spy while the load runs; the collapsed stacks' path."""
    path = out / f"{'stream' if stream else 'nonstream'}{'-native' if args.native else ''}.collapsed.txt"
    env = dict(os.environ, BENCH_STREAM="1" if stream else "0")
    cmd = driver(url, stream, args.conc, args.duration + 3, args.aux_cpus)
    load = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(1.5)
        cmd = [pyspy, "record", "--pid", str(pid), "--duration", str(args.duration), "--rate", str(args.rate)]
        cmd += ["--format", "raw", "--output", str(path), *(["--native"] if args.native else [])]
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=args.duration + 60, check=False)
        if res.returncode != 0:
            raise SetupError(f"py-spy failed (ptrace rights?): {res.stderr.strip()[-400:]}")
    finally:
        load.wait(timeout=args.duration + 60)
    return path


def read_stacks(path: Path) -> list[tuple[list[tuple[str, str, str]], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack:
            continue
        frames = []
        for raw in stack.split(";"):
            m = FRAME.match(raw)
            frames.append((m["func"], m["file"], m["line"] or "") if m else (raw, "?", ""))
        stacks.append((frames, int(count)))
    return stacks


def package(file: str) -> str:
    top = file.split("/", maxsplit=1)[0]
    if top.startswith("libc.so"):
        return "libc (syscalls)"
    if top.startswith("libpython") or top.endswith((".c", ".h")):
        return "CPython / C"
    return top


def hot_spots(path: Path, top: int) -> list[str]:
    """Markdown: CPU by package, top frames, llmgate's lines (shares of the samples not idle)."""
    every = read_stacks(path)
    stacks = [(frames, n) for frames, n in every if (frames[-1][0], frames[-1][1]) not in IDLE]
    idle = sum(n for _, n in every) - sum(n for _, n in stacks)
    total = sum(n for _, n in stacks) or 1
    by_pkg: collections.Counter[str] = collections.Counter()
    leaf: collections.Counter[str] = collections.Counter()
    own_self: collections.Counter[str] = collections.Counter()
    own_incl: collections.Counter[str] = collections.Counter()
    gc = 0
    for frames, n in stacks:
        func, file, _ = frames[-1]
        by_pkg[package(file)] += n
        leaf[f"{func} ({file})"] += n
        gc += n if any(f.startswith("gc_collect") for f, _, _ in frames) else 0
        # llmgate's own code: the deepest llmgate frame owns everything below it that is not llmgate
        own = [f"{f} ({fl}:{ln})" for f, fl, ln in frames if fl.startswith("llmgate/") and "cli/" not in fl]
        if own:
            own_self[own[-1]] += n if frames[-1][1].startswith("llmgate/") else 0
            for name in set(own):
                own_incl[name] += n

    def pct(n: int) -> str:
        return f"{n * 100 / total:.1f}%"

    lines = [f"{total} samples ({idle} more of threads waiting for work left out).", ""]
    lines += table(
        ["package of the innermost frame", "share"], [[k, pct(v)] for k, v in by_pkg.most_common(12)]
    )
    if gc:
        lines += ["", f"Garbage collector (gc_collect_*) anywhere on the stack: {pct(gc)}."]
    lines += [
        "",
        *table(["innermost frame (self)", "share"], [[k, pct(v)] for k, v in leaf.most_common(top)]),
    ]
    rows = [[k, pct(v), pct(own_self[k])] for k, v in own_incl.most_common(top)]
    lines += ["", *table(["llmgate line", "inclusive", "self"], rows)]
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=10, help="seconds per measurement [10]")
    ap.add_argument("--conc", type=int, default=16, help="connections [16]")
    ap.add_argument("--modes", default="nonstream,stream")
    ap.add_argument("--rate", type=int, default=200, help="py-spy samples per second [200]")
    ap.add_argument("--native", action="store_true", help="include C frames (GC, syscalls, msgspec)")
    ap.add_argument("--top", type=int, default=20, help="rows per hot-spot table [20]")
    ap.add_argument("--port", type=int, default=9000)
    ap.add_argument("--config", type=Path, default=CONFIG)
    ap.add_argument("--sut-cpus", default="1")
    ap.add_argument("--aux-cpus", default="0")
    ap.add_argument("--out", type=Path, default=None, help="[bench/results/hotspots-<timestamp>]")
    args = ap.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` stops what we started
    out = (args.out or HERE / "results" / f"hotspots-{dt.datetime.now():%Y%m%d-%H%M%S}").resolve()
    pyspy = shutil.which("py-spy", path=f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}")
    if pyspy is None:
        log("py-spy not found: only the /proc counters. Install: .venv/bin/pip install py-spy")
    llmgate = Path(sys.executable).with_name("llmgate")
    out.mkdir(parents=True, exist_ok=True)
    procs = Processes(out)
    report = [f"# llmgate profile, {dt.datetime.now():%Y-%m-%d %H:%M}", ""]
    numbers = {}
    try:
        mock = procs.start(
            "mock",
            [sys.executable, str(YARDSTICK / "mock_upstream.py")],
            cpus=args.aux_cpus,
            env=dict(os.environ, MOCK_PORT=str(MOCK_PORT)),
        )
        wait_ready(f"http://127.0.0.1:{MOCK_PORT}/v1", 15, mock)
        cmd = [str(llmgate), "serve", "--config", str(args.config), "--port", str(args.port)]
        gate = procs.start("llmgate", cmd, cpus=args.sut_cpus, env=llmgate_env())
        url = f"http://127.0.0.1:{args.port}/v1"
        wait_ready(url, 60, gate)
        for mode in args.modes.split(","):
            stream = mode == "stream"
            drive(url, stream, args.conc, 3, args.aux_cpus)  # warm-up
            numbers[mode] = per_request(gate.pid, url, stream, args)
            log(f"{mode}: {numbers[mode]}")
            report += [f"## {mode}, c={args.conc}", "", "```", json.dumps(numbers[mode]), "```", ""]
            if pyspy:
                path = record(pyspy, gate.pid, url, stream=stream, args=args, out=out)
                report += [*hot_spots(path, args.top), "", f"Stacks: `{path.name}`.", ""]
    except SetupError as exc:
        print(f"bench/hotspots.py: {exc}", file=sys.stderr)
        return 2
    finally:
        procs.stop_all()
    (out / "hotspots.md").write_text("\n".join(report) + "\n")
    (out / "counters.json").write_text(json.dumps(numbers, indent=1) + "\n")
    print("\n".join(report))
    log(f"wrote {out}/hotspots.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Latency of normal requests with and without K slow or idle connections held against the gateway.

    .venv/bin/python bench/slowloris.py                       # starts llmgate itself: about 20 s
    .venv/bin/python bench/slowloris.py --connections 500 --phases baseline,slowloris
    .venv/bin/python bench/slowloris.py --url http://127.0.0.1:8000   # a gateway already running

Phases, each ``--duration`` seconds of closed-loop ``POST /v1/chat/completions`` (model ``mock:echo``)
from ``--concurrency`` kept-alive connections:

* ``baseline``: nothing else;
* ``idle``: K connections that send nothing;
* ``slowloris``: K connections sending a request head one byte every ``--interval`` seconds;
* ``slowbody``: K connections with a complete head and a body trickled one byte every ``--interval``.

The attacker reopens every connection the gateway closes (as the attack tools do), in a process of its
own; it counts how many the gateway closed. Without ``--url`` the script starts ``llmgate serve`` (one
worker, in-memory storage, ``--server key=value`` for any server setting) on a
free loopback port (with 2 s head and body clocks, so that each attack connection is closed and
reopened during a phase: that churn is part of what is measured), pinned to CPU 1 with the load and the attacker on CPU 0 when there are two CPUs,
and reads the gateway's open file descriptors and RSS after each phase. Everything stays on
127.0.0.1; every process it starts is stopped by PID; ``--time-limit`` bounds the whole run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.sharedctypes import Synchronized
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import yaml

PHASES = ("baseline", "idle", "slowloris", "slowbody")
SHORT_CLOCKS = {"header_timeout": 2, "body_timeout": 2}
CHAT = json.dumps({"model": "mock:echo", "messages": [{"role": "user", "content": "ping"}]}).encode()


@dataclass
class Phase:
    """One phase's figures."""

    name: str
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    seconds: float = 0.0
    held: int = 0
    closed_by_gateway: int = 0
    fds: int | None = None
    rss_mib: float | None = None

    def percentile(self, share: float) -> float | None:
        if not self.latencies:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


# --- the attacker (a process of its own) -----------------------------------------------------------


@dataclass(frozen=True)
class Plan:
    """What the attacker holds: ``count`` connections of ``kind``, one byte every ``interval`` s."""

    host: str
    port: int
    kind: str
    count: int
    interval: float


def _attack_main(plan: Plan, stop: Any, held: Synchronized[int], closed: Synchronized[int]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent stops it
    asyncio.run(_attack(plan, stop, held, closed))


async def _attack(plan: Plan, stop: Any, held: Synchronized[int], closed: Synchronized[int]) -> None:
    kind, interval = plan.kind, plan.interval
    head = b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
    opening = {"idle": b"", "slowloris": head, "slowbody": head + b"Content-Length: 100000\r\n\r\n"}[kind]

    async def one() -> None:
        while not stop.is_set():
            try:
                reader, writer = await asyncio.open_connection(plan.host, plan.port)
            except OSError:
                await asyncio.sleep(0.1)
                continue
            with held.get_lock():
                held.value += 1
            try:
                writer.write(opening)
                while not stop.is_set():
                    if kind != "idle":
                        writer.write(b"x")
                    try:
                        data = await asyncio.wait_for(reader.read(65_536), interval)
                    except TimeoutError:
                        continue
                    if not data or data.startswith(b"HTTP/"):  # closed, or answered (408, 503): it ends
                        with closed.get_lock():
                            closed.value += 1
                        break
            except OSError:
                with closed.get_lock():
                    closed.value += 1
            finally:
                with held.get_lock():
                    held.value -= 1
                writer.close()

    await asyncio.gather(*(one() for _ in range(plan.count)))


class Attacker:
    """K connections of one kind held against the gateway from another process, until ``stop``."""

    def __init__(self, plan: Plan) -> None:
        context = multiprocessing.get_context("spawn")
        self._stop = context.Event()
        self.held: Synchronized[int] = context.Value("i", 0)
        self.closed: Synchronized[int] = context.Value("i", 0)
        self._proc = context.Process(
            target=_attack_main,
            args=(plan, self._stop, self.held, self.closed),
            daemon=True,
        )

    def start(self, count: int, within: float = 10.0) -> None:
        self._proc.start()
        deadline = time.monotonic() + within
        while self.held.value < count * 0.95 and time.monotonic() < deadline:
            time.sleep(0.05)

    def stop(self) -> None:
        self._stop.set()
        self._proc.join(timeout=10)
        if self._proc.is_alive():
            self._proc.kill()
            self._proc.join(timeout=5)


# --- the load ---------------------------------------------------------------------------------------


async def _client(host: str, port: int, until: float, phase: Phase) -> None:
    request = (
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n%s" % (len(CHAT), CHAT)
    )
    writer: asyncio.StreamWriter | None = None
    reader: asyncio.StreamReader | None = None
    while time.monotonic() < until:
        try:
            if writer is None or reader is None:
                reader, writer = await asyncio.open_connection(host, port)
            started = time.perf_counter()
            writer.write(request)
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            headers = dict(line.lower().split(": ", 1) for line in lines[1:] if ": " in line)
            await asyncio.wait_for(reader.readexactly(int(headers.get("content-length", "0"))), 10)
            phase.latencies.append(time.perf_counter() - started)
            if lines[0].split()[1] != "200":
                phase.errors += 1
            if headers.get("connection") == "close":
                writer.close()
                writer = None
        except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError):
            phase.errors += 1
            if writer is not None:
                writer.close()
            writer = None
            await asyncio.sleep(0.01)
    if writer is not None:
        writer.close()


def run_load(host: str, port: int, concurrency: int, seconds: float, phase: Phase) -> None:
    async def main() -> None:
        until = time.monotonic() + seconds
        await asyncio.gather(*(_client(host, port, until, phase) for _ in range(concurrency)))

    started = time.monotonic()
    asyncio.run(main())
    phase.seconds = time.monotonic() - started


# --- the gateway ------------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _server_options(pairs: list[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        options[key] = yaml.safe_load(value)
    return options


@contextlib.contextmanager
def started_gateway(args: argparse.Namespace, folder: Path) -> Iterator[tuple[str, int, int | None]]:
    """(host, port, pid) of the gateway to measure: the one at ``--url``, or one started here."""
    if args.url:
        parts = urlsplit(args.url)
        yield parts.hostname or "127.0.0.1", parts.port or 80, None
        return
    port = free_port()
    config = folder / "llmgate.yaml"
    server = {"port": port, **SHORT_CLOCKS, **_server_options(args.server)}
    config.write_text(yaml.safe_dump({"server": server, "storage": {"database": "memory"}}))
    llmgate = Path(sys.executable).with_name("llmgate")
    cmd = [str(llmgate), "serve", "--config", str(config), "--log-level", "warning"]
    if args.sut_cpus and shutil.which("taskset"):
        cmd = ["taskset", "-c", args.sut_cpus, *cmd]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LLMGATE_", "LLM_PROXY_"))}
    with (folder / "gateway.log").open("w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"llmgate did not start:\n{(folder / 'gateway.log').read_text()[-2000:]}")
            time.sleep(0.05)
        yield "127.0.0.1", port, proc.pid
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def process_figures(pid: int | None) -> tuple[int | None, float | None]:
    """Open file descriptors and RSS (MiB) of ``pid``, when it is ours to read."""
    if pid is None:
        return None, None
    try:
        fds = len(os.listdir(f"/proc/{pid}/fd"))
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None, None
    rss = next(
        (int(line.split()[1]) / 1024 for line in status.splitlines() if line.startswith("VmRSS")), None
    )
    return fds, rss


# --- the run ----------------------------------------------------------------------------------------


def measure(args: argparse.Namespace, host: str, port: int, pid: int | None) -> list[Phase]:
    results = []
    run_load(host, port, args.concurrency, 1.0, Phase("warm-up"))
    for name in args.phases.split(","):
        phase = Phase(name)
        attacker = None
        if name != "baseline":
            attacker = Attacker(Plan(host, port, name, args.connections, args.interval))
            attacker.start(args.connections)
        try:
            run_load(host, port, args.concurrency, args.duration, phase)
            phase.fds, phase.rss_mib = process_figures(pid)
            if attacker is not None:
                phase.held, phase.closed_by_gateway = attacker.held.value, attacker.closed.value
        finally:
            if attacker is not None:
                attacker.stop()
        results.append(phase)
        time.sleep(0.5)  # let the gateway see the attacker's connections close
    return results


def report(phases: list[Phase], args: argparse.Namespace) -> str:
    def cell(value: float | None, digits: int = 2) -> str:
        return "-" if value is None else f"{value:.{digits}f}"

    head = [
        "phase",
        "held",
        "closed by gw",
        "requests",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "gw fds",
        "gw RSS MiB",
    ]
    rows = [
        [
            phase.name,
            str(phase.held),
            str(phase.closed_by_gateway),
            str(len(phase.latencies)),
            cell(len(phase.latencies) / phase.seconds if phase.seconds else None, 0),
            cell(phase.percentile(0.50)),
            cell(phase.percentile(0.99)),
            str(phase.errors),
            "-" if phase.fds is None else str(phase.fds),
            cell(phase.rss_mib, 1),
        ]
        for phase in phases
    ]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = [
        " | ".join(text.ljust(width) for text, width in zip(row, widths, strict=True))
        for row in [head, *rows]
    ]
    lines.insert(1, "-+-".join("-" * width for width in widths))
    note = (
        f"{args.connections} connections per attack phase (one byte every {args.interval:g} s), "
        f"{args.concurrency} kept-alive clients, {args.duration:g} s per phase"
    )
    return "\n".join([note, *lines])


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--url", help="a running gateway to measure (default: start one)")
    parser.add_argument("--connections", type=int, default=200, help="K, per attack phase [200]")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between attack bytes [1]")
    parser.add_argument("--concurrency", type=int, default=4, help="kept-alive load clients [4]")
    parser.add_argument("--duration", type=float, default=4.0, help="measured seconds per phase [4]")
    parser.add_argument("--phases", default=",".join(PHASES), help=f"comma-separated, of {', '.join(PHASES)}")
    parser.add_argument(
        "--server", action="append", default=[], help="server.KEY=VALUE for the gateway started here"
    )
    two = (os.cpu_count() or 1) >= 2
    parser.add_argument("--sut-cpus", default="1" if two else None, help="taskset CPUs of the gateway [1]")
    parser.add_argument("--load-cpus", default="0" if two else None, help="CPUs of the load and attacker [0]")
    parser.add_argument("--time-limit", type=float, default=90.0, help="hard limit of the whole run, s [90]")
    args = parser.parse_args()
    unknown = set(args.phases.split(",")) - set(PHASES)
    if unknown:
        parser.error(f"unknown phases: {', '.join(sorted(unknown))}")
    return args


def main() -> int:
    args = parse_args()
    if args.load_cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {int(cpu) for cpu in args.load_cpus.split(",")})

    def out_of_time(*_: object) -> None:
        raise TimeoutError(f"--time-limit of {args.time_limit:g} s reached")

    signal.signal(signal.SIGALRM, out_of_time)
    signal.setitimer(signal.ITIMER_REAL, args.time_limit)
    try:
        with (
            tempfile.TemporaryDirectory(prefix="slowloris-") as folder,
            started_gateway(args, Path(folder)) as (
                host,
                port,
                pid,
            ),
        ):
            phases = measure(args, host, port, pid)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    print(report(phases, args))
    return 1 if any(phase.errors for phase in phases) else 0


if __name__ == "__main__":
    sys.exit(main())

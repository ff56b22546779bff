"""A fixed, seeded slice of the fuzzers in ``bench/`` against real ``llmgate serve`` processes.

``bench/fuzz_socket.py`` (raw bytes over a socket) and ``bench/fuzz_openapi.py`` (schemathesis, from
OpenAI's spec) run for minutes; this keeps a bounded part of each in the suite (well under a minute). What
SPEC.md section 13 asks of every bad input: a 4xx with an OpenAI error body, never a 5xx, a hang or a
connection closed without an answer, and ``/health`` still answering afterwards. A failure lists each
distinct problem once, with a line that reproduces it.

The gateways run under an address-space limit (``prlimit``), so that an unbounded allocation kills the
gateway (a finding) rather than the machine, with short header and body timeouts so that the slow-client
cases are decided in seconds.
"""

from __future__ import annotations

import asyncio
import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from .conftest import MASTER_KEY, GatewayProcess, llmgate_command, start_gateway, stop_process

BENCH = Path(__file__).resolve().parents[2] / "bench"
OPENAI_SPEC = Path(__file__).resolve().parents[3] / "shared" / "specs" / "openai-openapi.yaml"
SEED = 20_251_202
MEMORY_LIMIT = 4_000_000_000
ANSWER_TIMEOUT = 3.0  # a complete request is answered within this
SLOW_TIMEOUT = 6.0  # an incomplete one is answered or closed within this (header/body timeouts: 2 s)
SERVER = {"header_timeout": 2, "body_timeout": 2, "idle_timeout": 2}


def _load(name: str) -> ModuleType:
    """A script of bench/ as a module (bench is no package; fuzz_openapi imports fuzz_socket by name)."""
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


fuzz_socket = _load("fuzz_socket")


def _launcher() -> list[str] | None:
    prlimit = shutil.which("prlimit")
    return [prlimit, f"--as={MEMORY_LIMIT}", "--", *llmgate_command()] if prlimit else None


def _start(tmp: Path, **server: Any) -> GatewayProcess:
    config = {"server": {**SERVER, **server}, "storage": {"database": "memory"}}
    return start_gateway(tmp, config, launcher=_launcher())


@pytest.fixture(scope="module")
def open_gateway(e2e_tmp: Path) -> Iterator[GatewayProcess]:
    gateway = _start(e2e_tmp)
    try:
        yield gateway
    finally:
        stop_process(gateway.proc)


@pytest.fixture(scope="module")
def master_gateway(e2e_tmp: Path) -> Iterator[GatewayProcess]:
    gateway = _start(e2e_tmp, master_key=MASTER_KEY)
    try:
        yield gateway
    finally:
        stop_process(gateway.proc)


def _target(gateway: GatewayProcess, master_key: str | None) -> Any:
    """The fuzzers' view of a gateway: its address, process and log (no restart: a death is final)."""
    return fuzz_socket.Gateway("127.0.0.1", gateway.port, master_key, gateway.proc, gateway.log_path)


def _assert_alive(gateway: GatewayProcess) -> None:
    assert gateway.proc.poll() is None, f"the gateway exited ({gateway.proc.returncode}):\n{gateway.output()}"
    assert fuzz_socket.health_sync("127.0.0.1", gateway.port, timeout=5), "/health does not answer"


def _socket_slice(gateway: GatewayProcess, master_key: str | None, *, hand: int, mutations: int) -> None:
    target = _target(gateway, master_key)
    ctx = fuzz_socket.Ctx("127.0.0.1", gateway.port, master_key)
    cases = fuzz_socket.build_cases(ctx, seed=SEED, count=hand)
    cases += [fuzz_socket.mutation_case(ctx, SEED, index) for index in range(mutations)]
    run = asyncio.run(
        fuzz_socket.run_cases(
            target, cases, answer_timeout=ANSWER_TIMEOUT, slow_timeout=SLOW_TIMEOUT, label="slice"
        )
    )
    report, failing = fuzz_socket.summarize(
        [run], {"slice": ("127.0.0.1", gateway.port)}, None, seed=SEED, max_repro=25
    )
    assert len(run.outcomes) == len(cases)
    assert failing == 0, f"{failing} of {len(cases)} raw-socket cases failed (seed {SEED}):\n{report}"
    _assert_alive(gateway)


def test_raw_socket_slice_open_mode(open_gateway: GatewayProcess) -> None:
    """300 cases: a seeded sample of the hand-written ones (every slow client among them), and mutations."""
    _socket_slice(open_gateway, None, hand=220, mutations=80)


def test_raw_socket_slice_with_master_key(master_gateway: GatewayProcess) -> None:
    """The same kinds of cases with a master key set: Authorization fuzzed, everything else behind it."""
    _socket_slice(master_gateway, MASTER_KEY, hand=120, mutations=60)


@pytest.mark.parametrize("mode", ["open", "master"])
def test_openapi_slice(mode: str, open_gateway: GatewayProcess, master_gateway: GatewayProcess) -> None:
    """schemathesis from OpenAI's spec: every operation the gateway serves, positive and negative, with the
    spec's model names, the gateway's own and hostile ones; a few examples each."""
    pytest.importorskip("schemathesis", reason='schemathesis is in the dev extra: pip install -e ".[dev]"')
    if not OPENAI_SPEC.exists():
        pytest.skip(f"OpenAI's spec is not at {OPENAI_SPEC}")
    fuzz_openapi = _load("fuzz_openapi")
    gateway, key = (open_gateway, None) if mode == "open" else (master_gateway, MASTER_KEY)
    report = fuzz_openapi.run_openapi(
        _target(gateway, key),
        spec=OPENAI_SPEC,
        max_examples=6,
        seconds=25,
        seed=SEED,
        timeout=5.0,
        label=mode,
        conformance_check=False,
    )
    text, failures = fuzz_openapi.summarize([report], None, self_started=False)
    assert report.results, "no case was sent"
    assert failures == 0, f"{failures} of {len(report.results)} OpenAPI cases failed (seed {SEED}):\n{text}"
    _assert_alive(gateway)

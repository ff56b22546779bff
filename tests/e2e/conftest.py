"""End-to-end fixtures: a real mock upstream process and real ``llmgate serve`` processes on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import openai
import pytest
import yaml

HERE = Path(__file__).resolve().parent
UPSTREAM_SCRIPT = HERE / "upstream.py"
UPSTREAM_KEY = "sk-upstream-secret"
MASTER_KEY = "sk-e2e-master-key"
POSTGRES_DSN = os.environ.get("LLMGATE_TEST_POSTGRES_DSN", "postgresql://postgres@127.0.0.1:5432/test")
START_TIMEOUT_S = 20.0
STOP_TIMEOUT_S = 10.0
# Variables that would change what the gateway under test is configured with.
_SCRUBBED_ENV_PREFIXES = ("LLMGATE_", "LLM_PROXY_")
_SCRUBBED_ENV = {
    "OPENAI_API_KEY",
    "OPENAI_BASE_URL",
    "ANTHROPIC_API_KEY",
    "GEMINI_API_KEY",
    "GOOGLE_API_KEY",
    "COHERE_API_KEY",
    "AZURE_OPENAI_API_KEY",
    "AZURE_OPENAI_ENDPOINT",
    "HF_TOKEN",
    "OLLAMA_HOST",
}


def _clean_env() -> dict[str, str]:
    return {
        k: v
        for k, v in os.environ.items()
        if k not in _SCRUBBED_ENV and not k.startswith(_SCRUBBED_ENV_PREFIXES)
    }


def free_port() -> int:
    """A free loopback port (the gateway binds it right after)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def llmgate_command() -> list[str]:
    """The ``llmgate`` console script of this interpreter's environment.

    ``llmgate.cli.main`` has no ``__main__`` guard, so ``python -m`` would not run it.
    """
    script = Path(sys.executable).with_name("llmgate")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from llmgate.cli.main import main; main()"]


def stop_process(proc: subprocess.Popen[Any], timeout: float = STOP_TIMEOUT_S) -> None:
    """Terminate by PID, then kill if it does not exit in time."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=timeout)


def _tail(path: Path, chars: int = 4000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def wait_until(predicate: Callable[[], Any], *, timeout: float, interval: float = 0.02) -> Any:
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout:g}s")
        time.sleep(interval)


@dataclass
class Upstream:
    """The mock OpenAI-compatible upstream process."""

    proc: subprocess.Popen[str]
    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> list[dict[str, Any]]:
        """Every request the upstream served so far."""
        return httpx.get(f"{self.url}/_log", timeout=5).json()["requests"]  # type: ignore[no-any-return]

    def requests_with(self, marker: str) -> list[dict[str, Any]]:
        """The requests whose body mentions ``marker`` (tests put a unique one in their prompt)."""
        return [entry for entry in self.log() if marker in str(entry["body"])]

    def request_with(self, marker: str) -> dict[str, Any]:
        """The one request carrying ``marker``."""
        found = self.requests_with(marker)
        assert len(found) == 1, f"expected one upstream request with {marker!r}, got {len(found)}"
        return found[0]

    def wait_for(
        self, marker: str, predicate: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The request carrying ``marker`` once ``predicate`` holds for it (bounded wait)."""

        def check() -> dict[str, Any] | None:
            found = self.requests_with(marker)
            return found[0] if found and predicate(found[0]) else None

        try:
            return wait_until(check, timeout=timeout)  # type: ignore[no-any-return]
        except AssertionError:
            raise AssertionError(
                f"upstream request {marker!r} never matched: {self.requests_with(marker)}"
            ) from None


@dataclass
class GatewayProcess:
    """A running ``llmgate serve``."""

    proc: subprocess.Popen[bytes]
    port: int
    config_path: Path
    log_path: Path
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def output(self) -> str:
        return _tail(self.log_path)

    def log_size(self) -> int:
        try:
            return self.log_path.stat().st_size
        except OSError:
            return 0

    def output_since(self, offset: int) -> str:
        """What the process logged after ``offset`` bytes."""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace")

    def client(self, api_key: str = "sk-e2e-client", **options: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=15, **options)

    def async_client(self, api_key: str = "sk-e2e-client", **options: Any) -> openai.AsyncOpenAI:
        return openai.AsyncOpenAI(
            base_url=self.base_url, api_key=api_key, max_retries=0, timeout=15, **options
        )

    def sigterm(self) -> None:
        self.proc.send_signal(signal.SIGTERM)


def gateway_config(upstream: Upstream, **server: Any) -> dict[str, Any]:
    """The YAML config of a gateway in front of ``upstream`` (and the built-in mock)."""
    provider = {"type": "openai", "base_url": upstream.base_url, "api_keys": [UPSTREAM_KEY]}
    tight = {**provider, "timeouts": {"connect": 2, "first_token": 1, "idle": 1, "total": 1}}
    return {
        "server": {"grace_period": 10, **server},
        "routing": {"retries": 0},
        "providers": {"up": provider, "tight": tight, "mock": {"type": "mock"}},
        "models": [
            {"name": "gpt-test", "deployments": [{"provider": "up", "model": "gpt-test"}]},
            {"name": "alias-test", "deployments": [{"provider": "up", "model": "upstream-name-for-alias"}]},
        ],
        "model_prices": {"gpt-test": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
    }


def _start_upstream(tmp: Path) -> Upstream:
    log_path = tmp / "upstream.log"
    with log_path.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(UPSTREAM_SCRIPT), "--port", "0", "--require-key", UPSTREAM_KEY],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
            env=_clean_env(),
        )
    assert proc.stdout is not None
    deadline = time.monotonic() + START_TIMEOUT_S
    # It prints one line, with the port it bound, once it listens.
    line = ""
    while (left := deadline - time.monotonic()) > 0 and proc.poll() is None:
        readable, _, _ = select.select([proc.stdout], [], [], left)
        if readable:
            line = proc.stdout.readline()
            break
    if not line.startswith("UPSTREAM READY"):
        stop_process(proc)
        raise RuntimeError(f"the upstream did not start: {_tail(log_path)}")
    return Upstream(proc, int(line.split()[-1]), log_path)


def start_gateway(tmp: Path, config: dict[str, Any], *, launcher: list[str] | None = None) -> GatewayProcess:
    """Start ``llmgate serve`` with ``config`` on a free port and wait until /health answers.

    ``launcher`` replaces the ``llmgate`` command (it must take the same arguments).
    """
    name = uuid.uuid4().hex[:8]
    config_path = tmp / f"gateway-{name}.yaml"
    config_path.write_text(yaml.safe_dump(config))
    log_path = tmp / f"gateway-{name}.log"
    for _attempt in range(3):  # the port could be taken between picking and binding it
        port = free_port()
        program = launcher or llmgate_command()
        command = [*program, "serve", "--config", str(config_path), "--host", "127.0.0.1"]
        with log_path.open("w") as out:
            proc = subprocess.Popen(
                [*command, "--port", str(port), "--log-level", "warning"],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=_clean_env(),
            )
        gateway = GatewayProcess(proc, port, config_path, log_path, config)
        if _wait_healthy(gateway):
            return gateway
        stop_process(proc)
        if "address already in use" not in gateway.output().lower():
            break
    raise RuntimeError(f"llmgate serve did not become healthy: {_tail(log_path)}")


def _wait_healthy(gateway: GatewayProcess) -> bool:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if gateway.proc.poll() is not None:
            return False
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{gateway.url}/health", timeout=1).status_code == 200:
                return True
        time.sleep(0.05)
    return False


@pytest.fixture(scope="session")
def e2e_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("e2e")


@pytest.fixture(scope="session")
def upstream(e2e_tmp: Path) -> Iterator[Upstream]:
    up = _start_upstream(e2e_tmp)
    try:
        yield up
    finally:
        stop_process(up.proc)
        if up.proc.stdout is not None:
            up.proc.stdout.close()


@pytest.fixture(scope="session")
def started_gateways() -> list[GatewayProcess]:
    """Every gateway process this session started."""
    return []


@pytest.fixture(scope="session")
def gateway_factory(
    e2e_tmp: Path, upstream: Upstream, started_gateways: list[GatewayProcess]
) -> Iterator[Callable[..., GatewayProcess]]:
    """Start extra gateways (stopped at the end of the session unless a test stopped them)."""
    started = started_gateways

    def start(**server: Any) -> GatewayProcess:
        gateway = start_gateway(e2e_tmp, gateway_config(upstream, **server))
        started.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in started:
            stop_process(gateway.proc)


@pytest.fixture(scope="session")
def gateway(gateway_factory: Callable[..., GatewayProcess]) -> GatewayProcess:
    """The main gateway: open mode (no master key), default limits."""
    return gateway_factory()


@pytest.fixture(scope="session")
def client(gateway: GatewayProcess) -> Iterator[openai.OpenAI]:
    with gateway.client() as sdk:
        yield sdk


@pytest.fixture
async def async_client(gateway: GatewayProcess) -> Any:
    async with gateway.async_client() as sdk:
        yield sdk


@pytest.fixture(scope="module")
def upstream_factory(e2e_tmp: Path) -> Iterator[Callable[[int], list[Upstream]]]:
    """Start more mock upstream processes (each its own port and log), stopped at the end of the module."""
    started: list[Upstream] = []

    def start(count: int) -> list[Upstream]:
        folders = []
        for _ in range(count):
            folder = e2e_tmp / f"upstream-{uuid.uuid4().hex[:8]}"
            folder.mkdir()
            folders.append(folder)
        with ThreadPoolExecutor(max_workers=count) as pool:
            futures = [pool.submit(_start_upstream, folder) for folder in folders]
            for future in futures:
                with contextlib.suppress(Exception):
                    started.append(future.result())
            return [future.result() for future in futures]  # raises if one did not start

    try:
        yield start
    finally:
        for up in started:
            stop_process(up.proc)
            if up.proc.stdout is not None:
                up.proc.stdout.close()


@contextlib.contextmanager
def _gateways(
    e2e_tmp: Path, started_gateways: list[GatewayProcess]
) -> Iterator[Callable[[dict[str, Any]], GatewayProcess]]:
    """Start gateways with a config of the caller's own; every one is stopped when the context ends."""
    mine: list[GatewayProcess] = []

    def start(config: dict[str, Any]) -> GatewayProcess:
        gateway = start_gateway(e2e_tmp, config)
        started_gateways.append(gateway)  # so that gateway_logs_no_tracebacks watches it too
        mine.append(gateway)
        return gateway

    try:
        yield start
    finally:
        for gateway in mine:
            stop_process(gateway.proc)


@pytest.fixture(scope="module")
def config_gateway_factory(
    e2e_tmp: Path, started_gateways: list[GatewayProcess]
) -> Iterator[Callable[[dict[str, Any]], GatewayProcess]]:
    """Start gateways with a config of the test's own, stopped at the end of the module."""
    with _gateways(e2e_tmp, started_gateways) as start:
        yield start


@pytest.fixture
def gateways(
    e2e_tmp: Path, started_gateways: list[GatewayProcess]
) -> Iterator[Callable[[dict[str, Any]], GatewayProcess]]:
    """Start gateways with a config of the test's own, stopped at the end of the test."""
    with _gateways(e2e_tmp, started_gateways) as start:
        yield start


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this module, dropped afterwards (skips without PostgreSQL): the
    gateway's PostgreSQL schema cannot be chosen from the config, so a database is the isolation unit."""
    name = f"llmgate_e2e_{uuid.uuid4().hex[:12]}"

    async def admin(statement: str) -> None:
        connection = await asyncpg.connect(POSTGRES_DSN, timeout=5)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    try:
        asyncio.run(admin(f'CREATE DATABASE "{name}"'))
    except (OSError, asyncpg.PostgresError) as error:
        pytest.skip(f"PostgreSQL not usable at {POSTGRES_DSN}: {error}")
    parts = urlsplit(POSTGRES_DSN)
    try:
        yield urlunsplit(parts._replace(path=f"/{name}"))
    finally:
        asyncio.run(admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def marker() -> str:
    """A unique word to find this test's request in the upstream's log."""
    return f"m{uuid.uuid4().hex[:10]}"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "gateway_errors_expected(reason): the test knowingly makes a gateway log a traceback"
    )


@pytest.fixture(autouse=True)
def gateway_logs_no_tracebacks(
    request: pytest.FixtureRequest, started_gateways: list[GatewayProcess]
) -> Iterator[None]:
    """Whatever a test does, no gateway may hit an unhandled error (SPEC.md 13: never a 500 of its own)."""
    before = {id(gateway): gateway.log_size() for gateway in started_gateways}
    yield
    if request.node.get_closest_marker("gateway_errors_expected") is not None:
        return
    for gateway in started_gateways:
        logged = gateway.output_since(before.get(id(gateway), 0))
        assert "Traceback" not in logged, f"gateway on port {gateway.port} logged an error:\n{logged[-3000:]}"

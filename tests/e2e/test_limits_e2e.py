"""Limits, budgets and usage records across real ``llmgate serve`` processes (SPEC.md 5, 7, 12).

Replicas share one real Redis (under a key prefix of this run's own, deleted after the module) and,
for keys and usage, one real PostgreSQL database created for the module and dropped afterwards: the
gateway's PostgreSQL schema cannot be chosen from the config, so a fresh database is the isolation unit.
Every process listens on 127.0.0.1 and is stopped by the end of the module. Without Redis or PostgreSQL
the tests that need them skip, saying why.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sqlite3
import subprocess
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redis.exceptions

from llmgate.state import open_database

from .conftest import (
    GatewayProcess,
    _clean_env,
    free_port,
    llmgate_command,
    start_gateway,
    stop_process,
    wait_until,
)

MASTER = "sk-e2e-limits-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
REDIS_URL = os.environ.get("LLMGATE_TEST_REDIS_E2E_URL", "redis://127.0.0.1:6379/0")
GLOBAL_RPM = 30
WINDOW_MARGIN_S = 20.0  # a burst starts only with this much of its minute left, so it stays in one window
# $0.001 per token in and out. "hello there" with max_tokens 5: 10 prompt + 3 completion tokens cost
# $0.013; the gateway reserves (10 * 1.25 + 1) prompt + 5 output tokens = $0.018 before each call.
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
CALL_COST, CALL_RESERVE = 0.013, 0.018
BUDGET = 0.5
HELLO = [{"role": "user", "content": "hello there"}]


# --- shared servers ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def redis_storage() -> Iterator[dict[str, str]]:
    """Redis settings for this module only: a key prefix of this run's own, whose keys are deleted
    afterwards (two runs on one machine, or one Redis shared with anything else, never meet)."""
    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2, socket_timeout=5)
    try:
        client.ping()
    except (redis.exceptions.ConnectionError, OSError) as error:
        client.close()
        pytest.skip(f"Redis not reachable at {REDIS_URL}: {error}")
    prefix = f"llmgate-e2e:{uuid.uuid4().hex[:12]}:"
    try:
        yield {"redis": REDIS_URL, "redis_prefix": prefix}
    finally:
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()


@pytest.fixture(scope="module")
def launch(
    e2e_tmp: Path, started_gateways: list[GatewayProcess]
) -> Iterator[Callable[[dict[str, Any], int], list[GatewayProcess]]]:
    """Start ``count`` gateways with one config, in parallel; all are stopped at the end of the module."""
    mine: list[GatewayProcess] = []
    lock = threading.Lock()

    def start_one(config: dict[str, Any]) -> GatewayProcess:
        gateway = start_gateway(e2e_tmp, config)
        with lock:
            started_gateways.append(gateway)  # watched by gateway_logs_no_tracebacks
            mine.append(gateway)
        return gateway

    def start(config: dict[str, Any], count: int = 1) -> list[GatewayProcess]:
        with ThreadPoolExecutor(max_workers=count) as pool:
            return list(pool.map(start_one, [config] * count))

    try:
        yield start
    finally:
        for gateway in mine:
            stop_process(gateway.proc)


def config(**storage: Any) -> dict[str, Any]:
    return {
        "server": {"master_key": MASTER, "grace_period": 10},
        "storage": {"database": "memory", **storage},
        "providers": {"m": {"type": "mock"}},
        "model_prices": {"echo": PRICE},
    }


def chat_body(**fields: Any) -> dict[str, Any]:
    return {"model": "m:echo", "messages": HELLO, "max_tokens": 5, **fields}


async def _burst(jobs: list[tuple[str, dict[str, Any], dict[str, str]]]) -> list[httpx.Response]:
    limits = httpx.Limits(max_connections=len(jobs) + 10, max_keepalive_connections=0)
    async with httpx.AsyncClient(timeout=20, limits=limits) as client:
        return list(await asyncio.gather(*(client.post(url, json=body, headers=h) for url, body, h in jobs)))


def burst(gateways: list[GatewayProcess], per_gateway: int, headers: dict[str, str]) -> list[httpx.Response]:
    """``per_gateway`` chat calls on every gateway, all at once."""
    jobs = [
        (f"{gateway.base_url}/chat/completions", chat_body(), headers)
        for _ in range(per_gateway)
        for gateway in gateways
    ]
    return asyncio.run(_burst(jobs))


def fresh_window(margin: float = WINDOW_MARGIN_S) -> int:
    """The current minute, after waiting (at most ``margin`` s) for the next one if too little is left."""
    left = 60 - time.time() % 60
    if left < margin:
        time.sleep(left + 0.2)
    return int(time.time() // 60)


def diagnosis(gateways: list[GatewayProcess], responses: list[httpx.Response]) -> str:
    """What a failed assertion on a burst should show: the outcomes and each replica's own view."""
    lines = [f"statuses: {[r.status_code for r in responses]}"]
    lines.append(f"remaining: {[r.headers.get('X-RateLimit-Remaining') for r in responses]}")
    for gateway in gateways:
        try:
            health = httpx.get(f"{gateway.url}/health", timeout=5).text
        except httpx.HTTPError as error:
            health = repr(error)
        lines.append(f"port {gateway.port}: health {health[:500]}; log: {gateway.output()[-1500:]}")
    return "\n".join(lines)


def error_of(response: httpx.Response) -> dict[str, Any]:
    return response.json()["error"]  # type: ignore[no-any-return]


# --- rate limits across replicas --------------------------------------------------------------------------


def test_three_replicas_admit_exactly_the_global_rpm_and_a_late_one_agrees(
    launch: Callable[..., list[GatewayProcess]], redis_storage: dict[str, str]
) -> None:
    settings = {**config(**redis_storage), "limits": {"global": {"rpm": GLOBAL_RPM}}}
    gateways = launch(settings, 3)
    minute = fresh_window()
    responses = burst(gateways, per_gateway=GLOBAL_RPM // 2, headers=ADMIN)  # 45 calls for 30 places

    assert int(time.time() // 60) == minute, "the burst crossed a minute boundary"
    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code == 429]
    assert len(ok) == GLOBAL_RPM, diagnosis(gateways, responses)
    assert len(refused) == len(responses) - GLOBAL_RPM
    # One shared counter: each admitted call saw a different count, 29 left down to 0 left.
    remaining = sorted(int(r.headers["X-RateLimit-Remaining"]) for r in ok)
    assert remaining == list(range(GLOBAL_RPM))
    assert {r.headers["X-RateLimit-Limit"] for r in ok} == {str(GLOBAL_RPM)}
    for response in refused:
        error = error_of(response)
        assert error["code"] == "rate_limit_exceeded"
        assert f"global limit of {GLOBAL_RPM} requests per minute" in error["message"]
        assert 1 <= int(response.headers["Retry-After"]) <= 60
        assert response.headers["X-RateLimit-Remaining"] == "0"

    # A replica started now has no counts of its own, yet sees the window's requests all used.
    [late] = launch(settings, 1)
    status = httpx.get(f"{late.url}/api/rate-limits", headers=ADMIN, timeout=5).json()
    assert int(time.time() // 60) == minute, "the late replica started in the next minute"
    assert (status["caller"]["limit"], status["caller"]["remaining"]) == (GLOBAL_RPM, 0)
    late_call = httpx.post(f"{late.base_url}/chat/completions", json=chat_body(), headers=ADMIN, timeout=10)
    assert late_call.status_code == 429
    assert error_of(late_call)["code"] == "rate_limit_exceeded"


# --- budgets across replicas ------------------------------------------------------------------------------


def key_records(database_url: str, key_id: str) -> list[Any]:
    async def read() -> list[Any]:
        database = await open_database(database_url)
        try:
            return [record for record in await database.records() if record.key_id == key_id]
        finally:
            await database.close()

    return asyncio.run(read())


def test_a_budget_shared_by_three_replicas_is_never_overspent(
    launch: Callable[..., list[GatewayProcess]], redis_storage: dict[str, str], postgres_url: str
) -> None:
    settings = config(**redis_storage, database=postgres_url)
    gateways = launch(settings, 3)
    made = httpx.post(
        f"{gateways[0].url}/admin/keys",
        json={"name": "budgeted", "budget_usd": BUDGET},
        headers=ADMIN,
        timeout=10,
    )
    assert made.status_code == 201, made.text
    key_id, secret = made.json()["id"], made.json()["key"]
    headers = {"Authorization": f"Bearer {secret}"}

    # 90 calls at once (their cost, $1.17, is more than twice the budget), spread over the replicas...
    responses = burst(gateways, per_gateway=30, headers=headers)
    # ...then one at a time, round the replicas, until the budget refuses even a single call.
    for number in range(int(BUDGET / CALL_COST) + 2):
        gateway = gateways[number % 3]
        response = httpx.post(
            f"{gateway.base_url}/chat/completions", json=chat_body(), headers=headers, timeout=10
        )
        responses.append(response)
        if response.status_code == 429:
            break

    ok = [r for r in responses if r.status_code == 200]
    refused = [r for r in responses if r.status_code != 200]
    assert refused and responses[-1].status_code == 429
    assert {r.status_code for r in refused} == {429}
    assert {error_of(r)["code"] for r in refused} == {"insufficient_quota"}
    assert {r.headers["x-llmgate-cost-usd"] for r in ok} == {f"{CALL_COST:.8f}"}
    served = {r.headers["x-llmgate-provider"] for r in ok}
    assert served == {"m"}
    billed = len(ok) * CALL_COST
    # Used up (not refused early): not even one more reservation fits; never more than the budget.
    assert BUDGET - CALL_RESERVE < billed <= BUDGET
    status = httpx.get(f"{gateways[1].url}/api/rate-limits", headers=headers, timeout=5).json()
    assert status["budget"]["spent_usd"] == pytest.approx(billed)

    # A replica started later refuses the key at once: the spend lives in Redis, not in a process.
    [late] = launch(settings, 1)
    late_call = httpx.post(f"{late.base_url}/chat/completions", json=chat_body(), headers=headers, timeout=10)
    assert late_call.status_code == 429
    assert error_of(late_call)["code"] == "insufficient_quota"

    # The replicas write usage in batches (every second): wait until every paid call is in the ledger, so
    # that shutdown cancels no write in flight (tests/policies: close() during a write stores it twice).
    paid_ids = {r.headers["x-request-id"] for r in ok}

    def ledger_caught_up() -> bool:
        return {r.request_id for r in key_records(postgres_url, key_id) if r.status == 200} >= paid_ids

    wait_until(ledger_caught_up, timeout=10, interval=0.2)
    for gateway in [*gateways, late]:
        gateway.sigterm()
    for gateway in [*gateways, late]:
        assert gateway.proc.wait(timeout=15) == 0, gateway.output()
    records = key_records(postgres_url, key_id)
    paid = [record for record in records if record.status == 200]
    everyone = [*gateways, late]
    assert sorted(r.request_id for r in paid) == sorted(paid_ids), ledger_diagnosis(records, everyone)
    spent = sum(record.cost_usd or 0.0 for record in paid)
    assert spent == pytest.approx(billed)
    assert spent <= BUDGET + 1e-9


def ledger_diagnosis(records: list[Any], gateways: list[GatewayProcess]) -> str:
    counts: dict[str, int] = {}
    for record in records:
        counts[record.request_id] = counts.get(record.request_id, 0) + 1
    twice = {request_id: count for request_id, count in counts.items() if count > 1}
    logs = "\n".join(f"port {gateway.port}: {gateway.output()[-1500:]}" for gateway in gateways)
    return f"{len(records)} records, {len(twice)} request ids recorded more than once: {twice}\n{logs}"


# --- graceful shutdown under load -------------------------------------------------------------------------


STREAM_WORDS = " ".join(f"w{number}" for number in range(20))  # 20 chunks at 20 tokens/s: about 1 s


@dataclass
class Outcome:
    """What one client call saw."""

    request_id: str
    stream: bool
    started: float
    status: int | None = None
    first_chunk: float | None = None
    ended: float | None = None
    done: bool = False
    text: str = ""
    failure: str | None = None

    @property
    def completed(self) -> bool:
        return self.status == 200 and (self.done or not self.stream)


def call(base_url: str, request_id: str, stream: bool) -> Outcome:
    outcome = Outcome(request_id, stream, time.monotonic())
    headers = {"x-request-id": request_id}
    try:
        if stream:
            body = {
                "model": "drip:echo",
                "messages": [{"role": "user", "content": STREAM_WORDS}],
                "stream": True,
            }
            with httpx.stream(
                "POST", f"{base_url}/chat/completions", json=body, headers=headers, timeout=20
            ) as r:
                outcome.status = r.status_code
                for line in r.iter_lines():
                    if not line.startswith("data: "):
                        continue
                    if outcome.first_chunk is None:
                        outcome.first_chunk = time.monotonic()
                    data = line[len("data: ") :]
                    if data == "[DONE]":
                        outcome.done = True
                        continue
                    for choice in json.loads(data)["choices"]:
                        outcome.text += choice["delta"].get("content") or ""
        else:
            body = {"model": "slow:echo", "messages": [{"role": "user", "content": request_id}]}
            response = httpx.post(f"{base_url}/chat/completions", json=body, headers=headers, timeout=20)
            outcome.status = response.status_code
            if response.status_code == 200:
                outcome.text = response.json()["choices"][0]["message"]["content"]
    except httpx.HTTPError as error:
        outcome.failure = f"{type(error).__name__}: {error}"
    outcome.ended = time.monotonic()
    return outcome


def test_sigterm_under_load_loses_no_usage_record(
    launch: Callable[..., list[GatewayProcess]], e2e_tmp: Path
) -> None:
    database = e2e_tmp / f"usage-{uuid.uuid4().hex[:8]}.db"
    settings = {
        "server": {"grace_period": 10},
        # Records are written only on shutdown: nothing reaches the file before SIGTERM except by close().
        "storage": {"database": f"sqlite:///{database}", "flush_interval": 60},
        "providers": {
            "drip": {"type": "mock", "mock": {"tokens_per_second": 20}},
            "slow": {"type": "mock", "mock": {"latency_ms": 300}},
        },
    }
    [gateway] = launch(settings, 1)
    stop = threading.Event()
    outcomes: list[Outcome] = []
    lock = threading.Lock()

    def client(worker: int) -> None:
        for number in range(1000):
            outcome = call(gateway.base_url, f"sig-{worker}-{number}", stream=(worker + number) % 2 == 0)
            with lock:
                outcomes.append(outcome)
            if outcome.failure is not None or stop.is_set():
                return

    threads = [threading.Thread(target=client, args=(worker,), daemon=True) for worker in range(8)]
    for thread in threads:
        thread.start()
    try:

        def some_calls_done() -> bool:
            with lock:
                done = len(outcomes)
            return done >= 4  # some calls are through; the workers' next streams are under way

        wait_until(some_calls_done, timeout=10)
        time.sleep(0.5)  # let the next round of streams get their first chunks
        gateway.sigterm()
        signalled = time.monotonic()
        returncode = gateway.proc.wait(timeout=20)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=25)
    assert returncode == 0, gateway.output()
    assert not any(thread.is_alive() for thread in threads)

    completed = [o for o in outcomes if o.completed]
    in_flight = [o for o in outcomes if o.started < signalled and (o.ended or 0) > signalled and o.status]
    streams_cut_short = [o for o in outcomes if o.status == 200 and o.stream and not o.done]
    assert not streams_cut_short, streams_cut_short
    assert {o.status for o in outcomes if o.status is not None} == {200}
    assert len(completed) >= 8
    assert any(o.stream and o.first_chunk and o.first_chunk < signalled for o in in_flight), (
        "no stream was in flight at SIGTERM"
    )
    for outcome in in_flight:  # everything the gateway had started, it finished
        assert outcome.completed, outcome
    for outcome in completed:
        assert outcome.text == (STREAM_WORDS if outcome.stream else outcome.request_id)

    with sqlite3.connect(database) as connection:
        rows = connection.execute("SELECT request_id, status, stream FROM usage_records").fetchall()
    recorded = {request_id: (status, bool(stream)) for request_id, status, stream in rows}
    assert len(recorded) == len(rows), "a request was recorded twice"
    missing = [o.request_id for o in completed if o.request_id not in recorded]
    assert not missing, f"{len(missing)} completed calls have no usage record: {missing[:5]}"
    for outcome in completed:
        assert recorded[outcome.request_id] == (200, outcome.stream)


# --- several workers without Redis ------------------------------------------------------------------------


def test_workers_without_redis_warn_that_limits_are_per_process(e2e_tmp: Path) -> None:
    folder = e2e_tmp / f"workers-{uuid.uuid4().hex[:8]}"
    folder.mkdir()
    config_path = folder / "gateway.yaml"
    config_path.write_text(
        json.dumps({"storage": {"database": "memory"}, "providers": {"m": {"type": "mock"}}})
    )
    log_path = folder / "gateway.log"
    port = free_port()
    command = [*llmgate_command(), "serve", "--config", str(config_path), "--host", "127.0.0.1"]
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [*command, "--port", str(port), "--workers", "2", "--log-level", "warning"],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_clean_env(),
            start_new_session=True,  # its worker processes share its process group, ended with it
        )
    try:

        def healthy() -> bool:
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200
            except httpx.HTTPError:
                return proc.poll() is not None  # stop waiting if it died

        wait_until(healthy, timeout=30, interval=0.1)
        assert proc.poll() is None, log_path.read_text()
        reply = httpx.post(f"http://127.0.0.1:{port}/v1/chat/completions", json=chat_body(), timeout=10)
        assert reply.status_code == 200
        logged = log_path.read_text()
        assert "2 workers without Redis" in logged
        assert "per process" in logged
        assert "Traceback" not in logged
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            pass
        else:  # a worker outlived the supervisor: end the group it was started in
            os.killpg(proc.pid, signal.SIGKILL)

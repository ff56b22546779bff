"""After a known mix of calls against ``llmgate serve --workers 2``, ``/metrics`` (from any worker),
``/api/stats``, ``/api/usage`` and ``llmgate usage --format csv`` all agree with that mix exactly."""

from __future__ import annotations

import csv
import io
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GatewayProcess, _clean_env, llmgate_command, start_gateway, stop_process, wait_until

MASTER = "sk-e2e-observe-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
HELLO = [{"role": "user", "content": "hello there"}]
TWO_WORKERS = [
    sys.executable,
    "-c",
    "import sys; from llmgate.cli.main import main; sys.argv += ['--workers', '2']; main()",
]


@pytest.fixture(scope="module")
def gateway(e2e_tmp: Path) -> Any:
    config = {
        "server": {"master_key": MASTER},
        "storage": {"database": f"sqlite:///{e2e_tmp / 'observe.db'}", "flush_interval": 0.2},
        "providers": {
            "m": {"type": "mock"},
            "down": {"type": "mock", "mock": {"failure_rate": 1.0, "failure": {"status": 500}}},
        },
        "models": [
            {"name": "g", "deployments": [{"provider": "m", "model": "echo"}]},
            {"name": "broken", "deployments": [{"provider": "down", "model": "echo"}]},
        ],
        "routing": {"retries": 0},
        "model_prices": {"echo": {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}},
    }
    process = start_gateway(e2e_tmp, config, launcher=TWO_WORKERS)
    try:
        yield process
    finally:
        stop_process(process.proc)


def _mix(gateway: GatewayProcess) -> dict[int, int]:
    with httpx.Client(timeout=10) as client:
        key = client.post(f"{gateway.url}/admin/keys", json={"name": "k", "rpm": 1}, headers=ADMIN).json()[
            "key"
        ]
        calls: list[tuple[dict[str, str], dict[str, Any]]] = [
            *[(ADMIN, {"model": "g"})] * 6,
            *[(ADMIN, {"model": "g", "stream": True})] * 2,
            *[(ADMIN, {"model": "nope"})] * 3,
            *[(ADMIN, {"model": "broken"})] * 2,
            *[({"Authorization": f"Bearer {key}"}, {"model": "g"})] * 2,  # the second is over its rpm
            *[({"Authorization": "Bearer sk-wrong"}, {"model": "g"})] * 2,
        ]
        statuses: dict[int, int] = {}
        for headers, body in calls:
            status = client.post(
                f"{gateway.base_url}/chat/completions", json={**body, "messages": HELLO}, headers=headers
            ).status_code
            statuses[status] = statuses.get(status, 0) + 1
    return statuses


def _requests_in(text: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == "llmgate_requests_total"
    )


def test_metrics_stats_usage_and_the_cli_agree_across_two_workers(gateway: GatewayProcess) -> None:
    statuses = _mix(gateway)
    assert statuses == {200: 9, 404: 3, 502: 2, 429: 1, 401: 2}
    total = sum(statuses.values())

    def every_worker_sees_all() -> bool:
        counts = set()
        for _ in range(6):  # fresh connections: the kernel spreads them over both workers
            with httpx.Client(timeout=5) as client:
                counts.add(_requests_in(client.get(f"{gateway.url}/metrics", headers=ADMIN).text))
        return counts == {float(total)}

    def read_stats() -> dict[str, Any]:
        return dict(httpx.get(f"{gateway.url}/api/stats", headers=ADMIN, timeout=5).json())

    wait_until(every_worker_sees_all, timeout=15, interval=0.3)
    # Metrics count a batch as the writer takes it, the ledger once it is written: wait for both.
    wait_until(lambda: read_stats()["total_requests"] == total, timeout=15, interval=0.3)
    stats = read_stats()
    assert (stats["total_requests"], stats["total_errors"]) == (total, total - 9)
    rows = httpx.get(
        f"{gateway.url}/api/usage", params={"group_by": "group"}, headers=ADMIN, timeout=5
    ).json()["rows"]
    by_group = {row["group"]: row["requests"] for row in rows}
    assert by_group == {"g": 9 + 1, "nope": 3, "broken": 2, "-": 2}  # the 401s name no model
    report = subprocess.run(
        [*llmgate_command(), "usage", "--config", str(gateway.config_path), "--by", "group", "--format", "csv"],
        capture_output=True, text=True, timeout=60, env=_clean_env(), check=True,
    )  # fmt: skip
    from_cli = {row["group"]: int(row["requests"]) for row in csv.DictReader(io.StringIO(report.stdout))}
    assert from_cli == by_group
    table = subprocess.run(
        [*llmgate_command(), "usage", "--config", str(gateway.config_path), "--by", "provider"],
        capture_output=True, text=True, timeout=60, env=_clean_env(), check=True,
    )  # fmt: skip
    assert "usage by provider" in table.stdout and "total" in table.stdout

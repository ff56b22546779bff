"""``/ui`` in a real headless Chromium (Debian's, driven by Playwright) against a real ``llmgate serve``:
it loads without console errors, refuses without the master key, signs in, shows charts and tables
from real traffic, and updates after more traffic."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import GatewayProcess

playwright_api = pytest.importorskip("playwright.sync_api")

MASTER = "sk-e2e-dashboard-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOT = (
    Path(os.environ.get("LLMGATE_UI_SCREENSHOT", "")) if os.environ.get("LLMGATE_UI_SCREENSHOT") else None
)

pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="Debian's chromium is not installed (apt-get install chromium)"
)


def _config() -> dict[str, Any]:
    groups = [
        {"name": f"group-{n}", "deployments": [{"provider": "m", "model": f"model-{n}"}]} for n in range(3)
    ]
    return {
        "server": {"master_key": MASTER},
        "storage": {"database": "memory", "flush_interval": 0.2},
        "providers": {
            "m": {"type": "mock"},
            "flaky": {"type": "mock", "mock": {"failure_rate": 1.0, "failure": {"status": 500}}},
        },
        "models": [*groups, {"name": "broken", "deployments": [{"provider": "flaky", "model": "x"}]}],
        "routing": {"retries": 0},
        "model_prices": {f"model-{n}": {"input_per_mtok": 100.0, "output_per_mtok": 200.0} for n in range(3)},
        "cache": {"mode": "exact"},
    }


@pytest.fixture(scope="module")
def gateway(config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess]) -> GatewayProcess:
    return config_gateway_factory(_config())


def _traffic(gateway: GatewayProcess, calls: int, headers: dict[str, str] = ADMIN) -> None:
    with httpx.Client(timeout=10) as client:
        for n in range(calls):
            model = "broken" if n % 5 == 4 else f"group-{n % 3}"
            body = {"model": model, "messages": [{"role": "user", "content": f"hello {n % 7}"}]}
            client.post(f"{gateway.base_url}/chat/completions", json=body, headers=headers)


@pytest.fixture
def page(gateway: GatewayProcess) -> Iterator[Any]:
    with playwright_api.sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        # The page's CSP forbids eval, which Playwright's wait_for_function uses: the test lifts it for
        # itself (the header is checked separately).
        context = browser.new_context(viewport={"width": 1440, "height": 1100}, bypass_csp=True)
        tab = context.new_page()
        tab.console_errors = []  # type: ignore[attr-defined]
        tab.on("console", lambda msg: msg.type == "error" and tab.console_errors.append(msg.text))  # type: ignore[attr-defined]
        tab.on("pageerror", lambda error: tab.console_errors.append(str(error)))  # type: ignore[attr-defined]
        try:
            yield tab
        finally:
            browser.close()


def _requests_shown(page: Any) -> int:
    return int(page.locator("#c-requests").inner_text().replace(",", "") or 0)


def test_the_dashboard_refuses_without_the_master_key(page: Any, gateway: GatewayProcess) -> None:
    created = httpx.post(f"{gateway.url}/admin/keys", json={"name": "tenant"}, headers=ADMIN, timeout=10)
    virtual = created.json()["key"]
    page.goto(f"{gateway.url}/ui")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.locator("#board").is_hidden()
    for wrong in ("not-a-key", virtual):
        page.fill("#key", wrong)
        page.click("#signin-form button")
        page.wait_for_function("document.getElementById('signin-error').textContent.length > 0")
        assert page.locator("#board").is_hidden()
    assert MASTER not in page.url and virtual not in page.url
    assert page.console_errors == [] or all("401" in e or "403" in e for e in page.console_errors)


def test_the_dashboard_shows_real_traffic_and_updates(
    page: Any, gateway: GatewayProcess, tmp_path: Path
) -> None:
    created = httpx.post(
        f"{gateway.url}/admin/keys", json={"name": "team-budget", "budget_usd": 5}, headers=ADMIN, timeout=10
    )
    _traffic(gateway, 20)
    _traffic(gateway, 6, {"Authorization": f"Bearer {created.json()['key']}"})
    page.goto(f"{gateway.url}/ui")
    page.fill("#key", MASTER)
    page.click("#signin-form button")
    page.wait_for_selector("#board:not([hidden])")
    page.wait_for_function(
        "Number(document.getElementById('c-requests').textContent.replace(/,/g, '')) >= 26"
    )
    first = _requests_shown(page)
    assert page.locator("#signin").is_hidden()
    assert page.locator("#status").inner_text() in ("ok", "degraded")
    assert page.locator("#c-errors").inner_text().endswith("%")
    for chart in ("chart-rate", "chart-latency", "chart-provider-cost", "chart-group-cost"):
        assert page.locator(f"#{chart} canvas").count() == 1, chart
    deployments = page.locator("#deployments tbody tr")
    assert deployments.count() == 4
    assert (
        "open" in page.locator("#deployments tbody").inner_text()
        or "degraded" in page.locator("#deployments tbody").inner_text()
    )
    assert "team-budget" in page.locator("#keys tbody").inner_text()
    assert page.locator("#errors tbody tr").count() >= 1
    assert "memory" in page.locator("#cache").inner_text()

    _traffic(gateway, 10)
    page.select_option("#window", "900")  # a refresh now, not in 5 s
    page.wait_for_function(
        f"Number(document.getElementById('c-requests').textContent.replace(/,/g, '')) >= {first + 10}"
    )
    assert page.console_errors == []
    shot = SCREENSHOT or tmp_path / "dashboard.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000


def test_the_dashboard_is_served_with_a_strict_content_security_policy(gateway: GatewayProcess) -> None:
    page = httpx.get(f"{gateway.url}/ui", timeout=10)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    policy = page.headers["content-security-policy"]
    assert (
        "script-src 'self'" in policy and "unsafe-inline" not in policy and "frame-ancestors 'none'" in policy
    )
    assert httpx.get(f"{gateway.url}/ui/static/vendor/uplot/uPlot.iife.min.js", timeout=10).status_code == 200
    for path in ("../app.py", "..%2Fapp.py", "nope.js", "vendor/uplot/LICENSE"):
        assert httpx.get(f"{gateway.url}/ui/static/{path}", timeout=10).status_code == 404


def test_the_dashboard_stays_usable_at_100_deployments_and_1000_keys(
    config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess], page: Any
) -> None:
    config = _config()
    config["models"] = [
        {"name": f"g{n:03d}", "deployments": [{"provider": "m", "model": f"m{n:03d}"}]} for n in range(100)
    ]
    big = config_gateway_factory(config)
    with httpx.Client(timeout=10) as client:
        for n in range(1000):
            client.post(f"{big.url}/admin/keys", json={"name": f"tenant-{n:04d}"}, headers=ADMIN)
        for n in range(100):
            client.post(
                f"{big.base_url}/chat/completions",
                json={"model": f"g{n:03d}", "messages": [{"role": "user", "content": "hi"}]},
                headers=ADMIN,
            )
    page.goto(f"{big.url}/ui")
    page.fill("#key", MASTER)
    page.click("#signin-form button")
    page.wait_for_function("document.querySelectorAll('#deployments tbody tr').length === 100")
    page.wait_for_function("document.getElementById('keys-count').textContent === '200 of 1000'")
    page.fill("#filter-keys", "tenant-0999")
    page.wait_for_function("document.querySelectorAll('#keys tbody tr').length === 1")
    page.fill("#filter-deployments", "m042")
    page.wait_for_function("document.querySelectorAll('#deployments tbody tr').length === 1")
    assert page.console_errors == []

"""``llmgate batch INPUT.jsonl -o OUTPUT.jsonl`` end to end (SPEC.md 10): the real command, as a subprocess,
in front of a real mock upstream process (upstream.py), in-process (``--config``) or against a running
``llmgate serve`` (``--url``, ``--key``).

Every input line carries its custom_id in its prompt (``batch <custom_id>``), so the upstream's request log
(``GET /_log``) tells how many times each line was sent, and the echoed reply (``Echo: batch <custom_id>``)
tells that each output line holds its own line's answer. Faults are switched on at run time (``POST
/_fault``), e.g. ``mix``: 10% of calls fail with 500 and 5% with 429.

The in-process gateway is configured with no retries of its own and a breaker that never opens: every
upstream attempt is then one attempt of the batch runner, which is what these tests count.
"""

from __future__ import annotations

import json
import os
import pty
import select
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import UPSTREAM_KEY, GatewayProcess, Upstream, _clean_env, llmgate_command, wait_until

MASTER = "sk-e2e-batch-cli-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHAT = "/v1/chat/completions"
# 500 for 10% of calls, 429 for 5% (Retry-After: 0, so that a rate limit does not pause the run for long).
MIX = {"mode": "mix", "mix": {"500": 0.1, "429": 0.05}, "retry_after": 0}
RUN_TIMEOUT_S = 120.0
# $0.001 per token in and out (remote gateway): a batch line here costs about a cent.
PRICE = {"input_per_mtok": 1000.0, "output_per_mtok": 1000.0}
LINE_KEYS = {"id", "custom_id", "response", "error"}
RESPONSE_KEYS = {"status_code", "request_id", "body"}


# --- fixtures ----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def up(upstream_factory: Callable[[int], list[Upstream]]) -> Upstream:
    """This module's own upstream (its faults and log are nobody else's)."""
    return upstream_factory(1)[0]


@pytest.fixture(autouse=True)
def fresh_upstream(up: Upstream) -> Iterator[None]:
    """Every test starts with a healthy upstream and an empty log, and leaves it healthy."""
    set_fault(up, mode="ok")
    clear_log(up)
    yield
    set_fault(up, mode="ok")


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("batch-cli")


def local_config(up: Upstream) -> dict[str, Any]:
    """A gateway in front of ``up`` that leaves retrying to the batch runner."""
    provider = {"type": "openai", "base_url": up.base_url, "api_keys": [UPSTREAM_KEY]}
    return {
        "storage": {"database": "memory"},
        "routing": {"retries": 0, "breaker": {"failures": 1_000_000, "min_requests": 1_000_000}},
        "providers": {"up": provider},
        "models": [
            {"name": "gpt-test", "deployments": [{"provider": "up", "model": "gpt-test"}]},
            # The upstream refuses every call to this one (400, not retryable).
            {"name": "always-400", "deployments": [{"provider": "up", "model": "fail-400"}]},
        ],
        "model_prices": {"gpt-test": {"input_per_mtok": 1.0, "output_per_mtok": 2.0}},
    }


@pytest.fixture(scope="module")
def config_file(up: Upstream, workdir: Path) -> Path:
    path = workdir / "local.yaml"
    path.write_text(yaml.safe_dump(local_config(up)))
    return path


@pytest.fixture(scope="module")
def served(
    up: Upstream, config_gateway_factory: Callable[[dict[str, Any]], GatewayProcess]
) -> GatewayProcess:
    """``llmgate serve`` with a master key, virtual keys and prices, in front of ``up``."""
    config = local_config(up)
    config["server"] = {"master_key": MASTER, "grace_period": 5}
    config["storage"] = {"database": "memory", "flush_interval": 0.2}
    config["model_prices"] = {"gpt-test": PRICE}
    return config_gateway_factory(config)


# --- helpers -----------------------------------------------------------------------------------------------


def set_fault(up: Upstream, **fault: Any) -> None:
    httpx.post(f"{up.url}/_fault", json=fault, timeout=5).raise_for_status()


def clear_log(up: Upstream) -> None:
    httpx.delete(f"{up.url}/_log", timeout=5).raise_for_status()


def upstream_count(up: Upstream) -> int:
    return int(httpx.get(f"{up.url}/_log", params={"entries": "0"}, timeout=5).json()["counts"]["requests"])


def sent(up: Upstream, marker: str) -> dict[str, list[dict[str, Any]]]:
    """The upstream's requests per custom_id (of this test's lines: their custom_ids start with
    ``marker``), in the order received."""
    found: dict[str, list[dict[str, Any]]] = {}
    for entry in httpx.get(f"{up.url}/_log", timeout=30).json()["requests"]:
        messages = entry["body"].get("messages") if isinstance(entry["body"], dict) else None
        if entry["path"] != CHAT or not messages:
            continue
        words = str(messages[-1].get("content", "")).split()
        if len(words) == 2 and words[0] == "batch" and words[1].startswith(marker):
            found.setdefault(words[1], []).append(entry)
    return found


def line(custom_id: str, model: str = "gpt-test", **body: Any) -> dict[str, Any]:
    """An input line whose prompt names its custom_id."""
    messages = [{"role": "user", "content": f"batch {custom_id}"}]
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT,
        "body": {"model": model, "messages": messages, **body},
    }


def write_input(path: Path, lines: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in lines))
    return path


def batch_env(workdir: Path) -> dict[str, str]:
    """The environment of an ``llmgate batch``: no LLMGATE_*/provider variables, data kept in ``workdir``."""
    return {**_clean_env(), "LLMGATE_DATA_DIR": str(workdir / "data")}


def batch_command(source: Path, output: Path, *options: str) -> list[str]:
    return [*llmgate_command(), "batch", str(source), "-o", str(output), *options]


def run_batch(
    workdir: Path, source: Path, output: Path, *options: str, timeout: float = RUN_TIMEOUT_S
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        batch_command(source, output, *options),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=batch_env(workdir),
        cwd=workdir,
        check=False,
    )


def read_output(path: Path) -> list[dict[str, Any]]:
    """Every output line, decoded (a line that is not JSON fails the test)."""
    raw = path.read_bytes()
    assert raw.endswith(b"\n"), f"the output does not end with a whole line: {raw[-200:]!r}"
    return [json.loads(text) for text in raw.decode().splitlines()]


def by_custom_id(lines: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The output lines by custom_id, checking there is one line per custom_id, no more."""
    counts = Counter(item["custom_id"] for item in lines)
    twice = {custom_id: count for custom_id, count in counts.items() if count > 1}
    assert not twice, f"custom_ids answered more than once: {twice}"
    return {item["custom_id"]: item for item in lines}


def assert_openai_shape(item: dict[str, Any]) -> None:
    """OpenAI's batch output line: an HTTP answer is a ``response`` (and ``error`` null)."""
    assert set(item) == LINE_KEYS, item
    assert isinstance(item["id"], str) and item["id"].startswith("batch_req_"), item
    response = item["response"]
    assert isinstance(response, dict) and set(response) == RESPONSE_KEYS, item
    assert isinstance(response["status_code"], int), item
    assert isinstance(response["request_id"], str) and response["request_id"], item
    assert isinstance(response["body"], dict), item
    assert item["error"] is None, item


def assert_answered(item: dict[str, Any]) -> None:
    """A reply to this very line: the upstream echoed its prompt."""
    assert_openai_shape(item)
    assert item["response"]["status_code"] == 200, item
    body = item["response"]["body"]
    assert body["object"] == "chat.completion", item
    assert body["choices"][0]["message"]["content"] == f"Echo: batch {item['custom_id']}", item


def count_lines(path: Path) -> int:
    try:
        return path.read_bytes().count(b"\n")
    except FileNotFoundError:
        return 0


def settled_log(up: Upstream, marker: str) -> dict[str, list[dict[str, Any]]]:
    """The log once no more requests arrive (those a killed client had sent may still be read)."""
    previous = -1
    while True:
        found = sent(up, marker)
        total = sum(len(entries) for entries in found.values())
        if total == previous:
            return found
        previous = total
        time.sleep(0.3)


def create_key(gateway: GatewayProcess, **fields: Any) -> tuple[str, str]:
    made = httpx.post(f"{gateway.url}/admin/keys", json=fields, headers=ADMIN, timeout=10)
    assert made.status_code == 201, made.text
    return str(made.json()["id"]), str(made.json()["key"])


# --- 1. the proof: 2,000 lines, 15% of calls failing ---------------------------------------------


def test_two_thousand_lines_through_a_flaky_upstream_one_line_each(
    up: Upstream, config_file: Path, workdir: Path, marker: str
) -> None:
    ids = [f"{marker}-{number:04d}" for number in range(2000)]
    unknown = set(ids[7::400])  # a model the config does not know: 404 from the gateway, never sent
    refused = set(ids[9::400])  # the upstream refuses it every time: 400, not retried
    lines = [
        line(custom_id, "no-such-model" if custom_id in unknown else "always-400" if custom_id in refused else "gpt-test")
        for custom_id in ids
    ]  # fmt: skip
    source = write_input(workdir / f"{marker}-in.jsonl", lines)
    output = workdir / f"{marker}-out.jsonl"
    set_fault(up, **MIX)

    done = run_batch(
        workdir, source, output, "--config", str(config_file), "--concurrency", "32", "--retries", "5"
    )

    assert done.returncode == 0, done.stderr[-3000:]
    answers = by_custom_id(read_output(output))
    assert len(read_output(output)) == len(ids)
    assert set(answers) == set(ids)
    assert len({item["id"] for item in answers.values()}) == len(ids)  # a line id of its own each
    for item in answers.values():
        assert_openai_shape(item)

    requests = sent(up, marker)
    for custom_id in unknown:  # recorded per line, with the gateway's error, and never sent upstream
        response = answers[custom_id]["response"]
        assert response["status_code"] == 404, answers[custom_id]
        assert response["body"]["error"]["code"] == "model_not_found", answers[custom_id]
        assert custom_id not in requests
    for custom_id in refused:  # recorded per line, with the upstream's error, and not sent after the 400
        response = answers[custom_id]["response"]
        assert response["status_code"] == 400, answers[custom_id]
        assert "upstream-400-marker" in response["body"]["error"]["message"], answers[custom_id]
        statuses = [entry["status"] for entry in requests[custom_id]]
        assert statuses[-1] == 400 and statuses.count(400) == 1, statuses
        assert set(statuses[:-1]) <= {500, 429}, statuses

    ordinary = [custom_id for custom_id in ids if custom_id not in unknown | refused]
    succeeded = [custom_id for custom_id in ordinary if answers[custom_id]["response"]["status_code"] == 200]
    # Each line gets 6 attempts (--retries 5): a line failing for good is a 1-in-90,000 event.
    assert len(succeeded) >= len(ordinary) - 3, Counter(
        answers[custom_id]["response"]["status_code"] for custom_id in ordinary
    )
    for custom_id in succeeded:
        assert_answered(answers[custom_id])
        statuses = [entry["status"] for entry in requests[custom_id]]
        # Sent until it succeeded, then never again; what failed before was a 500 or a 429.
        assert statuses[-1] == 200 and statuses.count(200) == 1, (custom_id, statuses)
        assert set(statuses[:-1]) <= {500, 429}, (custom_id, statuses)
    for custom_id in set(ordinary) - set(succeeded):  # given up on after every retry, still recorded
        assert answers[custom_id]["response"]["status_code"] in {500, 502, 503, 429}, answers[custom_id]
        assert len(requests[custom_id]) >= 6, requests[custom_id]  # 429s with a Retry-After: waits
    retried = [custom_id for custom_id in succeeded if len(requests[custom_id]) > 1]
    faults = Counter(entry["runtime_fault"] for entries in requests.values() for entry in entries)
    assert len(retried) > 100, faults  # about 15% of the lines needed a second attempt
    assert faults["500"] > 100 and faults["429"] > 50, faults

    failed = len(ids) - len(succeeded)
    assert f"2,000 lines: 0 answered before, 2,000 now ({failed:,} failed)" in done.stderr, done.stderr


# --- 2. SIGKILL midway, then the same command again ---------------------------------------------------------


def test_killed_midway_and_run_again_answers_each_line_once(
    up: Upstream, config_file: Path, workdir: Path, marker: str
) -> None:
    concurrency = 32
    ids = [f"{marker}-{number:04d}" for number in range(1000)]
    source = write_input(workdir / f"{marker}-in.jsonl", [line(custom_id) for custom_id in ids])
    output = workdir / f"{marker}-out.jsonl"
    set_fault(up, **MIX, latency_ms=150)  # 32 at a time, 150 ms each: several seconds for the whole file
    options = ("--config", str(config_file), "--concurrency", str(concurrency), "--no-progress")

    with (workdir / f"{marker}-first.err").open("w+") as first_err:
        first = subprocess.Popen(
            batch_command(source, output, *options),
            stdout=subprocess.DEVNULL,
            stderr=first_err,
            env=batch_env(workdir),
            cwd=workdir,
        )
        try:
            wait_until(lambda: count_lines(output) >= 50 or first.poll() is not None, timeout=60)
            # A second run on the same output is refused while the first one writes it.
            busy = run_batch(workdir, source, output, *options, timeout=60)
            assert busy.returncode == 2, busy.stderr
            assert f"another llmgate batch is writing {output}" in busy.stderr, busy.stderr
            wait_until(lambda: count_lines(output) >= 300 or first.poll() is not None, timeout=60)
            if first.poll() is not None:
                first_err.seek(0)
                raise AssertionError(f"the run ended before it could be killed: {first_err.read()}")
            first.send_signal(signal.SIGKILL)
            assert first.wait(timeout=10) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
                first.wait(timeout=10)

    before = read_output_allowing_a_torn_end(output)
    answered_before = {item["custom_id"] for item in before}
    assert 300 <= len(answered_before) < len(ids)
    first_run = settled_log(up, marker)
    in_flight = [custom_id for custom_id in first_run if custom_id not in answered_before]
    assert in_flight, "nothing was in flight at the kill"
    assert set(first_run) >= answered_before
    # A kill in the middle of a write leaves a torn last line: simulate one, of a line in flight.
    response = {"status_code": 200, "request_id": "req_torn", "body": {}}
    torn = json.dumps(
        {"id": "batch_req_torn", "custom_id": in_flight[0], "response": response, "error": None}
    )
    with output.open("ab") as file:
        file.write(torn.encode()[: len(torn) // 2])
    clear_log(up)

    again = run_batch(workdir, source, output, *options)

    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(before):,} already in" in again.stderr, again.stderr
    answers = by_custom_id(read_output(output))  # the torn line is gone, every line is whole
    assert set(answers) == set(ids)  # none missing, none twice
    assert len(read_output(output)) == len(ids)
    for custom_id in answered_before:  # kept as the first run wrote them
        assert answers[custom_id] == next(item for item in before if item["custom_id"] == custom_id)
    second_run = settled_log(up, marker)
    assert not set(second_run) & answered_before, "a line already answered was sent again"
    assert set(second_run) == set(ids) - answered_before
    # Sent by both runs: only the lines in flight when the first was killed (attempts are not counted).
    both = set(first_run) & set(second_run)
    assert 0 < len(both) <= concurrency, len(both)
    assert in_flight[0] in both
    ok = [item for item in answers.values() if item["response"]["status_code"] == 200]
    assert len(ok) >= len(ids) - 3
    for item in ok:
        assert_answered(item)


def read_output_allowing_a_torn_end(path: Path) -> list[dict[str, Any]]:
    """The whole lines of an output a kill may have left with a torn last line."""
    raw = path.read_bytes()
    return [json.loads(text) for text in raw[: raw.rfind(b"\n") + 1].decode().splitlines()]


# --- 3. bad input: reported up front, nothing sent ---------------------------------------------------------


def test_bad_input_lines_are_reported_by_number_and_nothing_is_sent(
    up: Upstream, config_file: Path, workdir: Path, marker: str
) -> None:
    good = [line(f"{marker}-{number}") for number in range(4)]
    no_id = line("x")
    del no_id["custom_id"]
    other_url = {**line(f"{marker}-url"), "url": "/v1/completions"}
    bad_body = line(f"{marker}-body")
    bad_body["body"]["messages"] = "not a list of messages"
    text = "".join(
        [
            json.dumps(good[0]) + "\n",  # line 1
            '{"custom_id": "broken", "method": "POST", \n',  # line 2: not JSON
            json.dumps(good[1]) + "\n",  # line 3
            json.dumps(no_id) + "\n",  # line 4: no custom_id
            json.dumps(good[2]) + "\n",  # line 5
            json.dumps({**good[3], "custom_id": good[0]["custom_id"]}) + "\n",  # line 6: line 1's custom_id
            json.dumps(other_url) + "\n",  # line 7: an endpoint a batch cannot call
            json.dumps(bad_body) + "\n",  # line 8: a body the gateway refuses
            json.dumps(good[3]) + "\n",  # line 9
        ]
    )
    source = workdir / f"{marker}-in.jsonl"
    source.write_text(text)
    output = workdir / f"{marker}-out.jsonl"

    done = run_batch(workdir, source, output, "--config", str(config_file), "--no-progress")

    assert done.returncode == 2, (done.returncode, done.stderr)
    problems = {
        number: text for text in done.stderr.splitlines() if (number := _line_number(text)) is not None
    }
    assert set(problems) == {2, 4, 6, 7, 8}, done.stderr
    assert "JSON" in problems[2]
    assert "custom_id" in problems[4]
    assert "duplicate custom_id" in problems[6] and "line 1" in problems[6]
    assert "/v1/completions" in problems[7]
    assert "5 input line(s) cannot run" in done.stderr and "nothing was sent" in done.stderr
    assert upstream_count(up) == 0
    assert not output.exists() or output.stat().st_size == 0


def _line_number(text: str) -> int | None:
    """N of an ``llmgate: line N: ...`` problem report."""
    head = text.removeprefix("llmgate: ")
    if not head.startswith("line ") or ":" not in head:
        return None
    number = head[len("line ") : head.index(":")]
    return int(number) if number.isdigit() else None


# --- 4. remote mode: against a running llmgate serve -------------------------------------------------------


def test_remote_batch_through_a_running_gateway(
    up: Upstream, served: GatewayProcess, workdir: Path, marker: str
) -> None:
    key_id, secret = create_key(served, name=f"batch-{marker}")
    ids = [f"{marker}-{number:02d}" for number in range(50)]
    source = write_input(workdir / f"{marker}-in.jsonl", [line(custom_id) for custom_id in ids])
    output = workdir / f"{marker}-out.jsonl"
    set_fault(up, **MIX)  # the runner retries what the gateway passes on

    done = run_batch(
        workdir,
        source,
        output,
        "--url",
        served.base_url,
        "--key",
        secret,
        "--concurrency",
        "8",
        "--no-progress",
    )

    assert done.returncode == 0, done.stderr[-3000:]
    answers = by_custom_id(read_output(output))
    assert set(answers) == set(ids)
    for item in answers.values():
        assert_answered(item)
    requests = sent(up, marker)
    assert set(requests) == set(ids)
    assert all(
        entry["headers"].get("Authorization") == f"Bearer {UPSTREAM_KEY}"
        for e in requests.values()
        for entry in e
    )
    # The gateway's own records, for this key: one successful call per line, and the failed attempts
    # (one call of the gateway's may have been more than one upstream attempt, after a 429).
    headers = {"Authorization": f"Bearer {secret}"}

    def recorded() -> tuple[int, int]:
        reply = httpx.get(f"{served.url}/api/usage", params={"group_by": "key"}, headers=headers, timeout=5)
        reply.raise_for_status()
        rows = reply.json()["rows"]
        assert {row["group"] for row in rows} <= {key_id}, rows
        return sum(row["requests"] for row in rows), sum(row["errors"] for row in rows)

    attempts = sum(len(entries) for entries in requests.values())
    wait_until(lambda: recorded()[0] - recorded()[1] == len(ids), timeout=10, interval=0.2)
    calls, errors = recorded()
    assert len(ids) <= calls <= attempts, (calls, errors, attempts)


# --- 5. a spent budget stops the run; more budget finishes it ----------------------------------------------


def test_a_spent_budget_stops_the_run_with_exit_3_and_a_rerun_finishes_it(
    up: Upstream, served: GatewayProcess, workdir: Path, marker: str
) -> None:
    key_id, secret = create_key(served, name=f"budget-{marker}", budget_usd=0.05)  # a few lines' worth
    ids = [f"{marker}-{number:02d}" for number in range(50)]
    lines = [line(custom_id, max_tokens=5) for custom_id in ids]
    source = write_input(workdir / f"{marker}-in.jsonl", lines)
    output = workdir / f"{marker}-out.jsonl"
    options = ("--url", served.base_url, "--key", secret, "--concurrency", "4", "--no-progress")

    stopped = run_batch(workdir, source, output, *options)

    assert stopped.returncode == 3, (stopped.returncode, stopped.stderr[-3000:])
    assert "stopped early" in stopped.stderr and "run again" in stopped.stderr, stopped.stderr
    assert "budget" in stopped.stderr.lower(), stopped.stderr
    first = by_custom_id(read_output(output))
    assert 0 < len(first) < len(ids)
    for item in first.values():  # only finished lines: nothing is written as failed for the budget
        assert_answered(item)
    assert set(sent(up, marker)) == set(first)  # what was refused never reached the upstream

    raised = httpx.patch(
        f"{served.url}/admin/keys/{key_id}", json={"budget_usd": 100.0}, headers=ADMIN, timeout=5
    )
    assert raised.status_code == 200, raised.text
    clear_log(up)

    again = run_batch(workdir, source, output, *options)

    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{len(first):,} already in" in again.stderr, again.stderr
    answers = by_custom_id(read_output(output))
    assert set(answers) == set(ids)
    for custom_id, item in answers.items():
        assert_answered(item)
        if custom_id in first:
            assert item == first[custom_id]
    assert set(sent(up, marker)) == set(ids) - set(first)


# --- 6. progress on stderr ---------------------------------------------------------------------------------


def progress_input(workdir: Path, marker: str) -> tuple[Path, int, int]:
    """30 lines, 3 of which the upstream refuses."""
    ids = [f"{marker}-{number:02d}" for number in range(30)]
    lines = [
        line(custom_id, "always-400" if number % 10 == 3 else "gpt-test")
        for number, custom_id in enumerate(ids)
    ]
    return write_input(workdir / f"{marker}-in.jsonl", lines), 30, 3


def run_on_a_terminal(workdir: Path, command: list[str], timeout: float = 60) -> tuple[int, str]:
    """Run ``command`` with its stderr on a pseudo-terminal; its exit code and what it wrote there."""
    leader, follower = pty.openpty()
    env = {**batch_env(workdir), "TERM": "xterm", "COLUMNS": "160"}
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.DEVNULL,
            stderr=follower,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=workdir,
        )
    finally:
        os.close(follower)
    chunks: list[bytes] = []
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            readable, _, _ = select.select([leader], [], [], 0.1)
            if readable:
                try:
                    chunk = os.read(leader, 65536)
                except OSError:  # EIO: the child closed the terminal
                    break
                if not chunk:
                    break
                chunks.append(chunk)
            elif proc.poll() is not None:
                break
        code = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        os.close(leader)
    return code, b"".join(chunks).decode("utf-8", "replace")


def test_progress_lines_and_a_summary_on_stderr(config_file: Path, workdir: Path, marker: str) -> None:
    source, total, failing = progress_input(workdir, marker)
    summary = f"{total} lines: 0 answered before, {total} now ({failing} failed)"
    final = f"progress: {total}/{total} done, {failing} failed"

    # Not a terminal (a pipe): plain lines, with or without --no-progress.
    piped = run_batch(workdir, source, workdir / f"{marker}-piped.jsonl", "--config", str(config_file))
    assert piped.returncode == 0, piped.stderr
    assert f"llmgate: {total} lines, 0 already in" in piped.stderr, piped.stderr
    assert final in piped.stderr and summary in piped.stderr, piped.stderr
    assert "\x1b[" not in piped.stderr  # no terminal control codes in a log

    # A terminal with --no-progress: plain lines all the same.
    quiet = batch_command(
        source, workdir / f"{marker}-quiet.jsonl", "--config", str(config_file), "--no-progress"
    )
    code, shown = run_on_a_terminal(workdir, quiet)
    assert code == 0, shown
    assert final in shown and summary in shown, shown

    # A terminal without it: the bar, not the lines (so the flag above is what made them plain).
    barred = batch_command(source, workdir / f"{marker}-bar.jsonl", "--config", str(config_file))
    code, shown = run_on_a_terminal(workdir, barred)
    assert code == 0, shown
    assert "progress:" not in shown and summary in shown, shown
    assert f"{total}/{total}" in shown and f"{failing} failed" in shown, shown

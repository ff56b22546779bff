"""OpenAI's Files and Batches API over real ``llmgate serve`` processes, driven by the official ``openai``
SDK (SPEC.md 2.6): upload, create, poll, read the output and error files, ownership by key, cancel, a
gateway killed mid-job and resumed, and inputs that must be refused.

Every gateway keeps its jobs in a SQLite file of its test's own (the Postgres test: a fresh database for
the module, dropped afterwards), listens on 127.0.0.1, calls only the mock upstream, and is stopped by
the end of its test. Slowness comes from the upstream's model-name faults (``slow-<ms>``), never from its
runtime switch, so other tests sharing the upstream are not touched.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

import httpx
import openai
import pytest
from openai.types import Batch

from .conftest import UPSTREAM_KEY, GatewayProcess, Upstream, wait_until

MASTER = "sk-e2e-batch-master"
ADMIN = {"Authorization": f"Bearer {MASTER}"}
CHAT_URL: Final = "/v1/chat/completions"
JOB_TIMEOUT_S = 60.0
FINAL = {"completed", "failed", "cancelled", "expired"}

Gateways = Callable[[dict[str, Any]], GatewayProcess]


# --- fixtures and helpers -----------------------------------------------------------------------------


@pytest.fixture
def sqlite_url(e2e_tmp: Path) -> str:
    """A database file of this test's own (jobs, files, keys, usage)."""
    return f"sqlite:///{e2e_tmp / f'batch-{uuid.uuid4().hex[:8]}.db'}"


def batch_config(
    upstream: Upstream, database: str, *, master_key: str | None = None, **batch: Any
) -> dict[str, Any]:
    """A gateway in front of the mock upstream, its jobs in ``database``, with ``batch`` settings."""
    provider = {"type": "openai", "base_url": upstream.base_url, "api_keys": [UPSTREAM_KEY]}
    server: dict[str, Any] = {"grace_period": 5}
    if master_key is not None:
        server["master_key"] = master_key
    return {
        "server": server,
        "routing": {"retries": 0},
        "storage": {"database": database, "flush_interval": 0.2},
        "providers": {"up": provider},
        "models": [
            {"name": "gpt-test", "deployments": [{"provider": "up", "model": "gpt-test"}]},
            # The upstream answers after 300 ms / 500 ms: jobs on these last long enough to act on.
            {"name": "slow-test", "deployments": [{"provider": "up", "model": "slow-300"}]},
            {"name": "slower-test", "deployments": [{"provider": "up", "model": "slow-500"}]},
            # The upstream refuses every call with a 400 (not retryable).
            {"name": "refused-test", "deployments": [{"provider": "up", "model": "fail-400"}]},
        ],
        "batch": {"poll_seconds": 0.2, "lease_seconds": 2, **batch},
    }


def chat_line(custom_id: str, text: str, model: str = "gpt-test") -> dict[str, Any]:
    return {
        "custom_id": custom_id,
        "method": "POST",
        "url": CHAT_URL,
        "body": {"model": model, "messages": [{"role": "user", "content": text}], "max_tokens": 16},
    }


def jsonl(lines: list[dict[str, Any]]) -> bytes:
    return b"".join(json.dumps(line).encode() + b"\n" for line in lines)


def upload(client: openai.OpenAI, data: bytes, name: str = "input.jsonl") -> str:
    """Upload a batch input; its file id."""
    stored = client.files.create(file=(name, data, "application/jsonl"), purpose="batch")
    assert stored.purpose == "batch" and stored.bytes == len(data) and stored.filename == name
    return stored.id


def create_batch(client: openai.OpenAI, file_id: str, **metadata: str) -> Batch:
    return client.batches.create(
        input_file_id=file_id,
        endpoint=CHAT_URL,
        completion_window="24h",
        metadata=metadata or None,
    )


def wait_for(
    client: openai.OpenAI,
    batch_id: str,
    predicate: Callable[[Batch], bool],
    *,
    timeout: float = JOB_TIMEOUT_S,
    what: str = "the expected state",
) -> Batch:
    """Poll ``batches.retrieve`` until ``predicate`` holds (bounded)."""
    seen: list[Batch] = []

    def check() -> Batch | None:
        batch = client.batches.retrieve(batch_id)
        seen.append(batch)
        return batch if predicate(batch) else None

    try:
        return wait_until(check, timeout=timeout, interval=0.1)  # type: ignore[no-any-return]
    except AssertionError:
        last = seen[-1] if seen else None
        raise AssertionError(f"batch {batch_id} never reached {what}: {last}") from None


def wait_final(client: openai.OpenAI, batch_id: str, timeout: float = JOB_TIMEOUT_S) -> Batch:
    return wait_for(client, batch_id, lambda b: b.status in FINAL, timeout=timeout, what="a final status")


def file_lines(client: openai.OpenAI, file_id: str | None) -> list[dict[str, Any]]:
    """The JSON lines of a stored file (none for ``None``)."""
    if file_id is None:
        return []
    text = client.files.content(file_id).text
    assert text == "" or text.endswith("\n"), "a file ends with a whole line"
    return [json.loads(line) for line in text.splitlines()]


def answers(client: openai.OpenAI, batch: Batch) -> tuple[dict[str, Any], dict[str, Any]]:
    """The output and error lines by custom_id; no custom_id is answered twice, in either file."""
    output, errors = file_lines(client, batch.output_file_id), file_lines(client, batch.error_file_id)
    ids = [line["custom_id"] for line in output + errors]
    repeated = sorted({custom_id for custom_id in ids if ids.count(custom_id) > 1})
    assert not repeated, f"answered more than once: {repeated}"
    return {line["custom_id"]: line for line in output}, {line["custom_id"]: line for line in errors}


def make_key(gateway: GatewayProcess, name: str) -> tuple[str, str]:
    """A new virtual key (id, secret), made with the master key."""
    made = httpx.post(f"{gateway.url}/admin/keys", json={"name": name}, headers=ADMIN, timeout=10)
    assert made.status_code == 201, made.text
    return made.json()["id"], made.json()["key"]


# --- the SDK's workflow -------------------------------------------------------------------------------


def test_sdk_batch_workflow_completes_with_one_answer_per_line(
    gateways: Gateways, upstream: Upstream, sqlite_url: str, marker: str
) -> None:
    gateway = gateways(batch_config(upstream, sqlite_url, concurrency=8))
    good = [chat_line(f"req-{n}", f"{marker} question {n}") for n in range(30)]
    bad = [
        chat_line("no-such-model", f"{marker} unknown", model="model-the-gateway-does-not-know"),
        chat_line("refused", f"{marker} refused", model="refused-test"),
    ]
    lines = good[:10] + bad[:1] + good[10:20] + bad[1:] + good[20:]
    data = jsonl(lines)
    with gateway.client() as client:
        file_id = upload(client, data, "questions.jsonl")
        assert client.files.retrieve(file_id).bytes == len(data)
        assert client.files.content(file_id).content == data

        created = create_batch(client, file_id, project="e2e", run=marker)
        assert created.id.startswith("batch_") and created.status == "validating"
        assert created.input_file_id == file_id and created.endpoint == CHAT_URL
        assert created.metadata == {"project": "e2e", "run": marker}

        batch = wait_final(client, created.id)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None
        counts = batch.request_counts
        assert (counts.total, counts.completed, counts.failed) == (32, 30, 2)
        assert batch.completed_at is not None and batch.in_progress_at is not None
        assert batch.output_file_id and batch.error_file_id
        assert batch.metadata == {"project": "e2e", "run": marker}

        output, errors = answers(client, batch)
        assert set(output) == {f"req-{n}" for n in range(30)}
        for number in range(30):
            line = output[f"req-{number}"]
            assert line["id"] and line["error"] is None
            response = line["response"]
            assert response["status_code"] == 200 and response["request_id"]
            body = response["body"]
            assert body["object"] == "chat.completion"
            assert body["choices"][0]["message"]["content"] == f"Echo: {marker} question {number}"
            assert body["usage"]["total_tokens"] > 0

        assert set(errors) == {"no-such-model", "refused"}
        unknown = errors["no-such-model"]["response"]
        assert unknown["status_code"] in (400, 404)
        assert "model-the-gateway-does-not-know" in unknown["body"]["error"]["message"]
        refused = errors["refused"]["response"]
        assert refused["status_code"] == 400
        assert refused["body"]["error"]["type"] == "invalid_request_error"
        # Only the line on a configured model reached the upstream; each good line once (no retries).
        assert not upstream.requests_with(f"{marker} unknown")
        assert len(upstream.requests_with(f"{marker} refused")) == 1
        assert len(upstream.requests_with(f"{marker} question")) == 30

        assert created.id in {listed.id for listed in client.batches.list(limit=100).data}
        assert client.batches.retrieve(created.id).status == "completed"
        output_file = client.files.retrieve(batch.output_file_id)
        assert output_file.purpose == "batch_output" and output_file.bytes > 0
        assert file_id in {listed.id for listed in client.files.list().data}

        deleted = client.files.delete(file_id)
        assert deleted.id == file_id and deleted.deleted
        with pytest.raises(openai.NotFoundError):
            client.files.retrieve(file_id)
        with pytest.raises(openai.NotFoundError):
            client.files.content(file_id)
        assert file_id not in {listed.id for listed in client.files.list().data}
        # The job's own files outlive its input.
        assert len(file_lines(client, batch.output_file_id)) == 30


# --- ownership ----------------------------------------------------------------------------------------


def test_files_and_batches_belong_to_the_key_that_made_them(
    gateways: Gateways, upstream: Upstream, sqlite_url: str, marker: str
) -> None:
    gateway = gateways(batch_config(upstream, sqlite_url, master_key=MASTER))
    _, secret_a = make_key(gateway, "owner-a")
    _, secret_b = make_key(gateway, "owner-b")
    lines = [chat_line(f"a-{n}", f"{marker} from a {n}") for n in range(3)]
    with (
        gateway.client(api_key=secret_a) as a,
        gateway.client(api_key=secret_b) as b,
        gateway.client(api_key=MASTER) as master,
    ):
        file_id = upload(a, jsonl(lines))
        batch = wait_final(a, create_batch(a, file_id, owner="a").id)
        assert batch.status == "completed", batch
        assert batch.output_file_id is not None
        # B makes objects of its own: its lists are not empty, they just do not hold A's.
        b_file = upload(b, jsonl([chat_line("b-0", f"{marker} from b")]))
        b_batch = create_batch(b, b_file).id

        attempts: list[tuple[str, Callable[[], object]]] = [
            ("files.retrieve", lambda: b.files.retrieve(file_id)),
            ("files.content", lambda: b.files.content(file_id)),
            ("files.delete", lambda: b.files.delete(file_id)),
            ("output files.content", lambda: b.files.content(str(batch.output_file_id))),
            ("batches.retrieve", lambda: b.batches.retrieve(batch.id)),
            ("batches.cancel", lambda: b.batches.cancel(batch.id)),
            ("batches.create", lambda: create_batch(b, file_id)),
        ]
        for name, call in attempts:
            with pytest.raises(openai.NotFoundError):
                call()
                pytest.fail(f"key B could use A's object through {name}")

        b_files = {listed.id for listed in b.files.list().data}
        b_batches = {listed.id for listed in b.batches.list(limit=100).data}
        assert b_file in b_files and b_batch in b_batches
        assert not b_files & {file_id, batch.output_file_id}
        assert batch.id not in b_batches

        a_files = {listed.id for listed in a.files.list().data}
        assert {file_id, batch.output_file_id} <= a_files and b_file not in a_files
        a_batches = {listed.id for listed in a.batches.list(limit=100).data}
        assert batch.id in a_batches and b_batch not in a_batches
        assert len(file_lines(a, batch.output_file_id)) == 3

        # The master key sees everyone's.
        assert master.files.retrieve(file_id).id == file_id
        assert master.batches.retrieve(batch.id).status == "completed"
        assert {batch.id, b_batch} <= {listed.id for listed in master.batches.list(limit=100).data}
        assert {file_id, b_file} <= {listed.id for listed in master.files.list().data}
        assert len(file_lines(master, batch.output_file_id)) == 3

        # Nothing B tried changed A's objects.
        assert a.files.retrieve(file_id).id == file_id
        assert a.batches.retrieve(batch.id).status == "completed"
        assert wait_final(b, b_batch).status == "completed"


# --- cancel -------------------------------------------------------------------------------------------


def test_cancel_stops_a_running_batch_and_answers_every_line(
    gateways: Gateways, upstream: Upstream, sqlite_url: str, marker: str
) -> None:
    gateway = gateways(batch_config(upstream, sqlite_url, concurrency=2))
    total = 40  # 2 at a time, 500 ms each: about 10 s if it were left to run
    lines = [chat_line(f"slow-{n}", f"{marker} slow {n}", model="slower-test") for n in range(total)]
    with gateway.client() as client:
        batch_id = create_batch(client, upload(client, jsonl(lines))).id
        wait_for(
            client,
            batch_id,
            lambda b: b.request_counts is not None and b.request_counts.completed >= 2,
            what="two completed lines",
        )
        cancelling = client.batches.cancel(batch_id)
        assert cancelling.status == "cancelling" and cancelling.cancelling_at is not None
        assert client.batches.retrieve(batch_id).status in ("cancelling", "cancelled")
        assert client.batches.cancel(batch_id).status in ("cancelling", "cancelled")  # asked again: fine

        batch = wait_final(client, batch_id, timeout=30)
        assert batch.status == "cancelled", batch
        assert batch.cancelled_at is not None and batch.completed_at is None
        assert batch.request_counts is not None
        counts = batch.request_counts
        assert counts.total == total
        assert 2 <= counts.completed < total

        output, errors = answers(client, batch)
        assert set(output) | set(errors) == {f"slow-{n}" for n in range(total)}
        assert counts.completed == len(output)
        assert all(line["response"]["status_code"] == 200 for line in output.values())
        unrun = [line for line in errors.values() if line["response"] is None]
        assert unrun, "no line was left unrun"
        assert {line["error"]["code"] for line in unrun} == {"batch_cancelled"}
        # The job stopped sending: not every line reached the upstream.
        sent = {entry["body"]["messages"][0]["content"] for entry in upstream.requests_with(f"{marker} slow")}
        assert len(sent) < total

        # A finished batch cannot be cancelled.
        done = wait_final(client, create_batch(client, upload(client, jsonl(lines[:1]))).id)
        assert done.status == "completed"
        with pytest.raises(openai.ConflictError):
            client.batches.cancel(done.id)
        assert client.batches.retrieve(done.id).status == "completed"
        assert client.batches.cancel(batch_id).status == "cancelled"


# --- a gateway killed mid-job -------------------------------------------------------------------------


def _kill_mid_job_and_resume(
    first: GatewayProcess,
    next_gateway: Callable[[], GatewayProcess],
    upstream: Upstream,
    marker: str,
    total: int,
) -> None:
    """Create a job on ``first`` and SIGKILL it once part of the job is stored; the gateway that
    ``next_gateway()`` starts (before the kill, or after it, killing ``first`` itself) must finish the job
    with exactly one answer per line."""
    lines = [chat_line(f"line-{n}", f"{marker} line {n}", model="slow-test") for n in range(total)]
    with first.client() as client:
        batch_id = create_batch(client, upload(client, jsonl(lines))).id
        running = wait_for(
            client,
            batch_id,
            lambda b: b.request_counts is not None and b.request_counts.completed >= total // 3,
            what="a third of its lines stored",
        )
    assert running.request_counts is not None
    stored_before_kill = running.request_counts.completed
    assert running.status == "in_progress" and stored_before_kill < total, running
    second = next_gateway()
    first.proc.kill()
    first.proc.wait(timeout=10)

    with second.client() as client:
        batch = wait_final(client, batch_id)
        assert batch.status == "completed", batch
        assert batch.request_counts is not None
        counts = batch.request_counts
        assert (counts.total, counts.completed, counts.failed) == (total, total, 0)
        output, errors = answers(client, batch)
    assert not errors
    assert set(output) == {f"line-{n}" for n in range(total)}
    for number in range(total):
        body = output[f"line-{number}"]["response"]["body"]
        assert body["choices"][0]["message"]["content"] == f"Echo: {marker} line {number}"
    # Resumed, not redone: the lines stored before the kill did not run again (only those in flight or
    # not yet written at the kill did).
    sent = upstream.requests_with(f"{marker} line")
    assert total <= len(sent) < total + stored_before_kill, (len(sent), stored_before_kill)


def test_a_gateway_killed_mid_job_is_resumed_by_the_next_one(
    gateways: Gateways, upstream: Upstream, sqlite_url: str, marker: str
) -> None:
    config = batch_config(upstream, sqlite_url, concurrency=4)
    first = gateways(config)

    def restart() -> GatewayProcess:
        # Only one process on the SQLite file at a time: the next one starts once the first is dead.
        first.proc.kill()
        first.proc.wait(timeout=10)
        return gateways(config)

    _kill_mid_job_and_resume(first, restart, upstream, marker, total=90)


def test_a_replica_takes_over_the_job_of_a_killed_one_on_postgres(
    gateways: Gateways, upstream: Upstream, postgres_url: str, marker: str
) -> None:
    config = batch_config(upstream, postgres_url, concurrency=4)
    first = gateways(config)

    def second_replica() -> GatewayProcess:
        # Started beside the first, mid-job: the job is the first's while its lease holds.
        second = gateways(config)
        with second.client() as client:
            assert [job.status for job in client.batches.list(limit=100).data] == ["in_progress"]
        return second

    _kill_mid_job_and_resume(first, second_replica, upstream, marker, total=90)


# --- bad input ----------------------------------------------------------------------------------------


def batch_rows(database_url: str) -> dict[str, int]:
    """How many rows each batch table of a SQLite database holds (read beside the running gateway)."""
    path = database_url.removeprefix("sqlite:///")
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)) as db:
        tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {
            table: int(db.execute(f'SELECT count(*) FROM "{table}"').fetchone()[0])
            for table in tables
            if table.startswith("batch_")
        }


def test_bad_inputs_are_refused_with_their_line_numbers(
    gateways: Gateways, upstream: Upstream, sqlite_url: str, marker: str
) -> None:
    # Over the store's piece size (1 MB): a refused upload has had a piece stored, which must go again.
    limit = 1_200_000
    gateway = gateways(batch_config(upstream, sqlite_url, max_file_bytes=limit))
    good = json.dumps(chat_line("good-1", f"{marker} good"))
    lines = [
        good,
        "this line is not JSON {",
        json.dumps(chat_line("twice", f"{marker} first")),
        json.dumps(chat_line("twice", f"{marker} again")),
        json.dumps({**chat_line("legacy", f"{marker} legacy"), "url": "/v1/completions"}),
        json.dumps(chat_line("good-2", f"{marker} good")),
    ]
    with gateway.client() as client:
        file_id = upload(client, "\n".join(lines).encode() + b"\n")
        batch = wait_final(client, create_batch(client, file_id).id)
        assert batch.status == "failed", batch
        assert batch.failed_at is not None and batch.output_file_id is None
        assert batch.errors is not None and batch.errors.data
        by_line = {error.line: error for error in batch.errors.data}
        assert set(by_line) == {2, 4, 5}, batch.errors
        assert "JSON" in str(by_line[2].message)
        assert "duplicate" in str(by_line[4].message) and "line 3" in str(by_line[4].message)
        assert "/v1/completions" in str(by_line[5].message)
        assert not upstream.requests_with(marker), "a line of an invalid input was sent"

        with pytest.raises(openai.NotFoundError):
            create_batch(client, "file-does-not-exist")
        with pytest.raises(openai.BadRequestError):
            client.batches.create(input_file_id=file_id, endpoint="/v1/completions", completion_window="24h")

        before, rows_before = {listed.id for listed in client.files.list().data}, batch_rows(sqlite_url)
        assert file_id in before
        filler = json.dumps(chat_line("big", "x" * 1000)).encode() + b"\n"
        # Just over the limit (refused as it streams in), and far over it (refused by its Content-Length).
        for size in (limit + 20_000, limit + 200_000):
            data = filler * (size // len(filler))
            assert len(data) > limit
            with pytest.raises(openai.APIStatusError) as refused:
                client.files.create(file=("big.jsonl", data, "application/jsonl"), purpose="batch")
            assert refused.value.status_code == 413, refused.value
        assert {listed.id for listed in client.files.list().data} == before
        assert batch_rows(sqlite_url) == rows_before, "a refused upload left rows behind"
        # Up to the limit is fine.
        fits = filler * (limit // len(filler))
        assert client.files.retrieve(upload(client, fits, "fits.jsonl")).bytes == len(fits)

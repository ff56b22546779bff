"""The Files and Batches service and its worker, on the in-memory job store and the mock provider:
the job state machine, ownership, cancel, budget stops and resuming after another replica died."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from llmgate import Gateway
from llmgate.batch.jobs import BatchJobs
from llmgate.batch.worker import Worker
from llmgate.config import Settings
from llmgate.core.caller import Caller
from llmgate.core.errors import Conflict, InvalidRequest, NotFound, Overloaded
from llmgate.state.jobs.ports import BatchJob, ItemResult
from llmgate.state.ports import StateUnavailable, UsageRecord

ADMIN = Caller(name="master", admin=True)
WAIT_S = 20.0


class Upload:
    """A multipart upload as the server hands it over."""

    def __init__(
        self, body: bytes, *, purpose: str | None = "batch", filename: str | None = "in.jsonl"
    ) -> None:
        self._fields = {} if purpose is None else {"purpose": purpose}
        self._filename = filename
        self._body = body

    @property
    def fields(self) -> Mapping[str, str]:
        return self._fields

    @property
    def filename(self) -> str | None:
        return self._filename

    async def start(self) -> None:
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self._body), 1000):
            yield self._body[start : start + 1000]


def settings(latency_ms: float = 0.0, **batch: Any) -> Settings:
    return Settings.model_validate(
        {
            "storage": {"database": "memory"},
            "providers": {"sim": {"type": "mock", "mock": {"latency_ms": latency_ms}}},
            "models": [{"name": "fast", "deployments": [{"provider": "sim", "model": "echo"}]}],
            "batch": {"worker": False, "lease_seconds": 1, "poll_seconds": 0.05, **batch},
        }
    )


def jsonl(count: int, *, model: str = "fast", start: int = 0) -> bytes:
    rows = [
        {
            "custom_id": f"row-{n}",
            "method": "POST",
            "url": "/v1/chat/completions",
            "body": {"model": model, "messages": [{"role": "user", "content": f"line {n}"}], "max_tokens": 5},
        }
        for n in range(start, start + count)
    ]
    return b"".join(json.dumps(row).encode() + b"\n" for row in rows)


async def person(gw: Gateway, name: str, **limits: Any) -> Caller:
    """The caller of a new virtual key."""
    _, secret = await gw.keys.create({"name": name, **limits})
    return await gw.authenticate(secret)


async def submit(gw: Gateway, body: bytes, caller: Caller) -> BatchJob:
    file = await gw.batch_jobs.upload(caller, Upload(body))
    return await gw.batch_jobs.create(
        caller, {"input_file_id": file.id, "endpoint": "/v1/chat/completions", "completion_window": "24h"}
    )


async def until(gw: Gateway, job_id: str, *statuses: str) -> BatchJob:
    async def poll() -> BatchJob:
        while True:
            job = await gw.batch_jobs.job(ADMIN, job_id)
            if job.status in statuses:
                return job
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), WAIT_S)


async def counted(gw: Gateway, job_id: str, at_least: int) -> None:
    """Wait until a job has at least this many answered lines."""

    async def poll() -> None:
        while True:
            if (await gw.batch_jobs.job(ADMIN, job_id)).completed >= at_least:
                return
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), WAIT_S)


async def lines_of(gw: Gateway, file_id: str | None) -> list[dict[str, Any]]:
    if file_id is None:
        return []
    _, chunks = await gw.batch_jobs.content(ADMIN, file_id)
    body = b"".join([chunk async for chunk in chunks])
    return [json.loads(line) for line in body.splitlines()]


async def records(gw: Gateway) -> list[UsageRecord]:
    state = gw.state
    assert state is not None
    await state.recorder.flush()
    return await state.database.records()


async def test_a_job_runs_from_validating_to_completed_with_its_files() -> None:
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(25) + jsonl(2, model="unknown-model", start=25), alice)
        assert job.status == "validating"
        gw.batch_worker.start()
        done = await until(gw, job.id, "completed", "failed")
        output = await lines_of(gw, done.output_file_id)
        errors = await lines_of(gw, done.error_file_id)
        usage = await records(gw)
    assert done.status == "completed"
    assert (done.total, done.completed, done.failed) == (27, 25, 2)
    assert done.in_progress_at and done.finalizing_at and done.completed_at
    assert [line["custom_id"] for line in output] == [f"row-{n}" for n in range(25)]
    assert output[3]["response"]["body"]["choices"][0]["message"]["content"] == "line 3"
    assert [line["response"]["status_code"] for line in errors] == [404, 404]
    assert {record.batch_id for record in usage} == {job.id}
    assert {record.key_id for record in usage} == {alice.key_id}
    assert len(usage) == 27


async def test_bad_input_fails_the_job_with_line_numbers_and_sends_nothing() -> None:
    body = jsonl(2) + b"not json\n" + jsonl(1) + b'{"custom_id": "x", "url": "/v1/images", "body": {}}\n'
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, body, alice)
        gw.batch_worker.start()
        failed = await until(gw, job.id, "failed", "completed")
        usage = await records(gw)
    assert failed.status == "failed" and failed.failed_at is not None
    assert [(error.code, error.line) for error in failed.errors] == [
        ("invalid_line", 3),
        ("invalid_line", 4),
        ("invalid_line", 5),
    ]
    assert "duplicate custom_id" in failed.errors[1].message
    assert usage == []


async def test_an_empty_input_and_one_over_the_line_limit_fail() -> None:
    async with Gateway(settings(max_lines=3)) as gw:
        alice = await person(gw, "alice")
        empty = await submit(gw, b"", alice)
        many = await submit(gw, jsonl(4), alice)
        gw.batch_worker.start()
        assert (await until(gw, empty.id, "failed")).errors[0].code == "empty_file"
        assert (await until(gw, many.id, "failed")).errors[0].code == "too_many_lines"


async def test_a_cancelled_job_answers_its_unrun_lines_as_cancelled() -> None:
    async with Gateway(settings(latency_ms=30, concurrency=2)) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(200), alice)
        gw.batch_worker.start()
        await counted(gw, job.id, 4)
        assert (await gw.batch_jobs.cancel(alice, job.id)).status == "cancelling"
        cancelled = await until(gw, job.id, "cancelled")
        output = await lines_of(gw, cancelled.output_file_id)
        errors = await lines_of(gw, cancelled.error_file_id)
        with pytest.raises(Conflict):
            await _cancel_completed(gw, alice)
    assert cancelled.cancelled_at is not None and cancelled.completed < 200
    assert sorted(line["custom_id"] for line in output + errors) == sorted(f"row-{n}" for n in range(200))
    assert {line["error"]["code"] for line in errors} == {"batch_cancelled"}
    assert cancelled.failed == len(errors)


async def _cancel_completed(gw: Gateway, alice: Caller) -> None:
    job = await submit(gw, jsonl(1), alice)
    await until(gw, job.id, "completed")
    await gw.batch_jobs.cancel(alice, job.id)


async def test_a_spent_budget_fails_the_job_and_answers_the_rest() -> None:
    priced = settings().model_copy(
        update={
            "models": Settings.model_validate(
                {
                    "models": [
                        {
                            "name": "fast",
                            "deployments": [
                                {
                                    "provider": "sim",
                                    "model": "echo",
                                    "price": {"input_per_mtok": 1000, "output_per_mtok": 1000},
                                }
                            ],
                        }
                    ],
                    "providers": {"sim": {"type": "mock"}},
                }
            ).models
        }
    )
    priced = Settings.model_validate({**priced.model_dump(), "server": {"master_key": "sk-master"}})
    async with Gateway(priced) as gw:
        owner = await person(gw, "tiny", budget_usd=0.1)
        job = await submit(gw, jsonl(50), owner)
        gw.batch_worker.start()
        failed = await until(gw, job.id, "failed")
        errors = await lines_of(gw, failed.error_file_id)
        output = await lines_of(gw, failed.output_file_id)
    assert failed.errors[0].code == "budget_exceeded"
    assert 0 < failed.completed < 50
    assert len(output) + len(errors) == 50
    assert {line["error"]["code"] for line in errors if line["error"]} == {"budget_exceeded"}


async def test_a_job_whose_holder_died_is_taken_over_and_resumed() -> None:
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(30), alice)
        store = await gw.batch_jobs.store()
        clock = gw.batch_worker.holder.clock
        # A replica claimed it, started it, answered lines 0-9, then died without releasing the lease.
        claimed = await store.claim("dead-replica", now=clock(), until=clock() + 0.3)
        assert claimed is not None
        from msgspec.structs import replace

        started = replace(claimed, status="in_progress", in_progress_at=clock(), total=30)
        assert await store.advance(started, "dead-replica", expect="validating")
        earlier = [
            ItemResult(n, True, json.dumps({"custom_id": f"row-{n}", "earlier": True})) for n in range(10)
        ]
        await store.record(job.id, "dead-replica", earlier, until=clock() + 0.3)
        assert await gw.batch_worker.claim_once() == 0  # the lease still holds
        await asyncio.sleep(0.35)
        gw.batch_worker.start()
        done = await until(gw, job.id, "completed")
        output = await lines_of(gw, done.output_file_id)
        usage = await records(gw)
        late = await store.record(job.id, "dead-replica", [ItemResult(11, False, "{}")], until=clock() + 9)
    assert [line["custom_id"] for line in output] == [f"row-{n}" for n in range(30)]
    assert all(line.get("earlier") for line in output[:10])
    assert len(usage) == 20  # only the lines without a result ran
    assert (done.completed, done.failed) == (30, 0)
    assert late is None  # the dead replica, back, cannot write over the new holder's work


async def test_a_restarted_gateway_resumes_a_job_on_sqlite(tmp_path: Any) -> None:
    database = f"sqlite:///{tmp_path / 'jobs.db'}"
    slow = Settings.model_validate(
        {**settings(latency_ms=20, concurrency=2).model_dump(), "storage": {"database": database}}
    )
    async with Gateway(slow) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(60), alice)
        gw.batch_worker.start()
        await counted(gw, job.id, 10)
    async with Gateway(slow) as gw:
        half = await gw.batch_jobs.job(alice, job.id)
        assert half.status == "in_progress" and 10 <= half.completed < 60
        assert half.lease_holder is None  # a clean shutdown gives the lease back
        gw.batch_worker.start()
        done = await until(gw, job.id, "completed")
        output = await lines_of(gw, done.output_file_id)
    assert sorted(line["custom_id"] for line in output) == sorted(f"row-{n}" for n in range(60))
    assert len(output) == 60


async def test_files_and_jobs_belong_to_their_key() -> None:
    async with Gateway(settings()) as gw:
        alice, bob = await person(gw, "alice"), await person(gw, "bob")
        jobs = gw.batch_jobs
        job = await submit(gw, jsonl(1), alice)
        for attempt in (
            jobs.file(bob, job.input_file_id),
            jobs.content(bob, job.input_file_id),
            jobs.delete_file(bob, job.input_file_id),
            jobs.job(bob, job.id),
            jobs.cancel(bob, job.id),
            jobs.create(
                bob,
                {
                    "input_file_id": job.input_file_id,
                    "endpoint": "/v1/chat/completions",
                    "completion_window": "24h",
                },
            ),
        ):
            with pytest.raises(NotFound):
                await attempt
        assert (await jobs.files(bob))[0] == [] and (await jobs.jobs(bob, after=None, limit=10))[0] == []
        assert [f.id for f in (await jobs.files(alice))[0]] == [job.input_file_id]
        assert [j.id for j in (await jobs.jobs(ADMIN, after=None, limit=10))[0]] == [job.id]
        assert (await jobs.file(ADMIN, job.input_file_id)).owner == alice.key_id


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"endpoint": "/v1/chat/completions", "completion_window": "24h"}, "input_file_id"),
        ({"input_file_id": "F", "endpoint": "/v1/images", "completion_window": "24h"}, "endpoint"),
        (
            {"input_file_id": "F", "endpoint": "/v1/chat/completions", "completion_window": "1h"},
            "completion_window",
        ),
        (
            {
                "input_file_id": "F",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {str(n): "v" for n in range(17)},
            },
            "metadata",
        ),
        (
            {
                "input_file_id": "F",
                "endpoint": "/v1/chat/completions",
                "completion_window": "24h",
                "metadata": {"k": 1},
            },
            "metadata",
        ),
    ],
)
async def test_a_bad_create_names_its_field(body: dict[str, Any], param: str) -> None:
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        file = await gw.batch_jobs.upload(alice, Upload(jsonl(1)))
        body = {key: file.id if value == "F" else value for key, value in body.items()}
        with pytest.raises(InvalidRequest) as raised:
            await gw.batch_jobs.create(alice, body)
    assert raised.value.param == param


async def test_uploads_need_the_batch_purpose_and_a_file_part() -> None:
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        with pytest.raises(InvalidRequest) as raised:
            await gw.batch_jobs.upload(alice, Upload(jsonl(1), purpose="fine-tune"))
        assert raised.value.param == "purpose"
        with pytest.raises(InvalidRequest):
            await gw.batch_jobs.upload(alice, Upload(jsonl(1), filename=None))
        with pytest.raises(InvalidRequest):
            await gw.batch_jobs.upload(alice, Upload(jsonl(1), purpose=None))
        assert (await gw.batch_jobs.files(alice))[0] == []


async def test_pages_of_jobs_say_whether_there_are_more() -> None:
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        made = [await submit(gw, jsonl(1), alice) for _ in range(3)]
        first, more = await gw.batch_jobs.jobs(alice, after=None, limit=2)
        rest, no_more = await gw.batch_jobs.jobs(alice, after=first[-1].id, limit=2)
        with pytest.raises(InvalidRequest):
            await gw.batch_jobs.jobs(alice, after=None, limit=101)
    assert more and not no_more
    assert {job.id for job in first + rest} == {job.id for job in made}


def test_the_worker_is_a_separate_service_the_gateway_only_holds() -> None:
    assert isinstance(Gateway(settings()).batch_worker, Worker)
    assert isinstance(Gateway(settings()).batch_jobs, BatchJobs)


async def test_a_database_blip_during_a_run_loses_no_result() -> None:
    async with Gateway(settings(latency_ms=20, concurrency=4)) as gw:
        alice = await person(gw, "alice")
        store = await gw.batch_jobs.store()
        job = await submit(gw, jsonl(60), alice)
        real, failures = store.record, [0]

        async def flaky(job_id: str, holder: str, items: Any, *, until: float) -> Any:
            if items and failures[0] < 3:  # the first three writes with results fail
                failures[0] += 1
                raise StateUnavailable("the database blinked")
            return await real(job_id, holder, items, until=until)

        store.record = flaky  # type: ignore[method-assign]
        gw.batch_worker.start()
        done = await until(gw, job.id, "completed", "failed")
        output = await lines_of(gw, done.output_file_id)
    assert failures[0] == 3
    assert (done.status, done.completed, done.total) == ("completed", 60, 60)
    assert sorted(line["custom_id"] for line in output) == sorted(f"row-{n}" for n in range(60))


async def test_the_input_of_a_running_job_cannot_be_deleted_and_its_loss_fails_the_job() -> None:
    async with Gateway(settings(latency_ms=20, concurrency=2)) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(200), alice)
        gw.batch_worker.start()
        await counted(gw, job.id, 3)
        with pytest.raises(Conflict):
            await gw.batch_jobs.delete_file(alice, job.input_file_id)
        await (await gw.batch_jobs.store()).delete_file(job.input_file_id)  # lost under the API's feet
        await gw.batch_worker.close()  # a restart: the job resumes on an input that is gone
        gw.batch_worker.start()
        done = await until(gw, job.id, "failed", "completed")
        output = await lines_of(gw, done.output_file_id)
    assert done.status == "failed" and done.errors[0].code == "input_file_missing"
    assert len(output) == done.completed >= 3


async def test_a_second_claim_by_the_same_worker_fences_out_the_first() -> None:
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(5), alice)
        store, worker = await gw.batch_jobs.store(), gw.batch_worker
        clock = worker.holder.clock
        first = await store.claim(f"{worker.holder.name}:0", now=clock(), until=clock() + 0.1)
        assert first is not None
        await asyncio.sleep(0.15)  # the first claim's lease runs out; the worker claims the job again
        assert await worker.claim_once() == 1
        stale = await store.record(
            job.id, f"{worker.holder.name}:0", [ItemResult(0, True, "{}")], until=clock() + 9
        )
        done = await until(gw, job.id, "completed")
    assert stale is None
    assert done.completed == 5


async def test_lines_must_name_the_jobs_endpoint() -> None:
    embeddings = b'{"custom_id": "e", "url": "/v1/embeddings", "body": {"model": "fast", "input": "x"}}\n'
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(2) + embeddings, alice)
        gw.batch_worker.start()
        failed = await until(gw, job.id, "failed", "completed")
    assert failed.status == "failed"
    assert [(error.line, "endpoint" in error.message) for error in failed.errors] == [(3, True)]


async def test_an_unreachable_database_is_a_503_with_retry_after() -> None:
    async with Gateway(settings()) as gw:
        store = await gw.batch_jobs.store()

        async def down(*args: Any, **kwargs: Any) -> Any:
            raise StateUnavailable("connection refused")

        store.job = down  # type: ignore[method-assign]
        with pytest.raises(Overloaded) as raised:
            await gw.batch_jobs.job(ADMIN, "batch_x")
    assert raised.value.status == 503 and raised.value.retry_after == 5


async def test_a_job_whose_work_keeps_failing_is_held_back_longer_each_time() -> None:
    async with Gateway(settings()) as gw:
        alice = await person(gw, "alice")
        job = await submit(gw, jsonl(3), alice)
        worker, store = gw.batch_worker, await gw.batch_jobs.store()

        async def broken(*args: Any, **kwargs: Any) -> Any:
            raise RuntimeError("a bug, not an upstream failure")

        gw.complete = broken  # type: ignore[method-assign]
        holds = []
        for _ in range(2):
            claimed = await store.claim("tester", now=worker.holder.clock() + 10_000, until=0)
            await store.release(job.id, "tester")  # make it claimable whatever the hold, to drive it
            assert claimed is not None
            assert await worker.claim_once() == 1
            await asyncio.gather(*worker._running)
            held = await store.job(job.id)
            assert held.lease_holder is not None and held.status == "in_progress"
            assert await worker.claim_once() == 0  # held back: not taken up again at once
            holds.append(held.lease_until - worker.holder.clock())
    assert 4 < holds[0] <= 5 and 9 < holds[1] <= 10

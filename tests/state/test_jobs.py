"""``JobStore`` conformance: memory, SQLite and PostgreSQL keep files, jobs, leases and results alike."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import msgspec
import pytest

from llmgate.state.jobs.ports import BatchJob, ItemResult, JobError, StoredFile

from .conftest import Backend

T0 = 1_700_000_000.0


def a_file(file_id: str = "file-1", owner: str | None = "key_a", at: float = T0) -> StoredFile:
    return StoredFile(id=file_id, owner=owner, purpose="batch", filename="in.jsonl", bytes=0, created_at=at)


def a_job(job_id: str = "batch_1", owner: str | None = "key_a", at: float = T0, **changes: Any) -> BatchJob:
    job = BatchJob(
        id=job_id,
        owner=owner,
        endpoint="/v1/chat/completions",
        input_file_id="file-1",
        completion_window="24h",
        status="validating",
        created_at=at,
        expires_at=at + 86_400,
        metadata={"team": "a", "odd": "é\u0000x"},
    )
    return msgspec.structs.replace(job, **changes)


async def chunks(parts: Iterable[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        await asyncio.sleep(0)
        yield part


async def body(store: Any, file_id: str) -> list[bytes]:
    return [chunk async for chunk in store.read(file_id)]


# Files


async def test_a_file_round_trips_in_its_chunks_and_counts_its_bytes(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    parts = [b'{"a": 1}\n' * 1000, b"", b"\x00\xff tail"]
    stored = await store.add_file(msgspec.structs.replace(a_file(), bytes=5), chunks(parts))
    assert stored == msgspec.structs.replace(a_file(), bytes=len(parts[0]) + len(parts[2]))
    assert await store.file("file-1") == stored
    assert await body(store, "file-1") == [parts[0], parts[2]]
    assert await body(store, "nope") == []
    assert await store.file("nope") is None


async def test_a_failed_upload_leaves_nothing_and_the_id_stays_free(jobs: Backend[Any]) -> None:
    store = await jobs.client()

    async def broken() -> AsyncIterator[bytes]:
        yield b"first part\n"
        raise ConnectionResetError("client went away")

    with pytest.raises(ConnectionResetError):
        await store.add_file(a_file(), broken())
    assert await store.file("file-1") is None
    assert await body(store, "file-1") == []
    assert await store.files(owner="key_a") == []
    await store.add_file(a_file(), chunks([b"second\n"]))
    assert await body(store, "file-1") == [b"second\n"]


async def test_a_file_written_again_under_its_id_replaces_the_old_body(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_file(a_file(), chunks([b"old\n", b"older\n"]))
    replaced = await store.add_file(a_file(), chunks([b"new\n"]))
    assert replaced.bytes == 4
    assert await body(store, "file-1") == [b"new\n"]
    assert len(await store.files(owner="key_a")) == 1


async def test_files_are_listed_per_owner_newest_first_and_deleted_whole(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_file(a_file("file-old", at=T0), chunks([b"1\n"]))
    await store.add_file(a_file("file-new", at=T0 + 5), chunks([b"2\n"]))
    await store.add_file(a_file("file-b", owner="key_b", at=T0 + 1), chunks([b"3\n"]))
    await store.add_file(a_file("file-master", owner=None, at=T0 + 2), chunks([b"4\n"]))
    assert [f.id for f in await store.files(owner="key_a")] == ["file-new", "file-old"]
    assert [f.id for f in await store.files(owner=None)] == ["file-master"]
    assert [f.id for f in await store.files(owner=None, everyone=True)] == [
        "file-new",
        "file-master",
        "file-b",
        "file-old",
    ]
    assert await store.delete_file("file-new") is True
    assert await store.delete_file("file-new") is False
    assert await store.file("file-new") is None
    assert await body(store, "file-new") == []
    assert await body(store, "file-old") == [b"1\n"]


# Jobs


async def test_a_job_round_trips_every_field(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    job = a_job(errors=(JobError(code="invalid_line", message="bad", line=3, param="body"),), total=7)
    await store.add_job(job)
    assert await store.job("batch_1") == job
    assert await store.job("nope") is None


async def test_jobs_page_newest_first_per_owner_from_a_cursor(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    for number in range(5):
        await store.add_job(a_job(f"batch_{number}", at=T0 + number))
    await store.add_job(a_job("batch_b", owner="key_b", at=T0 + 10))
    first = await store.jobs(owner="key_a", limit=2)
    assert [job.id for job in first] == ["batch_4", "batch_3"]
    rest = await store.jobs(owner="key_a", after="batch_3", limit=10)
    assert [job.id for job in rest] == ["batch_2", "batch_1", "batch_0"]
    assert await store.jobs(owner="key_a", after="batch_0") == []
    assert await store.jobs(owner="key_a", after="unknown") == []
    assert [job.id for job in await store.jobs(owner="key_b")] == ["batch_b"]
    assert [job.id for job in await store.jobs(owner=None, everyone=True, limit=2)] == ["batch_b", "batch_4"]
    assert await store.jobs(owner=None) == []


async def test_claim_takes_the_oldest_free_active_job_and_holds_it(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_job(a_job("batch_done", at=T0 - 10, status="completed"))
    await store.add_job(a_job("batch_new", at=T0 + 1, status="in_progress"))
    await store.add_job(a_job("batch_old", at=T0))
    first = await store.claim("replica-a", now=T0, until=T0 + 60)
    assert (first.id, first.lease_holder, first.lease_until) == ("batch_old", "replica-a", T0 + 60)
    second = await store.claim("replica-b", now=T0, until=T0 + 60)
    assert second.id == "batch_new"
    assert await store.claim("replica-c", now=T0 + 59, until=T0 + 119) is None
    taken_over = await store.claim("replica-c", now=T0 + 60, until=T0 + 120)
    assert (taken_over.id, taken_over.lease_holder) == ("batch_old", "replica-c")


async def test_replicas_claiming_at_once_never_share_a_job(jobs: Backend[Any]) -> None:
    for number in range(3):
        await (await jobs.client()).add_job(a_job(f"batch_{number}", at=T0 + number))
    stores = [await jobs.client() for _ in range(8)]
    claims = await asyncio.gather(
        *(store.claim(f"replica-{index}", now=T0, until=T0 + 60) for index, store in enumerate(stores))
    )
    claimed = [job.id for job in claims if job is not None]
    assert sorted(claimed) == ["batch_0", "batch_1", "batch_2"]


async def test_release_frees_the_job_for_another_replica_at_once(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_job(a_job())
    await store.claim("replica-a", now=T0, until=T0 + 60)
    await store.release("batch_1", "replica-b")  # not the holder: nothing changes
    assert await store.claim("replica-b", now=T0, until=T0 + 60) is None
    await store.release("batch_1", "replica-a")
    assert (await store.job("batch_1")).lease_holder is None
    assert (await store.claim("replica-b", now=T0, until=T0 + 60)).lease_holder == "replica-b"


async def test_advance_writes_progress_only_for_the_holder_from_the_expected_status(
    jobs: Backend[Any],
) -> None:
    store = await jobs.client()
    await store.add_job(a_job())
    held = await store.claim("replica-a", now=T0, until=T0 + 60)
    started = msgspec.structs.replace(
        held, status="in_progress", in_progress_at=T0 + 1, total=3, completed=99, owner="someone else"
    )
    assert await store.advance(started, "replica-b", expect="validating") is False
    assert await store.advance(started, "replica-a", expect="in_progress") is False
    assert (await store.job("batch_1")).status == "validating"
    assert await store.advance(started, "replica-a", expect="validating") is True
    stored = await store.job("batch_1")
    assert (stored.status, stored.in_progress_at, stored.total) == ("in_progress", T0 + 1, 3)
    assert (stored.completed, stored.owner, stored.lease_holder) == (0, "key_a", "replica-a")
    done = msgspec.structs.replace(
        stored,
        status="completed",
        output_file_id="file-out",
        error_file_id="file-err",
        completed_at=T0 + 9,
        errors=(JobError(code="x", message="y"),),
    )
    assert await store.advance(done, "replica-a", expect="in_progress") is True
    final = await store.job("batch_1")
    assert (final.status, final.output_file_id, final.error_file_id) == ("completed", "file-out", "file-err")
    assert final.errors == (JobError(code="x", message="y"),)


async def test_cancel_moves_only_running_jobs_to_cancelling(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_job(a_job("batch_run", status="in_progress"))
    await store.add_job(a_job("batch_check"))
    await store.add_job(a_job("batch_done", status="completed"))
    cancelled = await store.cancel("batch_run", now=T0 + 5)
    assert (cancelled.status, cancelled.cancelling_at) == ("cancelling", T0 + 5)
    assert (await store.cancel("batch_check", now=T0 + 6)).status == "cancelling"
    assert (await store.cancel("batch_done", now=T0 + 7)).status == "completed"
    assert (await store.cancel("batch_run", now=T0 + 8)).cancelling_at == T0 + 5
    assert await store.cancel("nope", now=T0) is None
    assert (await store.claim("replica-a", now=T0, until=T0 + 1)).status == "cancelling"


# Item results


async def test_record_keeps_each_lines_first_result_and_counts_it_once(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_job(a_job(status="in_progress"))
    await store.claim("replica-a", now=T0, until=T0 + 60)
    first = [ItemResult(0, True, '{"a": 0}'), ItemResult(1, False, '{"e": 1}'), ItemResult(2, True, "ü")]
    job = await store.record("batch_1", "replica-a", first, until=T0 + 120)
    assert (job.completed, job.failed, job.lease_until) == (2, 1, T0 + 120)
    again = [ItemResult(1, True, "late success"), ItemResult(3, False, '{"e": 3}')]
    job = await store.record("batch_1", "replica-a", again, until=T0 + 130)
    assert (job.completed, job.failed) == (2, 2)
    assert await store.done_lines("batch_1", after=-1, limit=10) == [0, 1, 2, 3]
    assert await store.done_lines("batch_1", after=1, limit=1) == [2]
    assert await store.items("batch_1", ok=True, after=-1, limit=10) == [first[0], first[2]]
    assert await store.items("batch_1", ok=False, after=1, limit=10) == [ItemResult(3, False, '{"e": 3}')]
    renewed = await store.record("batch_1", "replica-a", [], until=T0 + 200)
    assert renewed.lease_until == T0 + 200
    await store.drop_items("batch_1")
    assert await store.done_lines("batch_1", after=-1, limit=10) == []
    assert (await store.job("batch_1")).completed == 2


async def test_a_replica_that_lost_its_lease_writes_no_result(jobs: Backend[Any]) -> None:
    store, other = await jobs.client(), await jobs.client()
    await store.add_job(a_job(status="in_progress"))
    await store.claim("replica-a", now=T0, until=T0 + 60)
    await other.claim("replica-b", now=T0 + 61, until=T0 + 121)
    assert await store.record("batch_1", "replica-a", [ItemResult(0, True, "x")], until=T0 + 200) is None
    assert await store.done_lines("batch_1", after=-1, limit=10) == []
    job = await other.job("batch_1")
    assert (job.completed, job.lease_holder, job.lease_until) == (0, "replica-b", T0 + 121)
    assert await store.record("nope", "replica-a", [], until=T0) is None


async def test_many_results_page_through_in_order(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_job(a_job(status="in_progress"))
    await store.claim("replica-a", now=T0, until=T0 + 60)
    items = [ItemResult(line, line % 3 != 0, f"line {line}") for line in range(2_500)]
    await store.record("batch_1", "replica-a", items[1_000:], until=T0 + 60)
    job = await store.record("batch_1", "replica-a", items[:1_000], until=T0 + 60)
    assert job.completed + job.failed == 2_500
    assert job.failed == len([item for item in items if not item.ok])
    lines: list[int] = []
    after = -1
    while page := await store.done_lines("batch_1", after=after, limit=700):
        lines += page
        after = page[-1]
    assert lines == list(range(2_500))
    failed = await store.items("batch_1", ok=False, after=-1, limit=5_000)
    assert [item.line for item in failed] == list(range(0, 2_500, 3))


async def test_a_finished_job_takes_no_more_results(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_job(a_job(status="in_progress"))
    held = await store.claim("replica-a", now=T0, until=T0 + 60)
    done = msgspec.structs.replace(held, status="completed", completed_at=T0 + 1)
    assert await store.advance(done, "replica-a", expect="in_progress")
    await store.drop_items("batch_1")
    assert await store.record("batch_1", "replica-a", [ItemResult(0, True, "late")], until=T0 + 90) is None
    assert await store.done_lines("batch_1", after=-1, limit=10) == []
    assert (await store.job("batch_1")).completed == 0


async def test_a_file_is_in_use_while_an_active_job_reads_it(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    await store.add_file(a_file(), chunks([b"x\n"]))
    assert await store.in_use("file-1") is False
    await store.add_job(a_job(status="in_progress"))
    assert await store.in_use("file-1") is True
    await store.add_job(a_job("batch_2", status="completed", input_file_id="file-2"))
    assert await store.in_use("file-2") is False
    held = await store.claim("replica-a", now=T0, until=T0 + 60)
    assert await store.advance(
        msgspec.structs.replace(held, status="failed"), "replica-a", expect="in_progress"
    )
    assert await store.in_use("file-1") is False


async def test_files_page_by_cursor_and_purpose(jobs: Backend[Any]) -> None:
    store = await jobs.client()
    for number in range(5):
        await store.add_file(a_file(f"file-{number}", at=T0 + number), chunks([b"x\n"]))
    output = msgspec.structs.replace(a_file("file-out", at=T0 + 9), purpose="batch_output")
    await store.add_file(output, chunks([b"y\n"]))
    first = await store.files(owner="key_a", limit=2)
    assert [f.id for f in first] == ["file-out", "file-4"]
    rest = await store.files(owner="key_a", after="file-4", limit=10)
    assert [f.id for f in rest] == ["file-3", "file-2", "file-1", "file-0"]
    inputs = await store.files(owner="key_a", purpose="batch", after="file-3", limit=2)
    assert [f.id for f in inputs] == ["file-2", "file-1"]
    assert [f.id for f in await store.files(owner="key_a", purpose="batch_output")] == ["file-out"]
    assert await store.files(owner="key_a", after="unknown") == []

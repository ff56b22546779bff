"""The background worker that runs the jobs of ``/v1/batches``, on every replica that has it on.

A worker claims a job (a lease in the database, renewed while it works), checks its input (``validating``
-> ``in_progress`` or ``failed``), runs the lines the database has no result for yet (``in_progress``),
then writes the output and error files (``finalizing`` -> ``completed``, ``cancelled``, ``expired`` or
``failed``). Results are written in small batches, fenced by the lease, so a job picked up after a
restart or by another replica resumes where it stopped: only lines in flight at the stop run again.
Each line is an ordinary call made as the job's key, filling at most ``batch.limit_share`` of its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import msgspec

from llmgate.batch.finish import CANCELLED, Holder, LeaseLost, Stop, finalize, record, stop_of, unanswered
from llmgate.batch.jobs import BatchJobs
from llmgate.batch.lines import MAX_PROBLEMS, Checker, split_lines
from llmgate.batch.local import Calls, LocalSender, check_body
from llmgate.batch.runner import RetryPolicy, Runner
from llmgate.core.caller import ANONYMOUS, Caller
from llmgate.core.errors import AuthenticationError, GatewayError, NotFound
from llmgate.state.jobs.ports import BatchJob, ItemResult, JobError, JobStore
from llmgate.state.ports import StateUnavailable

log = logging.getLogger("llmgate.batch")
FLUSH_ITEMS = 200
FLUSH_SECONDS = 1.0

CallerFor = Callable[[str], Awaitable[Caller]]
"""The caller a key id stands for now (raises ``AuthenticationError`` once it is revoked)."""


class Worker:
    """Claims and runs jobs until closed."""

    def __init__(
        self, jobs: BatchJobs, calls: Calls, caller_for: CallerFor, *, clock: Callable[[], float] = time.time
    ) -> None:
        self.jobs = jobs
        self.settings = jobs.settings
        self.calls = calls
        self.caller_for = caller_for
        name = f"{os.uname().nodename}:{os.getpid()}:{os.urandom(4).hex()}"
        self.holder = Holder(name, clock, jobs.settings.lease_seconds)
        self._running: set[asyncio.Task[None]] = set()
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start looking for jobs in the background."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop().create_task(self._claiming())

    async def close(self) -> None:
        """Stop: lines in flight are abandoned (they run again on resume), leases are given back."""
        tasks = [task for task in (self._loop, *self._running) if task is not None]
        self._loop = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _claiming(self) -> None:
        while True:
            try:
                await self.claim_once()
            except StateUnavailable as error:
                log.warning("batch jobs: the database is unreachable: %s", error)
            except Exception:
                log.exception("batch jobs: claiming failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.jobs.created.wait(), self.settings.poll_seconds)
            self.jobs.created.clear()

    async def claim_once(self) -> int:
        """Claim jobs up to ``jobs_at_once`` and start them; how many were started."""
        store, started = await self.jobs.store(), 0
        while len(self._running) < self.settings.jobs_at_once:
            job = await store.claim(self.holder.name, now=self.holder.clock(), until=self.holder.until())
            if job is None:
                break
            task = asyncio.get_running_loop().create_task(self.work(job))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            started += 1
        return started

    async def work(self, job: BatchJob) -> None:
        """One claimed job, from its stored status to the end (or until the lease is lost)."""
        store = await self.jobs.store()
        try:
            await self._advance(store, job)
        except LeaseLost:
            log.info("batch %s: another replica took it over", job.id)
        except Exception:
            log.exception("batch %s: the worker failed; it will be taken up again", job.id)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(store.release(job.id, self.holder.name))

    async def _advance(self, store: JobStore, job: BatchJob) -> None:
        stop: Stop | None = stop_of(job) if job.status in ("cancelling", "finalizing") else None
        caller = ANONYMOUS
        if stop is None:
            try:
                caller = await self._caller(job)
            except GatewayError as error:
                stop = Stop(error.code, error.message, "failed")
        if stop is None and job.status == "validating":
            validated = await self._validate(store, job, caller)
            if validated is None:
                return
            job = validated
        if stop is None and job.status == "in_progress":
            stop, job = await Run(self, store, job, caller).run()
        await finalize(store, job, self.holder, stop)

    async def _caller(self, job: BatchJob) -> Caller:
        owner = ANONYMOUS if job.owner is None else await self.caller_for(job.owner)
        return replace(owner, batch_id=job.id, limit_share=self.settings.limit_share)

    async def _validate(self, store: JobStore, job: BatchJob, caller: Caller) -> BatchJob | None:
        """Check every line: ``in_progress`` with its total, or ``failed`` with the problems."""
        if await store.file(job.input_file_id) is None:
            missing = JobError(code="input_file_missing", message="The input file was deleted.")
            await self._fail(store, job, (missing,))
            return None
        checker = Checker(check_body(self.calls))
        async for raw in split_lines(store.read(job.input_file_id)):
            checker.feed(raw)
            if checker.lines % 1000 == 0:
                await asyncio.sleep(0)  # checking bodies is CPU work: let the event loop breathe
        problems = checker.finish()
        errors: tuple[JobError, ...] = tuple(
            JobError(code="invalid_line", message=p.message, line=p.line) for p in problems
        )
        if checker.lines == 0:
            errors = (JobError(code="empty_file", message="The input file has no lines."),)
        elif checker.lines > self.settings.max_lines:
            limit = self.settings.max_lines
            errors = (
                JobError(
                    code="too_many_lines",
                    message=f"The input has {checker.lines} lines; the limit is {limit}.",
                ),
            )
        if errors:
            more = checker.problem_count - len(problems)
            if more > 0:
                errors += (JobError(code="invalid_line", message=f"{more} more lines have problems."),)
            await self._fail(store, job, errors[: MAX_PROBLEMS + 1])
            return None
        started = msgspec.structs.replace(
            job, status="in_progress", in_progress_at=self.holder.clock(), total=checker.lines
        )
        if not await store.advance(started, self.holder.name, expect="validating"):
            await self._reread(store, job)
            return None
        return started

    async def _fail(self, store: JobStore, job: BatchJob, errors: tuple[JobError, ...]) -> None:
        failed = msgspec.structs.replace(job, status="failed", failed_at=self.holder.clock(), errors=errors)
        if not await store.advance(failed, self.holder.name, expect=job.status):
            await self._reread(store, job)

    async def _reread(self, store: JobStore, job: BatchJob) -> None:
        current = await store.job(job.id)
        if current is None or current.lease_holder != self.holder.name:
            raise LeaseLost(job.id)
        if current.status == "cancelling":  # cancelled meanwhile: finish it as cancelled
            await finalize(store, current, self.holder, CANCELLED)


@dataclass
class Run:
    """One pass over a job's input: the lines without a result, through the runner."""

    worker: Worker
    store: JobStore
    job: BatchJob
    caller: Caller
    stop: Stop | None = None
    lost: bool = False
    _pending: list[ItemResult] = field(default_factory=list)
    _flushed: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    async def run(self) -> tuple[Stop | None, BatchJob]:
        """Run until every line has a result or something stops the job."""
        settings = self.worker.settings
        runner = Runner(
            LocalSender(self.worker.calls, caller=self.caller),
            concurrency=settings.concurrency,
            retry=RetryPolicy(retries=settings.retries),
        )
        self._flushed = self.worker.holder.clock()
        consume = asyncio.ensure_future(self._consume(runner))
        beat = asyncio.ensure_future(self._beat(consume))
        try:
            await asyncio.wait([consume])
        finally:
            beat.cancel()
            if not consume.done():
                consume.cancel()
            await asyncio.gather(beat, consume, return_exceptions=True)
            if not self.lost:
                await asyncio.shield(self._flush())
        if self.lost:
            raise LeaseLost(self.job.id)
        if consume.cancelled() and self.stop is None:
            raise asyncio.CancelledError
        error = None if consume.cancelled() else consume.exception()
        if error is not None:
            raise error
        if self.stop is None and runner.stopped is not None:
            self.stop = Stop("budget_exceeded", runner.stopped, "failed")
        return self.stop, self.job

    async def _consume(self, runner: Runner) -> None:
        async with contextlib.aclosing(runner.results(unanswered(self.store, self.job))) as results:
            async for result in results:
                self._pending.append(ItemResult(result.index, result.ok, result.line(self.job.id).decode()))
                now = self.worker.holder.clock()
                if len(self._pending) >= FLUSH_ITEMS or now - self._flushed >= FLUSH_SECONDS:
                    await self._flush()

    async def _beat(self, consume: asyncio.Future[None]) -> None:
        """Renew the lease and look for a cancel, an expiry or a revoked key, a few times per lease."""
        worker = self.worker
        while True:
            await asyncio.sleep(worker.settings.lease_seconds / 4)
            try:
                await self._flush(always=True)
            except LeaseLost:
                self.lost = True
                consume.cancel()
                return
            if self.job.status == "cancelling":
                self.stop = CANCELLED
            elif worker.holder.clock() >= self.job.expires_at:
                self.stop = Stop(
                    "batch_expired", "The batch did not finish within its 24h window.", "expired"
                )
            elif self.job.owner is not None:
                try:
                    await worker.caller_for(self.job.owner)
                except (AuthenticationError, NotFound) as error:
                    self.stop = Stop(error.code, error.message, "failed")
            if self.stop is not None:
                consume.cancel()
                return

    async def _flush(self, *, always: bool = False) -> None:
        async with self._lock:
            items, self._pending = self._pending, []
            if not items and not always:
                return
            self.job = await record(self.store, self.job, self.worker.holder, items)
            self._flushed = self.worker.holder.clock()

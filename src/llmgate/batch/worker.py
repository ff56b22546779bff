"""The background worker that runs the jobs of ``/v1/batches``, on every replica that has it on.

A worker claims a job (a lease in the database, renewed while it works), checks its input (``validating``
-> ``in_progress`` or ``failed``), runs the lines the database has no result for yet (``in_progress``),
then writes the output and error files (``finalizing`` -> ``completed``, ``cancelled``, ``expired`` or
``failed``). Results are written in small batches, fenced by the lease, so a job picked up after a
restart or by another replica resumes where it stopped: only lines in flight at the stop run again.
Each claim holds a lease token of its own, so not even a second claim by the same process can write
over the first. Each line is an ordinary call made as the job's key (re-read at every heartbeat: a key
changed or revoked meanwhile applies), filling at most ``batch.limit_share`` of its limits.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace

import msgspec

from llmgate.batch.finish import CANCELLED, Holder, LeaseLost, Stop, finalize, record, stop_of, unanswered
from llmgate.batch.jobs import BatchJobs
from llmgate.batch.lines import MAX_PROBLEMS, BodyCheck, Checker, split_lines
from llmgate.batch.local import Calls, LocalSender, check_body
from llmgate.batch.runner import RetryPolicy, Runner
from llmgate.core.caller import ANONYMOUS, Caller
from llmgate.core.errors import AuthenticationError, GatewayError, NotFound
from llmgate.state.jobs.ports import BatchJob, ItemResult, JobError, JobStore
from llmgate.state.ports import StateUnavailable

log = logging.getLogger("llmgate.batch")
FLUSH_ITEMS = 200
FLUSH_SECONDS = 1.0
RENEW_EVERY_LINES = 10_000
"""Validation renews the lease this often (a long input takes a while to check)."""
RUN_PASSES = 3
"""Passes over the input before a job whose lines still lack results is given up to another claim."""
CRASH_HOLD_S = 5.0
MAX_CRASH_HOLD_S = 600.0
"""A job whose work failed waits 5 s, then 10, 20... up to 10 minutes before it is taken up again."""
EXPIRED = Stop("batch_expired", "The batch did not finish within its 24h window.", "expired")
INPUT_MISSING = Stop("input_file_missing", "The input file was deleted while the batch ran.", "failed")

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
        """This worker's name and clock; each claim holds a token of its own (``name:N``)."""
        self._claims = itertools.count(1)
        self.failures: dict[str, int] = {}
        """Jobs whose work failed in this process, and how many times in a row."""
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
            holder = replace(self.holder, name=f"{self.holder.name}:{next(self._claims)}")
            job = await store.claim(holder.name, now=holder.clock(), until=holder.until())
            if job is None:
                break
            task = asyncio.get_running_loop().create_task(Working(self, store, holder).work(job))
            self._running.add(task)
            task.add_done_callback(self._running.discard)
            started += 1
        return started

    def caller_of(self, owner: Caller, job: BatchJob) -> Caller:
        """The caller a job's lines are made as: its key's, tagged, at the batch share of its limits."""
        return replace(owner, batch_id=job.id, limit_share=self.settings.limit_share)


@dataclass
class Working:
    """One claimed job, worked under one lease token."""

    worker: Worker
    store: JobStore
    holder: Holder

    async def work(self, job: BatchJob) -> None:
        """From the job's stored status to the end (or until the lease is lost). A job whose work
        fails is held back before anyone takes it up again, longer after each failure here."""
        hold = 0.0
        try:
            await self._advance(job)
            self.worker.failures.pop(job.id, None)
        except LeaseLost:
            log.info("batch %s: another claim took it over", job.id)
        except Exception:
            failures = self.worker.failures[job.id] = self.worker.failures.get(job.id, 0) + 1
            hold = min(CRASH_HOLD_S * 2 ** (failures - 1), MAX_CRASH_HOLD_S)
            log.exception("batch %s: the worker failed; it is taken up again in %.0f s", job.id, hold)
        finally:
            with contextlib.suppress(Exception):
                if hold:  # keep the lease a while: no replica retries at once
                    await asyncio.shield(
                        self.store.record(job.id, self.holder.name, [], until=self.holder.clock() + hold)
                    )
                else:
                    await asyncio.shield(self.store.release(job.id, self.holder.name))

    async def _advance(self, job: BatchJob) -> None:
        stop: Stop | None = stop_of(job) if job.status in ("cancelling", "finalizing") else None
        if stop is None and self.holder.clock() >= job.expires_at:
            stop = EXPIRED
        caller = ANONYMOUS
        if stop is None:
            try:
                caller = await self._caller(job)
            except GatewayError as error:
                stop = Stop(error.code, error.message, "failed")
        if stop is None and job.status == "validating":
            validated = await self._validate(job)
            if validated is None:
                return
            job = validated
        if stop is None and job.status == "in_progress":
            stop, job = await self._run(job, caller)
        await finalize(self.store, job, self.holder, stop)

    async def _run(self, job: BatchJob, caller: Caller) -> tuple[Stop | None, BatchJob]:
        """Pass over the input until every line has a result or something stops the job."""
        for _ in range(RUN_PASSES):
            stop, job = await Run(self, job, caller).run()
            if stop is not None or job.completed + job.failed >= job.total:
                return stop, job
            if await self.store.file(job.input_file_id) is None:
                return INPUT_MISSING, job
        raise RuntimeError(f"{job.total - job.completed - job.failed} lines still have no result")

    async def _caller(self, job: BatchJob) -> Caller:
        owner = ANONYMOUS if job.owner is None else await self.worker.caller_for(job.owner)
        return self.worker.caller_of(owner, job)

    async def _validate(self, job: BatchJob) -> BatchJob | None:
        """Check every line: ``in_progress`` with its total, or ``failed`` with the problems."""
        if await self.store.file(job.input_file_id) is None:
            missing = JobError(code="input_file_missing", message="The input file was deleted.")
            await self._fail(job, (missing,))
            return None
        limit = self.worker.settings.max_lines
        checker = Checker(_endpoint_check(job.endpoint, check_body(self.worker.calls)))
        async for raw in split_lines(self.store.read(job.input_file_id)):
            checker.feed(raw)
            if checker.lines > limit:
                break
            if checker.lines % 1000 == 0:
                await asyncio.sleep(0)  # checking bodies is CPU work: let the event loop breathe
            if checker.lines % RENEW_EVERY_LINES == 0:
                job = await record(self.store, job, self.holder, [])
        problems = await asyncio.to_thread(checker.finish)  # a sort over every line: off the loop
        errors: tuple[JobError, ...] = tuple(
            JobError(code="invalid_line", message=p.message, line=p.line) for p in problems
        )
        if checker.lines == 0:
            errors = (JobError(code="empty_file", message="The input file has no lines."),)
        elif checker.lines > limit:
            message = f"The input has more than {limit} lines (batch.max_lines)."
            errors = (JobError(code="too_many_lines", message=message),)
        if errors:
            more = checker.problem_count - len(problems)
            if more > 0 and checker.lines <= limit:
                errors += (JobError(code="invalid_line", message=f"{more} more lines have problems."),)
            await self._fail(job, errors[: MAX_PROBLEMS + 1])
            return None
        started = msgspec.structs.replace(
            job, status="in_progress", in_progress_at=self.holder.clock(), total=checker.lines
        )
        if not await self.store.advance(started, self.holder.name, expect="validating"):
            await self._reread(job)
            return None
        return started

    async def _fail(self, job: BatchJob, errors: tuple[JobError, ...]) -> None:
        failed = msgspec.structs.replace(job, status="failed", failed_at=self.holder.clock(), errors=errors)
        if not await self.store.advance(failed, self.holder.name, expect=job.status):
            await self._reread(job)

    async def _reread(self, job: BatchJob) -> None:
        current = await self.store.job(job.id)
        if current is None or current.lease_holder != self.holder.name:
            raise LeaseLost(job.id)
        if current.status == "cancelling":  # cancelled meanwhile: finish it as cancelled
            await finalize(self.store, current, self.holder, CANCELLED)


def _endpoint_check(endpoint: str, check: BodyCheck) -> BodyCheck:
    """Every line must name the job's endpoint (as OpenAI requires), and its body must parse."""

    def checked(url: str, body: dict[str, object]) -> None:
        if url != endpoint:
            raise ValueError(f"url {url} is not the batch's endpoint {endpoint}")
        check(url, body)

    return checked


@dataclass
class Run:
    """One pass over a job's input: the lines without a result, through the runner."""

    work: Working
    job: BatchJob
    caller: Caller
    stop: Stop | None = None
    lost: bool = False
    _pending: list[ItemResult] = field(default_factory=list)
    _flushed: float = 0.0
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    _sender: LocalSender | None = None

    async def run(self) -> tuple[Stop | None, BatchJob]:
        """Run until every line has a result or something stops the job."""
        settings = self.work.worker.settings
        self._sender = LocalSender(self.work.worker.calls, caller=self.caller)
        runner = Runner(
            self._sender, concurrency=settings.concurrency, retry=RetryPolicy(retries=settings.retries)
        )
        self._flushed = self.work.holder.clock()
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
        store = self.work.store
        async with contextlib.aclosing(runner.results(unanswered(store, self.job))) as results:
            async for result in results:
                self._pending.append(ItemResult(result.index, result.ok, result.line(self.job.id).decode()))
                now = self.work.holder.clock()
                if len(self._pending) >= FLUSH_ITEMS or now - self._flushed >= FLUSH_SECONDS:
                    await self._flush()

    async def _beat(self, consume: asyncio.Future[None]) -> None:
        """Renew the lease and look for a cancel, an expiry or a changed key, a few times per lease. A
        database that does not answer is tried again at the next beat (the results wait meanwhile)."""
        worker = self.work.worker
        while True:
            await asyncio.sleep(worker.settings.lease_seconds / 4)
            try:
                await self._flush(always=True)
                self.stop = await self._look()
            except LeaseLost:
                self.lost = True
                consume.cancel()
                return
            except Exception as error:  # the database or the key store is down: the next beat tries again
                log.warning("batch %s: heartbeat failed: %s", self.job.id, error)
            if self.stop is not None:
                consume.cancel()
                return

    async def _look(self) -> Stop | None:
        """Why the job must stop now, if it must; the sender takes the key as it is now otherwise."""
        if self.job.status == "cancelling":
            return CANCELLED
        if self.work.holder.clock() >= self.job.expires_at:
            return EXPIRED
        if self.job.owner is not None and self._sender is not None:
            try:
                owner = await self.work.worker.caller_for(self.job.owner)
            except (AuthenticationError, NotFound) as error:
                return Stop(error.code, error.message, "failed")
            self._sender.caller = self.work.worker.caller_of(owner, self.job)
        return None

    async def _flush(self, *, always: bool = False) -> None:
        async with self._lock:
            items, self._pending = self._pending, []
            if not items and not always:
                return
            try:
                # Shielded: a cancel does not abandon results already paid for. Should the write fail,
                # the items go back to be written again (recording is idempotent per line).
                self.job = await asyncio.shield(record(self.work.store, self.job, self.work.holder, items))
            except BaseException:
                self._pending[:0] = items
                raise
            self._flushed = self.work.holder.clock()

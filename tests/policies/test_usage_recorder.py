"""UsageRecorder: records queued in memory, written in batches, kept while the database is down."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from llmgate.policies.usage import BATCH_SIZE, CLOSE_ROUNDS, UsageRecorder
from llmgate.state.ports import StateUnavailable, UsageRecord

SLOW = 3600.0  # a flush interval the tests never reach: they flush by hand or through the size trigger


def record(number: int) -> UsageRecord:
    return UsageRecord(
        time=1_700_000_000.0 + number,
        request_id=f"req_{number}",
        key_id="key_1",
        model_group="chat",
        provider="mock",
        deployment="mock/echo",
        upstream_model="echo",
        prompt_tokens=10,
        completion_tokens=5,
        cached_tokens=0,
        reasoning_tokens=0,
        cost_usd=0.001,
        latency_ms=1.0,
        ttft_ms=None,
        status=200,
        error_type=None,
        cache=None,
        attempts=1,
        stream=False,
    )


class FakeLedger:
    """A ledger that keeps each batch it is given, or fails like an unreachable database."""

    def __init__(self) -> None:
        self.batches: list[list[UsageRecord]] = []
        self.down = False
        self.failed = 0

    async def write(self, records: Sequence[UsageRecord]) -> None:
        await asyncio.sleep(0)
        if self.down:
            self.failed += 1
            raise StateUnavailable("connection refused")
        self.batches.append(list(records))

    @property
    def ids(self) -> list[str]:
        return [r.request_id for batch in self.batches for r in batch]


async def turns(until: Callable[[], object], limit: int = 200) -> None:
    """Let the event loop run until ``until()`` is true (bounded; no wall-clock sleeps)."""
    for _ in range(limit):
        if until():
            return
        await asyncio.sleep(0)
    raise AssertionError("the condition never held")


async def idle(recorder: UsageRecorder) -> None:
    """Let the background writer handle a pending size-triggered wake-up (see the xfail test below)."""
    for _ in range(20):
        await asyncio.sleep(0)


async def test_records_are_written_in_batches_on_flush() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    for number in range(BATCH_SIZE + 20):
        recorder.record(record(number))
    await recorder.flush()
    assert [len(batch) for batch in ledger.batches] == [BATCH_SIZE, 20]
    assert ledger.ids == [f"req_{n}" for n in range(BATCH_SIZE + 20)]
    assert recorder.pending == 0
    await idle(recorder)
    await recorder.close()


async def test_a_full_batch_is_written_without_waiting_for_the_interval() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    for number in range(BATCH_SIZE - 1):
        recorder.record(record(number))
    for _ in range(20):
        await asyncio.sleep(0)
    assert ledger.batches == []  # nothing is written per request
    recorder.record(record(BATCH_SIZE))
    await turns(lambda: ledger.batches)
    assert [len(batch) for batch in ledger.batches] == [BATCH_SIZE]
    await idle(recorder)
    await recorder.close()


async def test_the_background_writer_flushes_every_interval() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=0.001)  # type: ignore[arg-type]
    recorder.record(record(1))
    recorder.record(record(2))
    assert ledger.batches == []  # queued, not written on the request path
    for _ in range(500):
        if ledger.batches:
            break
        await asyncio.sleep(0.001)
    assert ledger.ids == ["req_1", "req_2"]
    await recorder.close()


async def test_close_writes_what_is_left() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    for number in range(3):
        recorder.record(record(number))
    await recorder.close()
    assert ledger.ids == ["req_0", "req_1", "req_2"]
    assert recorder.pending == 0


async def test_records_wait_while_the_database_is_down_then_are_written() -> None:
    ledger = FakeLedger()
    ledger.down = True
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    for number in range(5):
        recorder.record(record(number))
    await recorder.flush()
    assert ledger.failed == 1
    assert recorder.pending == 5
    assert recorder.degraded
    assert recorder.last_error == "connection refused"
    recorder.record(record(5))
    await recorder.flush()
    assert recorder.pending == 6 and ledger.batches == []

    ledger.down = False
    await recorder.flush()
    assert ledger.ids == [f"req_{n}" for n in range(6)]
    assert recorder.pending == 0
    assert not recorder.degraded
    await recorder.close()


async def test_a_failed_batch_is_not_duplicated_or_lost_across_batches() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    for number in range(BATCH_SIZE * 2 + 1):
        recorder.record(record(number))
    original = ledger.write
    calls = 0

    async def second_batch_fails(records: Sequence[UsageRecord]) -> None:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise StateUnavailable("went away")
        await original(records)

    ledger.write = second_batch_fails  # type: ignore[method-assign]
    await recorder.flush()
    assert len(ledger.ids) == BATCH_SIZE and recorder.pending == BATCH_SIZE + 1
    await recorder.flush()
    assert ledger.ids == [f"req_{n}" for n in range(BATCH_SIZE * 2 + 1)]
    await idle(recorder)
    await recorder.close()


async def test_the_queue_is_bounded() -> None:
    ledger = FakeLedger()
    ledger.down = True
    recorder = UsageRecorder(ledger, flush_interval=SLOW, max_queued=3)  # type: ignore[arg-type]
    for number in range(5):
        recorder.record(record(number))
    assert recorder.pending == 3
    assert recorder.dropped == 2
    ledger.down = False
    await recorder.close()
    assert ledger.ids == ["req_0", "req_1", "req_2"]


async def test_close_with_the_database_down_does_not_raise() -> None:
    ledger = FakeLedger()
    ledger.down = True
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    recorder.record(record(1))
    await recorder.close()
    assert recorder.pending == 1 and recorder.degraded


async def test_close_right_after_a_full_batch_returns() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    recorder.record(record(0))
    await asyncio.sleep(0)  # the background writer is now waiting for the interval or a full batch
    for number in range(1, BATCH_SIZE):
        recorder.record(record(number))  # the last one sets the wake event
    closing = asyncio.ensure_future(recorder.close())
    done, _ = await asyncio.wait({closing}, timeout=0.3)
    if not done:
        closing.cancel()  # cancels the writer a second time, which ends it
        await asyncio.wait({closing}, timeout=1.0)
    assert done, "UsageRecorder.close() did not return"
    assert ledger.ids == [f"req_{n}" for n in range(BATCH_SIZE)]


class SlowAckLedger(FakeLedger):
    """A database that has committed a batch but whose reply is still on its way (as under load)."""

    def __init__(self) -> None:
        super().__init__()
        self.writing = asyncio.Event()

    async def write(self, records: Sequence[UsageRecord]) -> None:
        self.batches.append(list(records))  # committed on the server...
        self.writing.set()
        await asyncio.sleep(0.05)  # ...and the acknowledgement takes a moment


async def test_close_during_a_write_does_not_write_the_batch_twice() -> None:
    ledger = SlowAckLedger()
    recorder = UsageRecorder(ledger, flush_interval=0.001)  # type: ignore[arg-type]
    for number in range(3):
        recorder.record(record(number))
    await asyncio.wait_for(ledger.writing.wait(), 5)  # the background writer is mid-write
    await recorder.close()
    assert ledger.ids == ["req_0", "req_1", "req_2"]


async def test_records_arriving_during_a_write_wait_for_the_next_flush() -> None:
    # Under steady load, chasing the queue would write a transaction every few records.
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    original = ledger.write

    async def write_while_requests_finish(records: Sequence[UsageRecord]) -> None:
        if len(ledger.batches) < 4:
            recorder.record(record(100 + len(ledger.batches)))
        await original(records)

    ledger.write = write_while_requests_finish  # type: ignore[method-assign]
    for number in range(3):
        recorder.record(record(number))
    await recorder.flush()
    assert [len(batch) for batch in ledger.batches] == [3]
    assert recorder.pending == 1
    await recorder.flush()
    assert [len(batch) for batch in ledger.batches] == [3, 1]
    await recorder.close()  # writes what arrived during the last writes too
    assert recorder.pending == 0
    assert ledger.ids == ["req_0", "req_1", "req_2", "req_100", "req_101", "req_102", "req_103"]


async def test_close_is_bounded_when_records_keep_arriving() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)  # type: ignore[arg-type]
    original = ledger.write

    async def endless(records: Sequence[UsageRecord]) -> None:
        recorder.record(record(1000 + len(ledger.batches)))
        await original(records)

    ledger.write = endless  # type: ignore[method-assign]
    recorder.record(record(0))
    await asyncio.wait_for(recorder.close(), timeout=5)
    assert recorder.pending == 1
    assert len(ledger.batches) == 1 + CLOSE_ROUNDS  # the background writer's last flush, then the rounds


async def test_status_shows_the_writers_lag_and_what_a_crash_would_lose() -> None:
    ledger = FakeLedger()
    recorder = UsageRecorder(ledger, flush_interval=SLOW)
    assert recorder.status()["pending"] == 0 and recorder.status()["lag_s"] == 0.0
    recorder.record(record(1))
    recorder.record(record(2))
    waiting = recorder.status()
    assert (waiting["pending"], waiting["written"], waiting["last_write_s_ago"]) == (2, 0, None)
    assert waiting["lag_s"] >= 0 and waiting["flush_interval_s"] == SLOW
    ledger.down = True
    await recorder.flush()
    assert recorder.status()["pending"] == 2 and recorder.status()["last_error"] == "connection refused"
    ledger.down = False
    await recorder.flush()
    written = recorder.status()
    assert (written["pending"], written["written"], written["lag_s"]) == (0, 2, 0.0)
    assert written["last_write_s_ago"] is not None and written["last_error"] is None
    await recorder.close()

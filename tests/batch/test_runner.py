"""The runner: bounded concurrency, lazy input, retries with backoff, rate-limit pauses, budget stops."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator

from llmgate.batch.lines import BatchLine
from llmgate.batch.results import BatchResult, Outcome
from llmgate.batch.runner import RetryPolicy, Runner

OK = Outcome(200, b"{}")


class Script:
    """A sender whose answers per custom_id are scripted (then 200), with time that moves on sleep."""

    def __init__(self, answers: dict[str, list[Outcome]] | None = None, *, delay: float = 0.0) -> None:
        self.answers = answers or {}
        self.delay = delay
        self.sent: list[str] = []
        self.in_flight = self.most_in_flight = 0
        self.now = 0.0
        self.sleeps: list[float] = []

    async def send(self, line: BatchLine) -> Outcome:
        self.sent.append(line.custom_id)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(self.delay)
            queue = self.answers.get(line.custom_id, [])
            return queue.pop(0) if queue else OK
        finally:
            self.in_flight -= 1

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def clock(self) -> float:
        return self.now

    def runner(self, concurrency: int = 4, retries: int = 3) -> Runner:
        return Runner(
            self,
            concurrency=concurrency,
            retry=RetryPolicy(retries=retries, base_delay=1.0, max_delay=8.0),
            sleep=self.sleep,
            clock=self.clock,
        )


def lines(count: int) -> list[BatchLine]:
    return [BatchLine(index, f"id-{index}", "/v1/chat/completions", {}) for index in range(count)]


async def run(runner: Runner, source: object) -> list[BatchResult]:
    return [result async for result in runner.results(source)]  # type: ignore[arg-type]


async def test_every_line_gets_one_result_and_concurrency_is_bounded() -> None:
    script = Script(delay=0.001)
    results = await run(script.runner(concurrency=5), lines(40))
    assert sorted(result.index for result in results) == list(range(40))
    assert script.most_in_flight == 5
    assert all(result.ok and result.attempts == 1 for result in results)


async def test_the_input_is_pulled_only_as_slots_free() -> None:
    script = Script(delay=0.001)
    pulled = 0

    def source() -> Iterator[BatchLine]:
        nonlocal pulled
        for line in lines(1_000):
            pulled += 1
            yield line

    runner = script.runner(concurrency=3)
    seen = 0
    async for _ in runner.results(source()):
        seen += 1
        assert pulled <= seen + 3 + 1
        if seen == 10:
            break
    assert pulled < 20


async def test_retryable_failures_back_off_and_succeed() -> None:
    flaky = [Outcome(500), Outcome(0, code="connection_error"), Outcome(503)]
    script = Script({"id-0": list(flaky)})
    [result] = await run(script.runner(), lines(1))
    assert result.ok and result.attempts == 4
    assert script.sent == ["id-0"] * 4
    # Exponential with jitter: 1, 2, 4 seconds, each scaled into [0.5, 1].
    assert len(script.sleeps) == 3
    for slept, base in zip(script.sleeps, [1.0, 2.0, 4.0], strict=True):
        assert base / 2 <= slept <= base


async def test_a_line_that_keeps_failing_is_a_result_with_its_last_error() -> None:
    script = Script({"id-0": [Outcome(500)] * 3 + [Outcome(502, b'{"error": {}}')]})
    [result] = await run(script.runner(retries=3), lines(1))
    assert (result.ok, result.status_code, result.attempts) == (False, 502, 4)


async def test_a_client_error_is_not_retried() -> None:
    script = Script({"id-0": [Outcome(400, b'{"error": {"message": "bad"}}')]})
    [result] = await run(script.runner(), lines(1))
    assert (result.status_code, result.attempts, script.sleeps) == (400, 1, [])


async def test_a_rate_limit_pauses_every_worker_until_it_resets() -> None:
    script = Script({"id-0": [Outcome(429, retry_after=30.0)]}, delay=0.001)
    runner = script.runner(concurrency=4, retries=0)
    results = await run(runner, lines(8))
    assert all(result.ok for result in results)  # a 429 wait is not a retry: retries=0 still succeeds
    assert script.now >= 30.0
    first = next(result for result in results if result.custom_id == "id-0")
    assert first.attempts == 2
    # Lines started after the 429 were held until it reset: they were sent once time passed 30 s.
    assert len(script.sent) == 9


async def test_a_429_without_retry_after_backs_off_like_a_failure() -> None:
    script = Script({"id-0": [Outcome(429), Outcome(429)]})
    [result] = await run(script.runner(retries=1), lines(1))
    assert (result.status_code, result.attempts) == (429, 2)


async def test_a_spent_budget_stops_the_run_and_leaves_lines_unanswered() -> None:
    quota = Outcome(429, code="insufficient_quota", message="Budget of key k spent")
    script = Script({"id-3": [quota]}, delay=0.001)
    runner = script.runner(concurrency=2)
    results = await run(runner, lines(100))
    assert runner.stopped == "Budget of key k spent"
    assert "id-3" not in {result.custom_id for result in results}
    assert len(results) < 10
    assert len(script.sent) <= len(results) + 2
    assert Counter(script.sent)["id-3"] == 1


async def test_progress_is_reported_for_each_result() -> None:
    seen: list[int] = []
    script = Script({"id-1": [Outcome(404)]})
    runner = Runner(script, concurrency=2, on_progress=lambda p: seen.append(p.done), total=3)
    results = await run(runner, lines(3))
    assert seen == [1, 2, 3]
    assert runner.progress.failed == 1 and len(results) == 3


async def test_a_line_that_never_gets_an_answer_stops_the_run_instead_of_failing() -> None:
    lost = Outcome(0, code="connection_error", message="connection refused")
    script = Script({"id-0": [lost] * 4})
    runner = script.runner(concurrency=1, retries=3)
    results = await run(runner, lines(5))
    assert runner.stopped == "no answer: connection refused"
    assert results == [] and script.sent == ["id-0"] * 4


async def test_a_refused_key_stops_the_run_instead_of_failing_every_line() -> None:
    refused = Outcome(401, b"{}", code="invalid_api_key", message="Invalid API key.")
    script = Script({"id-0": [refused]})
    runner = script.runner(concurrency=1)
    assert await run(runner, lines(5)) == []
    assert runner.stopped == "Invalid API key." and script.sent == ["id-0"]


async def test_a_request_too_large_for_any_wait_fails_at_once() -> None:
    too_large = Outcome(429, b"{}", code="request_too_large", retry_after=None)
    script = Script({"id-0": [too_large]})
    [result] = await run(script.runner(), lines(1))
    assert (result.status_code, result.attempts, script.sleeps) == (429, 1, [])

"""``gw.batch(requests)``: many calls through the gateway, with bounded concurrency, retries and
progress. ``async for result in gw.batch(...)`` takes results as they finish; ``await gw.batch(...)``
returns them all in input order with a summary. A line that fails is a result, never an exception."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable, Generator, Iterable, Mapping, Sized
from dataclasses import dataclass
from typing import Any

import msgspec

from llmgate.batch.lines import BatchLine, BodyCheck, LineProblem, parse_line
from llmgate.batch.local import CHAT, Calls, LocalSender, check_body
from llmgate.batch.results import BatchResult, Outcome, Progress
from llmgate.batch.runner import RetryPolicy, Runner, each
from llmgate.core.caller import ANONYMOUS, Caller
from llmgate.core.error_table import encode_error

Request = Mapping[str, Any]
"""A chat body (``model``, ``messages``...), an embeddings body (``model``, ``input``), or an OpenAI
batch line (``custom_id``, ``url``, ``body``)."""


@dataclass(frozen=True, slots=True)
class BatchReport:
    """Every result in input order, and the run's figures."""

    results: list[BatchResult]
    progress: Progress
    stopped: str | None
    """Why the run stopped before the end (a spent budget); those requests have no result."""

    @property
    def failed(self) -> list[BatchResult]:
        """The results that are errors."""
        return [result for result in self.results if not result.ok]


class BatchRun:
    """A batch being run: iterate it for results as they finish, or await it for the report."""

    def __init__(
        self,
        calls: Calls,
        requests: Iterable[Request] | AsyncIterable[Request],
        *,
        concurrency: int = 8,
        retries: int = 5,
        on_progress: Callable[[Progress], None] | None = None,
        caller: Caller = ANONYMOUS,
        total: int | None = None,
    ) -> None:
        self._calls = calls
        self._requests = requests
        self.runner = Runner(
            LocalSender(calls, caller=caller),
            concurrency=concurrency,
            retry=RetryPolicy(retries=retries),
            on_progress=on_progress,
            total=total if total is not None else _length(requests),
        )
        self._started = False

    @property
    def progress(self) -> Progress:
        """The figures so far."""
        return self.runner.progress

    @property
    def stopped(self) -> str | None:
        """Why the run stopped early, if it did."""
        return self.runner.stopped

    def __aiter__(self) -> AsyncIterator[BatchResult]:
        if self._started:
            raise RuntimeError("a batch runs once: call gw.batch again for another run")
        self._started = True
        return self._results()

    async def _results(self) -> AsyncIterator[BatchResult]:
        refused: list[BatchResult] = []
        lines = self._lines(refused)
        async for result in self.runner.results(lines):
            while refused:
                yield self._count(refused.pop())
            yield result
        while refused:
            yield self._count(refused.pop())

    def _count(self, result: BatchResult) -> BatchResult:
        self.runner.count(result)
        return result

    async def _lines(self, refused: list[BatchResult]) -> AsyncIterator[BatchLine]:
        check = check_body(self._calls)
        index = 0
        async for request in each(self._requests):
            parsed = _line_of(request, index, check)
            if isinstance(parsed, LineProblem):
                refused.append(_refusal(request, index, parsed))
            else:
                yield parsed
            index += 1

    async def report(self) -> BatchReport:
        """Run to the end: every result in input order."""
        results = [result async for result in self]
        results.sort(key=lambda result: result.index)
        return BatchReport(results, self.progress, self.stopped)

    def __await__(self) -> Generator[Any, None, BatchReport]:
        return self.report().__await__()


def _line_of(request: Request, index: int, check: BodyCheck) -> BatchLine | LineProblem:
    if not isinstance(request, Mapping):
        return LineProblem(index + 1, "a request must be a mapping (a chat body or a batch line)")
    if "body" in request and "custom_id" in request:
        line = {"method": "POST", **request}
    else:
        url = CHAT if "input" not in request or "messages" in request else "/v1/embeddings"
        line = {"custom_id": str(index), "method": "POST", "url": url, "body": dict(request)}
    try:
        raw = msgspec.json.encode(line)
    except (TypeError, msgspec.EncodeError) as error:
        return LineProblem(index + 1, f"not JSON-serialisable: {error}")
    return parse_line(raw, index, check)


def _refusal(request: Any, index: int, problem: LineProblem) -> BatchResult:
    custom_id = problem.custom_id
    if custom_id is None and isinstance(request, Mapping):
        given = request.get("custom_id")
        custom_id = given if isinstance(given, str) else None
    body = encode_error(problem.message, "invalid_request_error", None, "invalid_request")
    outcome = Outcome(400, body, code="invalid_request", message=problem.message)
    return BatchResult(index, custom_id or str(index), outcome, 0)


def _length(requests: object) -> int | None:
    return len(requests) if isinstance(requests, Sized) else None

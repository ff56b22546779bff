"""``gw.batch`` and ``SyncGateway.batch``: every request an ordinary call, per-item errors as results."""

from __future__ import annotations

import asyncio
from typing import Any

from llmgate import Gateway, SyncGateway
from llmgate.batch import Progress
from llmgate.config import Settings
from llmgate.state.ports import UsageRecord


def settings(**extra: Any) -> Settings:
    flaky = {"type": "mock", "mock": {"failure_rate": 0.3, "seed": 7, "failure": {"status": 503}}}
    return Settings.model_validate(
        {
            "storage": {"database": "memory"},
            "providers": {"sim": {"type": "mock"}, "flaky": flaky},
            "models": [
                {"name": "fast", "deployments": [{"provider": "sim", "model": "echo"}]},
                {"name": "flaky", "deployments": [{"provider": "flaky", "model": "echo"}]},
            ],
            "routing": {"retries": 0},
            **extra,
        }
    )


def chat(text: str, model: str = "fast") -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}]}


async def records(gw: Gateway) -> list[UsageRecord]:
    state = gw.state
    assert state is not None
    await state.recorder.flush()
    return await state.database.records()


async def test_await_gives_every_result_in_input_order_with_one_tagged_record_each() -> None:
    async with Gateway(settings()) as gw:
        report = await gw.batch([chat(f"q{n}") for n in range(20)], concurrency=4, batch_id="batch_lib")
        stored = await records(gw)
    assert [result.index for result in report.results] == list(range(20))
    assert [result.body()["choices"][0]["message"]["content"] for result in report.results] == [
        f"q{n}" for n in range(20)
    ]
    assert report.progress.done == 20 and report.failed == [] and report.stopped is None
    assert len(stored) == 20
    assert {record.batch_id for record in stored} == {"batch_lib"}


async def test_retryable_failures_are_retried_not_failed() -> None:
    async with Gateway(settings()) as gw:
        report = await gw.batch([chat(f"q{n}", "flaky") for n in range(30)], concurrency=8, retries=20)
        stored = await records(gw)
    assert all(result.ok for result in report.results)
    assert report.progress.retried > 0
    assert len(stored) == 30 + report.progress.retried  # one record per call, failed attempts included
    assert len({record.batch_id for record in stored}) == 1


async def test_bad_requests_and_unknown_models_are_results_not_exceptions() -> None:
    requests: list[Any] = [chat("fine"), {"model": "fast"}, chat("x", model="nope"), "not a mapping"]
    async with Gateway(settings()) as gw:
        report = await gw.batch(requests)
    codes = [result.status_code for result in report.results]
    assert codes[0] == 200
    assert codes[1] == 400 and codes[3] == 400
    assert codes[2] == 404
    assert report.results[2].body()["error"]["param"] == "model"
    assert len(report.failed) == 3


async def test_batch_lines_and_embeddings_bodies_are_accepted() -> None:
    requests = [
        {"custom_id": "c1", "url": "/v1/chat/completions", "body": chat("hi")},
        {"custom_id": "e1", "url": "/v1/embeddings", "body": {"model": "sim:echo", "input": ["a", "b"]}},
        {"model": "sim:echo", "input": "plain embeddings body"},
    ]
    async with Gateway(settings()) as gw:
        report = await gw.batch(requests)
    assert [result.custom_id for result in report.results] == ["c1", "e1", "2"]
    assert [result.status_code for result in report.results] == [200, 200, 200], report.results
    assert len(report.results[1].body()["data"]) == 2
    assert report.results[2].body()["object"] == "list"


async def test_async_for_yields_results_as_they_finish_with_progress() -> None:
    seen: list[Progress] = []
    async with Gateway(settings()) as gw:
        run = gw.batch((chat(f"q{n}") for n in range(10)), concurrency=3, on_progress=seen.append)
        results = [result async for result in run]
    assert sorted(result.index for result in results) == list(range(10))
    assert seen[-1].done == 10 and seen[-1].total is None
    assert run.progress.prompt_tokens > 0


async def test_async_iterables_of_requests_are_read_lazily() -> None:
    pulled = 0

    async def requests() -> Any:
        nonlocal pulled
        for n in range(1_000):
            pulled += 1
            yield chat(f"q{n}")
            await asyncio.sleep(0)

    async with Gateway(settings()) as gw:
        run = gw.batch(requests(), concurrency=2)
        async for result in run:
            if result.index >= 5:
                break
    assert pulled < 20


async def test_a_spent_budget_stops_the_run(tmp_path: Any) -> None:
    priced = settings(
        models=[
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
        server={"master_key": "sk-master"},
    )
    async with Gateway(priced) as gw:
        _, secret = await gw.keys.create({"name": "tiny", "budget_usd": 0.1})
        caller = await gw.authenticate(secret)
        requests = [{**chat(f"question {n}"), "max_tokens": 5} for n in range(40)]
        report = await gw.batch(requests, concurrency=1, caller=caller)
    assert report.stopped is not None and "budget" in report.stopped.lower()
    assert 0 < len(report.results) < 40


def test_the_sync_gateway_runs_a_batch() -> None:
    with SyncGateway(settings()) as gw:
        report = gw.batch([chat("a"), chat("b")], concurrency=2)
    assert [result.body()["choices"][0]["message"]["content"] for result in report.results] == ["a", "b"]

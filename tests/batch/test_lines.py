"""Batch input lines: each checked on its own, a whole input checked in one pass (duplicates included)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from llmgate.batch.lines import (
    MAX_PROBLEMS,
    BatchLine,
    Checker,
    DoneSet,
    LineProblem,
    LineSplitter,
    parse_line,
    split_lines,
)


def line(custom_id: Any = "a", url: Any = "/v1/chat/completions", **extra: Any) -> str:
    data = {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": "m", "messages": []}}
    data.update(extra)
    return json.dumps(data)


def test_a_good_line_parses_with_its_index() -> None:
    parsed = parse_line(line("row-1"), 4)
    assert parsed == BatchLine(4, "row-1", "/v1/chat/completions", {"model": "m", "messages": []})
    embeddings = parse_line(line("e", url="/v1/embeddings", body={"model": "m", "input": "x"}), 0)
    assert isinstance(embeddings, BatchLine) and embeddings.url == "/v1/embeddings"


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "not a JSON object"),
        (json.dumps({"url": "/v1/chat/completions", "body": {}}), "no custom_id"),
        (line(""), "no custom_id"),
        (line(7), "no custom_id"),
        (line("x" * 513), "longer than 512"),
        (line(method="GET"), "method must be POST"),
        (line(url="/v1/images/generations"), "unsupported url '/v1/images/generations'"),
        (line(url=None), "unsupported url None"),
        (line(body="text"), "body must be a JSON object"),
        (line(body={"model": "m", "messages": [], "stream": True}), "stream is not supported"),
        ("[" * 100_000, "not valid JSON"),
    ],
)
def test_each_problem_is_named_with_its_one_based_line(raw: str, says: str) -> None:
    problem = parse_line(raw, 9)
    assert isinstance(problem, LineProblem)
    assert problem.line == 10
    assert says in problem.message
    assert str(problem).startswith("line 10: ")
    assert len(problem.message) <= 200


def test_a_body_the_gateway_refuses_is_a_problem_before_any_spend() -> None:
    def check(url: str, body: dict[str, Any]) -> None:
        raise ValueError(f"messages: required for {url}")

    problem = parse_line(line("c"), 0, check)
    assert problem == LineProblem(1, "messages: required for /v1/chat/completions", "c")


def test_the_checker_finds_duplicates_empty_lines_and_bad_lines_in_line_order() -> None:
    checker = Checker()
    for raw in [line("a"), line("b"), "", line("a"), "nope", line("b", url="/bad"), line("c")]:
        checker.feed(raw)
    problems = checker.finish()
    assert [(p.line, p.message.split(" (")[0]) for p in problems] == [
        (3, "empty line"),
        (4, "duplicate custom_id"),
        (5, "not valid JSON"),
        (6, "unsupported url '/bad': use /v1/chat/completions or /v1/embeddings"),
        (6, "duplicate custom_id"),
    ]
    assert "first on line 1" in problems[1].message
    assert "first on line 2" in problems[4].message
    assert checker.lines == 7


def test_the_checker_reports_the_first_problems_and_counts_the_rest() -> None:
    checker = Checker()
    for _ in range(MAX_PROBLEMS + 50):
        checker.feed("{")
    assert len(checker.finish()) == MAX_PROBLEMS
    assert checker.problem_count == MAX_PROBLEMS + 50


def test_many_distinct_ids_have_no_duplicates() -> None:
    checker = Checker()
    for number in range(50_000):
        checker.feed(line(f"id-{number}"))
    assert checker.finish() == []
    checker = Checker()
    for number in range(50_000):
        checker.feed(line(f"id-{number % 49_999}"))
    [duplicate] = checker.finish()
    assert duplicate == LineProblem(50_000, "duplicate custom_id (first on line 1)")


def test_done_set_answers_membership_by_digest() -> None:
    from llmgate.batch.lines import digest

    done = DoneSet(b"".join(digest(f"id-{n}") for n in range(1000)))
    assert len(done) == 1000
    assert "id-0" in done and "id-999" in done
    assert "id-1000" not in done and 5 not in done
    assert "x" not in DoneSet(b"")


def test_the_splitter_cuts_lines_across_blocks() -> None:
    splitter = LineSplitter()
    out: list[bytes] = []
    for block in [b"ab", b"c\r\nde", b"f\n\ng", b"h" * 10, b"i"]:
        out += splitter.feed(block)
    assert out == [b"abc", b"def", b""]
    assert splitter.end() == b"g" + b"h" * 10 + b"i"
    assert splitter.end() is None


async def test_split_lines_yields_a_last_line_without_its_end() -> None:
    async def chunks() -> Any:
        for block in [b"one\ntw", b"o\nthree"]:
            yield block

    assert [raw async for raw in split_lines(chunks())] == [b"one", b"two", b"three"]

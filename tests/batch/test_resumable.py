"""A batch file run: checked before any spend, appended line by line, resumed after a kill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmgate.batch.lines import BatchLine
from llmgate.batch.results import Outcome
from llmgate.batch.resumable import BatchFile, InputProblems, OutputBusy


class Echo:
    """Answers every line with its custom_id; counts what it was sent."""

    def __init__(self, stop_at: str | None = None) -> None:
        self.sent: list[str] = []
        self.stop_at = stop_at

    async def send(self, line: BatchLine) -> Outcome:
        self.sent.append(line.custom_id)
        if line.custom_id == self.stop_at:
            return Outcome(429, code="insufficient_quota", message="budget spent")
        return Outcome(200, json.dumps({"echo": line.custom_id}).encode(), "req")


def write_input(path: Path, count: int) -> Path:
    rows = [
        {"custom_id": f"id-{n}", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}
        for n in range(count)
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def answered(output: Path) -> list[str]:
    return [json.loads(line)["custom_id"] for line in output.read_text().splitlines()]


async def test_a_run_answers_every_line_once(tmp_path: Path) -> None:
    source, output = write_input(tmp_path / "in.jsonl", 50), tmp_path / "out.jsonl"
    batch = BatchFile(source, output)
    plan = batch.open()
    assert (plan.lines, plan.done, plan.left) == (50, 0, 50)
    finished = await batch.run(Echo(), concurrency=7)
    assert finished.complete and finished.written == 50
    assert sorted(answered(output)) == sorted(f"id-{n}" for n in range(50))
    line = json.loads(output.read_text().splitlines()[0])
    assert line["response"]["body"] == {"echo": line["custom_id"]}


async def test_a_rerun_after_a_kill_skips_answered_lines_and_cuts_a_torn_one(tmp_path: Path) -> None:
    source, output = write_input(tmp_path / "in.jsonl", 20), tmp_path / "out.jsonl"
    first = BatchFile(source, output)
    first.open()
    await first.run(Echo(), concurrency=3)
    kept = output.read_text().splitlines()[:8]
    output.write_text("\n".join(kept) + "\n" + kept[8 - 1][:25])  # killed in the middle of a write
    sender = Echo()
    again = BatchFile(source, output)
    assert again.open().done == 8
    finished = await again.run(sender, concurrency=3)
    assert finished.complete and finished.written == 12
    assert len(sender.sent) == 12 and not set(sender.sent) & {json.loads(k)["custom_id"] for k in kept}
    assert sorted(answered(output)) == sorted(f"id-{n}" for n in range(20))
    assert output.read_text().endswith("\n")
    nothing = Echo()
    done = BatchFile(source, output)
    assert done.open().left == 0
    assert (await done.run(nothing, concurrency=3)).complete and nothing.sent == []


async def test_bad_input_is_reported_before_anything_is_sent(tmp_path: Path) -> None:
    source = tmp_path / "in.jsonl"
    good = {"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {}}
    source.write_text(
        "\n".join(
            [
                json.dumps(good),
                "not json",
                json.dumps(good),
                json.dumps({**good, "custom_id": "b", "url": "/x"}),
            ]
        )
    )
    output = tmp_path / "out.jsonl"
    with pytest.raises(InputProblems) as raised:
        BatchFile(source, output).open()
    assert [problem.line for problem in raised.value.problems] == [2, 3, 4]
    assert raised.value.count == 3
    assert not output.exists()


async def test_two_runs_on_one_output_are_refused(tmp_path: Path) -> None:
    source, output = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    first = BatchFile(source, output)
    first.open()
    with pytest.raises(OutputBusy):
        BatchFile(source, output).open()
    first.close()
    BatchFile(source, output).open()


async def test_a_spent_budget_ends_incomplete_and_a_rerun_finishes(tmp_path: Path) -> None:
    source, output = write_input(tmp_path / "in.jsonl", 30), tmp_path / "out.jsonl"
    batch = BatchFile(source, output)
    batch.open()
    finished = await batch.run(Echo(stop_at="id-10"), concurrency=1)
    assert finished.stopped == "budget spent" and not finished.complete
    assert len(answered(output)) == 10
    rerun = BatchFile(source, output)
    rerun.open()
    assert (await rerun.run(Echo(), concurrency=4)).complete
    assert sorted(answered(output)) == sorted(f"id-{n}" for n in range(30))


async def test_a_failing_line_is_written_with_its_error(tmp_path: Path) -> None:
    class Refuses(Echo):
        async def send(self, line: BatchLine) -> Outcome:
            return (
                Outcome(400, b'{"error": {"message": "no"}}', "r")
                if line.index == 1
                else await super().send(line)
            )

    source, output = write_input(tmp_path / "in.jsonl", 3), tmp_path / "out.jsonl"
    batch = BatchFile(source, output)
    batch.open()
    assert (await batch.run(Refuses(), concurrency=2)).progress.failed == 1
    lines = {json.loads(line)["custom_id"]: json.loads(line) for line in output.read_text().splitlines()}
    assert lines["id-1"]["response"]["status_code"] == 400

"""OpenAI's batch output line for each result, and the run's progress figures."""

from __future__ import annotations

import json

from llmgate.batch.results import BatchResult, Outcome, Progress, done_custom_id, unrun_line


def test_a_reply_is_a_response_line_with_a_stable_id() -> None:
    outcome = Outcome(200, b'{"object": "chat.completion"}', "req_1")
    result = BatchResult(0, "row-1", outcome)
    data = json.loads(result.line("batch_x"))
    assert data["custom_id"] == "row-1"
    assert data["response"] == {
        "status_code": 200,
        "request_id": "req_1",
        "body": {"object": "chat.completion"},
    }
    assert data["error"] is None
    assert data["id"].startswith("batch_req_")
    assert json.loads(BatchResult(5, "row-1", outcome).line("batch_x"))["id"] == data["id"]
    assert json.loads(result.line("batch_y"))["id"] != data["id"]
    assert result.ok and result.status_code == 200 and result.body() == {"object": "chat.completion"}


def test_an_http_error_is_a_response_and_no_answer_is_an_error() -> None:
    failed = json.loads(BatchResult(0, "r", Outcome(429, b'{"error": {"message": "slow down"}}', "q")).line())
    assert failed["response"]["status_code"] == 429
    assert failed["response"]["body"]["error"]["message"] == "slow down"
    lost = json.loads(BatchResult(0, "r", Outcome(0, code="connection_error", message="refused")).line())
    assert lost["response"] is None
    assert lost["error"] == {"code": "connection_error", "message": "refused"}


def test_an_unrun_line_names_why_and_an_old_output_line_gives_its_id_back() -> None:
    line = unrun_line("row-9", "batch_cancelled", "cancelled", "batch_1")
    data = json.loads(line)
    assert data["error"] == {"code": "batch_cancelled", "message": "cancelled"}
    assert done_custom_id(line) == "row-9"
    assert done_custom_id(b'{"custom_id": 3}') is None
    assert done_custom_id(b'{"custom_id": "ab') is None
    assert done_custom_id(b"[1]") is None


def test_progress_counts_tokens_cost_rate_and_eta() -> None:
    progress = Progress(total=10, started=100.0)
    priced = Outcome(200, prompt_tokens=3, completion_tokens=2, cost=0.5)
    progress.add(BatchResult(0, "a", priced, attempts=3), 101.0)
    progress.add(BatchResult(1, "b", Outcome(200)), 102.0)
    progress.add(BatchResult(2, "c", Outcome(500, cost=None)), 104.0)
    assert (progress.done, progress.failed, progress.retried) == (3, 1, 2)
    assert (progress.prompt_tokens, progress.completion_tokens, progress.cost) == (3, 2, 0.5)
    assert progress.unpriced == 1
    assert progress.rate == 0.75
    assert progress.eta == 7 / 0.75
    assert Progress().eta is None and Progress().rate == 0.0

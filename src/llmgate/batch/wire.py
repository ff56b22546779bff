"""OpenAI's shapes for files and batches (https://platform.openai.com/docs/api-reference/batch), as the
official SDK parses them."""

from __future__ import annotations

from typing import Any

from llmgate.state.jobs.ports import BatchJob, StoredFile


def file_object(file: StoredFile) -> dict[str, Any]:
    """A ``file`` object."""
    return {
        "id": file.id,
        "object": "file",
        "bytes": file.bytes,
        "created_at": int(file.created_at),
        "filename": file.filename,
        "purpose": file.purpose,
        "status": "processed",
        "status_details": None,
        "expires_at": None,
    }


def batch_object(job: BatchJob) -> dict[str, Any]:
    """A ``batch`` object."""
    errors = None
    if job.errors:
        errors = {
            "object": "list",
            "data": [
                {"code": error.code, "message": error.message, "param": error.param, "line": error.line}
                for error in job.errors
            ],
        }
    return {
        "id": job.id,
        "object": "batch",
        "endpoint": job.endpoint,
        "errors": errors,
        "input_file_id": job.input_file_id,
        "completion_window": job.completion_window,
        "status": job.status,
        "output_file_id": job.output_file_id,
        "error_file_id": job.error_file_id,
        "created_at": int(job.created_at),
        "in_progress_at": _time(job.in_progress_at),
        "expires_at": _time(job.expires_at),
        "finalizing_at": _time(job.finalizing_at),
        "completed_at": _time(job.completed_at),
        "failed_at": _time(job.failed_at),
        "expired_at": _time(job.expired_at),
        "cancelling_at": _time(job.cancelling_at),
        "cancelled_at": _time(job.cancelled_at),
        "request_counts": {"total": job.total, "completed": job.completed, "failed": job.failed},
        "metadata": dict(job.metadata) or None,
    }


def page(items: list[dict[str, Any]], *, has_more: bool) -> dict[str, Any]:
    """A list page with OpenAI's cursor fields."""
    return {
        "object": "list",
        "data": items,
        "first_id": items[0]["id"] if items else None,
        "last_id": items[-1]["id"] if items else None,
        "has_more": has_more,
    }


def _time(value: float | None) -> int | None:
    return None if value is None else int(value)

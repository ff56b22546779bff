"""Settings of batch jobs served by the gateway (``/v1/files``, ``/v1/batches``: SPEC.md section 2.6)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class BatchSettings(BaseModel):
    """How the gateway runs the batch jobs its callers create."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    worker: bool = True
    """Whether this process works jobs (every replica that has it on shares them, one per job at a time)."""
    concurrency: int = Field(16, ge=1, le=1024)
    """Lines of one job in flight at once on one replica."""
    jobs_at_once: int = Field(2, ge=1, le=64)
    """Jobs one replica works at the same time."""
    limit_share: float = Field(0.5, gt=0, le=1)
    """The share of each rate limit (the key's and the global one) a job may fill: the rest stays free
    for interactive calls."""
    retries: int = Field(5, ge=0, le=100)
    """Further attempts at a line after a retryable failure (rate-limit waits are apart)."""
    lease_seconds: float = Field(60.0, ge=1, le=3600)
    """How long a replica holds a job without renewing; another replica takes over after it."""
    poll_seconds: float = Field(2.0, gt=0, le=600)
    """How often an idle worker looks for jobs."""
    max_file_bytes: int = Field(200 * 1024 * 1024, ge=1, le=10 * 1024 * 1024 * 1024)
    """The largest file ``POST /v1/files`` takes (OpenAI's limit is 200 MB)."""
    max_lines: int = Field(50_000, ge=1, le=10_000_000)
    """The most lines a job's input may have (OpenAI's limit is 50,000)."""

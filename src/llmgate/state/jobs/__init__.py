"""Batch-job storage, one module per backend behind ``state.jobs.ports.JobStore``: ``memory`` (lost on
restart), ``sqlite`` (the embedded default, in the usage database's file), ``postgres`` (shared by
replicas)."""

from __future__ import annotations

from llmgate.state.jobs.ports import JobStore


async def open_jobs(url: str) -> JobStore:
    """The job store on the database a URL names (the same one as keys and usage records): ``memory``,
    ``sqlite:///...`` or ``postgresql://...``. Each backend is imported when chosen."""
    if url == "memory":
        from llmgate.state.jobs.memory import MemoryJobs

        return MemoryJobs()
    if url.startswith("sqlite:"):
        from llmgate.state.jobs.sqlite import SqliteJobs

        return await SqliteJobs.connect(url)
    from llmgate.state.jobs.postgres import PostgresJobs

    return await PostgresJobs.connect(url)

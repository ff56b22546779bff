"""Batch jobs: many calls through the gateway, each an ordinary call (routing, limits, budgets, cache,
usage record), with bounded concurrency, retries and progress.

``lines`` reads OpenAI's batch input format, ``runner`` runs lines, ``results`` writes OpenAI's output
format, ``library`` is ``gw.batch``, ``files`` is the resumable ``llmgate batch INPUT -o OUTPUT``, and
``jobs`` serves the Files and Batches API from the database.
"""

from llmgate.batch.library import BatchReport, BatchRun
from llmgate.batch.results import BatchResult, Outcome, Progress

__all__ = ["BatchReport", "BatchResult", "BatchRun", "Outcome", "Progress"]

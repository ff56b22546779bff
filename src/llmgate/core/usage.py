"""Token usage, in OpenAI's shape, with the cached and reasoning counts routing and pricing need."""

from __future__ import annotations

import msgspec
from msgspec import UNSET, UnsetType


class PromptTokensDetails(msgspec.Struct, gc=False, omit_defaults=True):
    """Breakdown of prompt tokens: those read from the provider's prompt cache, and cache writes."""

    cached_tokens: int = 0
    audio_tokens: int | None = None
    cache_creation_tokens: int | None = None


class CompletionTokensDetails(msgspec.Struct, gc=False, omit_defaults=True):
    """Breakdown of completion tokens: those spent on hidden reasoning."""

    reasoning_tokens: int = 0
    audio_tokens: int | None = None
    accepted_prediction_tokens: int | None = None
    rejected_prediction_tokens: int | None = None


class Usage(msgspec.Struct, gc=False):
    """Tokens of one call. ``prompt_tokens`` includes cached ones, ``completion_tokens`` reasoning ones.

    The three counts are always encoded, zeros included (OpenAI always sends them, and its SDK reads a
    missing one as ``None``); a breakdown is sent only when there is one (``UNSET`` is never encoded).
    """

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0
    prompt_tokens_details: PromptTokensDetails | UnsetType | None = UNSET
    completion_tokens_details: CompletionTokensDetails | UnsetType | None = UNSET

    @property
    def cached_tokens(self) -> int:
        """Prompt tokens served from the provider's cache (billed at the cached-input price)."""
        details = self.prompt_tokens_details
        return details.cached_tokens if details else 0

    @property
    def cache_creation_tokens(self) -> int:
        """Prompt tokens written to the provider's cache (billed at the cache-write price)."""
        details = self.prompt_tokens_details
        if not details or details.cache_creation_tokens is None:
            return 0
        return details.cache_creation_tokens

    @property
    def reasoning_tokens(self) -> int:
        """Completion tokens spent on reasoning."""
        details = self.completion_tokens_details
        return details.reasoning_tokens if details else 0


def make_usage(
    *, prompt: int, completion: int, cached: int = 0, reasoning: int = 0, cache_creation: int | None = None
) -> Usage:
    """Build a ``Usage`` from plain counts, with details only where they carry information."""
    prompt_details: PromptTokensDetails | UnsetType = (
        PromptTokensDetails(cached_tokens=cached, cache_creation_tokens=cache_creation)
        if cached or cache_creation
        else UNSET
    )
    completion_details: CompletionTokensDetails | UnsetType = (
        CompletionTokensDetails(reasoning_tokens=reasoning) if reasoning else UNSET
    )
    return Usage(
        prompt_tokens=prompt,
        completion_tokens=completion,
        total_tokens=prompt + completion,
        prompt_tokens_details=prompt_details,
        completion_tokens_details=completion_details,
    )

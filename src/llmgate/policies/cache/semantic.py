"""The semantic half of the cache: a stored answer to a conversation close enough to this one.

Only among entries of the same namespace, group and non-message parameters (the bucket); never an
answer that called tools (a tool call is about the exact words). An exact hit is always tried first;
the embedding is made by a call the gateway accounts like any other, on the caller's behalf.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

from msgspec import UNSET

from llmgate.policies.cache.store import AnswerStore, CachedAnswer
from llmgate.state.ports import CacheKey, VectorIndex

Embed = Callable[[str], Awaitable[Sequence[float] | None]]
"""Text -> its embedding (``None`` when it cannot be had: the semantic lookup is then skipped)."""


def calls_tools(answer: CachedAnswer) -> bool:
    """Whether an answer called tools or functions (never served for a merely similar conversation)."""
    for choice in answer.response.choices:
        message = choice.message
        if (message.tool_calls not in (UNSET, None) and message.tool_calls) or message.function_call not in (
            UNSET,
            None,
        ):
            return True
    return False


class SemanticCache:
    """Vectors of stored conversations, searched for one that reaches ``threshold``."""

    def __init__(self, vectors: VectorIndex, store: AnswerStore, *, threshold: float) -> None:
        self.vectors = vectors
        self.store = store
        self.threshold = threshold

    async def find(self, bucket: CacheKey, vector: Sequence[float]) -> CachedAnswer | None:
        """The answer stored for the most similar conversation of the bucket, if similar enough."""
        found = await self.store.guarded(lambda: self.vectors.nearest(bucket, vector))
        if found is None:
            return None
        digest, score = found
        if score < self.threshold:
            return None
        answer = await self.store.get(CacheKey(bucket.namespace, bucket.group, digest))
        if answer is None:  # its answer expired or was evicted: the vector goes too
            await self.store.guarded(lambda: self.vectors.remove(bucket, digest))
            return None
        return None if calls_tools(answer) else answer

    async def index(
        self, bucket: CacheKey, digest: str, vector: Sequence[float], answer: CachedAnswer, *, ttl: float
    ) -> None:
        """Make a stored answer findable by similar conversations (not one that called tools)."""
        if not calls_tools(answer):
            await self.store.guarded(lambda: self.vectors.add(bucket, digest, vector, ttl=ttl))

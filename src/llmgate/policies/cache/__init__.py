"""The response cache stage: rules, request digests, the answer store, coalescing, the service."""

from llmgate.policies.cache.rules import CacheRule, CacheRules
from llmgate.policies.cache.semantic import SemanticCache
from llmgate.policies.cache.service import (
    HIT,
    MISS,
    NO_CACHE,
    SEMANTIC_HIT,
    SKIP,
    Lookup,
    ResponseCaching,
    Ticket,
    answer_of,
)
from llmgate.policies.cache.store import AnswerStore, CachedAnswer

__all__ = [
    "HIT",
    "MISS",
    "NO_CACHE",
    "SEMANTIC_HIT",
    "SKIP",
    "AnswerStore",
    "CacheRule",
    "CacheRules",
    "CachedAnswer",
    "Lookup",
    "ResponseCaching",
    "SemanticCache",
    "Ticket",
    "answer_of",
]

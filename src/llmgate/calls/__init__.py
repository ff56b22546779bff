"""Calls from end to end: a chat reply (whole or streamed) through the cache, limits, routing and the
books. The gateway facade delegates here; nothing in this package names a concrete adapter or backend."""

from llmgate.calls.chat import CallOptions, ChatCalls, close_failed
from llmgate.calls.embeddings import EmbeddingCalls
from llmgate.calls.stream import ChatStream, has_content

__all__ = ["CallOptions", "ChatCalls", "ChatStream", "EmbeddingCalls", "close_failed", "has_content"]

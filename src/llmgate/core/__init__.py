"""The provider-neutral vocabulary: requests, responses, stream events, usage, errors, capabilities.

Pure data: nothing here does I/O or imports another part of llmgate.
"""

from llmgate.core.capabilities import Capability
from llmgate.core.errors import (
    AuthenticationError,
    ContextLengthExceeded,
    GatewayError,
    InvalidRequest,
    ModelNotFound,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    ProviderAuthError,
    QuotaExceeded,
    RateLimited,
    SchemaViolation,
    StreamInterrupted,
    UnexpectedResponse,
    UpstreamConnectionError,
    UpstreamError,
    UpstreamTimeout,
)
from llmgate.core.request import ChatRequest, EmbeddingRequest, Message, Tool, ToolCall
from llmgate.core.response import (
    ChatChunk,
    ChatResponse,
    Choice,
    ChunkChoice,
    Delta,
    Embedding,
    EmbeddingResponse,
    ModelCard,
    ResponseMessage,
)
from llmgate.core.usage import Usage

__all__ = [
    "AuthenticationError",
    "Capability",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "Choice",
    "ChunkChoice",
    "ContextLengthExceeded",
    "Delta",
    "Embedding",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "GatewayError",
    "InvalidRequest",
    "Message",
    "ModelCard",
    "ModelNotFound",
    "NotFound",
    "Overloaded",
    "PayloadTooLarge",
    "PermissionDenied",
    "ProviderAuthError",
    "QuotaExceeded",
    "RateLimited",
    "ResponseMessage",
    "SchemaViolation",
    "StreamInterrupted",
    "Tool",
    "ToolCall",
    "UnexpectedResponse",
    "UpstreamConnectionError",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
]

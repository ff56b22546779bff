"""llmgate: one OpenAI-compatible API in front of many LLM providers.

from llmgate import Gateway
async with Gateway() as gw:
    reply = await gw.chat("mock:echo", [{"role": "user", "content": "Hi"}])
"""

from llmgate.calls import ChatStream
from llmgate.config import ConfigError, Settings, load_settings
from llmgate.core import (
    AuthenticationError,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ContextLengthExceeded,
    EmbeddingRequest,
    EmbeddingResponse,
    GatewayError,
    InvalidRequest,
    Message,
    ModelNotFound,
    Overloaded,
    PermissionDenied,
    ProviderAuthError,
    QuotaExceeded,
    RateLimited,
    SchemaViolation,
    StreamInterrupted,
    UpstreamError,
    UpstreamTimeout,
    Usage,
)
from llmgate.core.controls import CacheControl
from llmgate.core.results import CallInfo, ChatResult, EmbeddingResult
from llmgate.gateway import Gateway
from llmgate.sync import SyncGateway

__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "CacheControl",
    "CallInfo",
    "ChatChunk",
    "ChatRequest",
    "ChatResponse",
    "ChatResult",
    "ChatStream",
    "ConfigError",
    "ContextLengthExceeded",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingResult",
    "Gateway",
    "GatewayError",
    "InvalidRequest",
    "Message",
    "ModelNotFound",
    "Overloaded",
    "PermissionDenied",
    "ProviderAuthError",
    "QuotaExceeded",
    "RateLimited",
    "SchemaViolation",
    "Settings",
    "StreamInterrupted",
    "SyncGateway",
    "UpstreamError",
    "UpstreamTimeout",
    "Usage",
    "load_settings",
]

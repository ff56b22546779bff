"""Google AI Gemini (``generateContent``): chat, streaming (SSE), tool calls, JSON schema, embeddings.

- ``request``: OpenAI request -> Gemini body, and which parameters Gemini drops or refuses.
- ``schema``: JSON Schema -> the OpenAPI subset Gemini accepts.
- ``response``: Gemini answers and stream events -> canonical responses and chunks.
- ``errors``: Google's error envelope -> the core error tree.
- ``embeddings``: ``embedContent`` / ``batchEmbedContents``.
- ``provider``: the wire format, the provider and ``build``.
"""

from llmgate.providers.gemini.provider import (
    DEFAULT_API_VERSION,
    DEFAULT_BASE_URL,
    GeminiProvider,
    GeminiWire,
    build,
)
from llmgate.providers.gemini.response import GeminiStream, MalformedFunctionCall

__all__ = [
    "DEFAULT_API_VERSION",
    "DEFAULT_BASE_URL",
    "GeminiProvider",
    "GeminiStream",
    "GeminiWire",
    "MalformedFunctionCall",
    "build",
]

"""Anthropic's Messages API: requests, answers, streams, errors and rate-limit headers.

- ``request.py`` / ``messages.py``: the canonical request -> the Messages body (and what cannot be sent)
- ``response.py``: a complete answer -> the canonical response
- ``stream.py``: SSE events -> canonical chunks
- ``errors.py``, ``ratelimit.py``: error bodies and ``anthropic-ratelimit-*`` headers
- ``wire.py``: ``AnthropicWire`` (the ``WireFormat``) and ``build`` (the provider)
"""

from llmgate.providers.anthropic.wire import DEFAULT_BASE_URL, DEFAULT_VERSION, AnthropicWire, build
from llmgate.wire.anthropic import JSON_TOOL

__all__ = ["DEFAULT_BASE_URL", "DEFAULT_VERSION", "JSON_TOOL", "AnthropicWire", "build"]

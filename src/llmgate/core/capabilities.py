"""What a model can do, as named in the catalogue and in ``GET /api/models``."""

from __future__ import annotations

from enum import StrEnum


class Capability(StrEnum):
    """A capability a model may have."""

    CHAT = "chat"
    STREAMING = "streaming"
    TOOLS = "tools"
    VISION = "vision"
    JSON = "json"
    JSON_SCHEMA = "json_schema"
    REASONING = "reasoning"
    EMBEDDINGS = "embeddings"
    AUDIO = "audio"

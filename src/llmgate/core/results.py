"""What the library hands back: the OpenAI-shaped response plus what the gateway knows about the call."""

from __future__ import annotations

from dataclasses import dataclass

from llmgate.core.caller import LimitStatus
from llmgate.core.errors import GatewayError
from llmgate.core.response import ChatResponse, Choice, EmbeddingResponse
from llmgate.core.usage import Usage


@dataclass(frozen=True, slots=True)
class CallInfo:
    """How a call was served."""

    request_id: str
    provider: str
    deployment: str
    upstream_model: str
    attempts: int = 1
    latency_ms: float = 0.0
    dropped_params: tuple[str, ...] = ()
    limit: LimitStatus | None = None
    tried: tuple[str, ...] = ()
    """Deployments called before the one that served (or all of them, for a failed call)."""
    cache: str = "skip"
    """``hit``, ``semantic-hit``, ``miss`` (looked up, not found) or ``skip`` (not looked up)."""
    saved_usd: float | None = None
    """For an answer from the cache: what the call cost when it was made."""
    group: str = ""
    """The model group that served the call (a fallback's, when it was a fallback)."""
    context: str | None = None
    """``truncated`` or ``condensed`` when the prompt was fitted into the window (``context_overflow``)."""
    schema: str | None = None
    """``valid`` or ``invalid``: how the reply compared with the ``json_schema`` asked for."""

    @classmethod
    def failed(
        cls, request_id: str, error: GatewayError, limit: LimitStatus | None, *, cache: str = "skip"
    ) -> CallInfo:
        """A call no deployment served: its attempts and the deployments they went to."""
        return cls(request_id, "", "", "", error.attempts, limit=limit, tried=error.tried, cache=cache)


@dataclass(frozen=True, slots=True)
class ChatResult:
    """A complete chat reply. ``cost`` is USD, or ``None`` when a price is unknown (never a false $0)."""

    response: ChatResponse
    info: CallInfo
    cost: float | None

    @property
    def choices(self) -> list[Choice]:
        """The response's choices."""
        return self.response.choices

    @property
    def usage(self) -> Usage | None:
        """Tokens used, as the provider reported them."""
        return self.response.usage

    @property
    def text(self) -> str:
        """The first choice's text."""
        return self.response.text

    @property
    def cost_known(self) -> bool:
        """Whether ``cost`` is a real figure."""
        return self.cost is not None


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """Vectors plus how they were served and what they cost."""

    response: EmbeddingResponse
    info: CallInfo
    cost: float | None

    @property
    def vectors(self) -> list[list[float]]:
        """The embeddings as float lists, in input order (base64 ones are left out)."""
        return [item.embedding for item in self.response.data if isinstance(item.embedding, list)]

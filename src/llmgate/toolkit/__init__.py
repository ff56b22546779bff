"""Library utilities on top of the request path: token counting, context fitting, condensing, prompt
templates (structured-output validation is a policy stage: ``policies.structured``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from llmgate.config import ConfigError, Settings
from llmgate.core.caller import Caller
from llmgate.core.errors import ModelNotFound
from llmgate.core.request import ChatRequest
from llmgate.core.results import ChatResult
from llmgate.routing.router import Router
from llmgate.toolkit.condense import Condensed
from llmgate.toolkit.fit import Fitted
from llmgate.toolkit.service import FitResult, Toolkit
from llmgate.toolkit.templates import Prompt, Prompts, Rendered, from_settings
from llmgate.toolkit.tokens import TokenCount, TokenCounter

__all__ = [
    "Condensed",
    "FitResult",
    "Fitted",
    "Prompt",
    "Prompts",
    "Rendered",
    "TokenCount",
    "TokenCounter",
    "Toolkit",
    "build_toolkit",
]


def build_toolkit(
    settings: Settings, router: Router, complete: Callable[[ChatRequest, Caller], Awaitable[ChatResult]]
) -> Toolkit:
    """The toolkit of a gateway: its prompts compiled (files read beside the config), its summariser
    model checked. ``ConfigError`` naming the config file for a template or reference that is wrong."""
    source = settings.source
    try:
        prompts = from_settings(settings.prompts)
    except ValueError as bad:
        raise ConfigError(f"{source}: prompts: {bad}") from None
    summariser = settings.condense.model
    if summariser is not None:
        try:
            router.group(summariser)
        except ModelNotFound as missing:
            raise ConfigError(f"{source}: condense.model: {missing.message}") from None
    return Toolkit(
        router,
        TokenCounter(),
        prompts,
        complete=complete,
        summariser=summariser,
        max_summary_tokens=settings.condense.max_summary_tokens,
    )

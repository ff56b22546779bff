"""The toolkit of one gateway: token counting, fitting, condensing and prompts, for the models it serves."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from llmgate.core.caller import ANONYMOUS, Caller
from llmgate.core.errors import InvalidRequest, ModelNotFound
from llmgate.core.request import ChatRequest, Message
from llmgate.core.results import ChatResult
from llmgate.routing.router import Router
from llmgate.toolkit.condense import Condensed, Summarise, condense
from llmgate.toolkit.fit import fit
from llmgate.toolkit.templates import Prompts, Rendered
from llmgate.toolkit.tokens import TokenCount, TokenCounter

Complete = Callable[[ChatRequest, Caller], Awaitable[ChatResult]]
Conversation = Sequence[Mapping[str, Any] | Message]
Content = str | Conversation | ChatRequest


@dataclass(frozen=True, slots=True)
class FitResult:
    """``gw.fit``'s answer: the messages that fit (OpenAI dicts), and what was done to them."""

    messages: list[dict[str, Any]]
    tokens: int
    original_tokens: int
    dropped: int
    trimmed: bool
    exact: bool


class Toolkit:
    """Token counting, fitting, condensing and prompt templates over a gateway's models."""

    def __init__(
        self,
        router: Router,
        counter: TokenCounter,
        prompts: Prompts,
        *,
        complete: Complete,
        summariser: str | None,
        max_summary_tokens: int,
    ) -> None:
        self.router = router
        self.counter = counter
        self.prompts = prompts
        self._complete = complete
        self._summariser = summariser
        self._max_summary = max_summary_tokens

    def target(self, model: str) -> tuple[str, int | None]:
        """The model to count with (a group's first deployment's upstream model) and the smallest known
        context window of its deployments; a name the gateway does not serve counts as itself."""
        try:
            deployments = self.router.candidates(model)
        except ModelNotFound:
            return model, None
        windows = [d.context_length for d in deployments if d.context_length is not None]
        return deployments[0].model, min(windows) if windows else None

    def count_tokens(self, model: str, content: Content) -> TokenCount:
        """Tokens of a text, a conversation or a whole request (its tools too) for ``model`` (exact for
        OpenAI-family models)."""
        counting, _ = self.target(model)
        if isinstance(content, str):
            return self.counter.text(counting, content)
        if isinstance(content, ChatRequest):
            return self.counter.request(counting, content)
        return self.counter.messages(counting, as_messages(content))

    def fit(
        self, messages: Conversation, model: str, *, reserve: int = 0, window: int | None = None
    ) -> FitResult:
        """``messages`` with the oldest turns dropped (or trimmed) so the prompt plus ``reserve`` output
        tokens fits ``model``'s context window (or ``window``, when given or unknown to the catalogue)."""
        counting, known = self.target(model)
        limit = window if window is not None else known
        if limit is None:
            raise InvalidRequest(
                f"the context window of '{model[:128]}' is not known: pass window=", param="window"
            )
        if reserve < 0 or reserve >= limit:
            raise InvalidRequest(f"reserve must be in [0, {limit})", param="reserve")
        exact = self.counter.encoding(counting) is not None
        fitted = fit(as_messages(messages), limit - reserve, self._counter_of(counting))
        return FitResult(
            msgspec.to_builtins(fitted.messages),
            fitted.tokens,
            fitted.original_tokens,
            fitted.dropped,
            fitted.trimmed,
            exact,
        )

    async def condense(
        self,
        messages: Conversation,
        *,
        max_tokens: int,
        model: str | None = None,
        caller: Caller = ANONYMOUS,
    ) -> Condensed:
        """``messages`` with the older turns summarised by the summariser model (``condense.model``, else
        ``model``) so they fit ``max_tokens`` counted for ``model``; the summary is the caller's call."""
        if max_tokens < 1:
            raise InvalidRequest("max_tokens must be a positive number of tokens", param="max_tokens")
        summariser = self._summariser or model
        if summariser is None:
            raise InvalidRequest(
                "no summariser model: pass model, or configure condense.model", param="model"
            )
        counting, _ = self.target(model or summariser)
        _, summariser_window = self.target(summariser)
        return await condense(
            as_messages(messages),
            max_tokens=max_tokens,
            count=self._counter_of(counting),
            summarise=self.summarise_with(summariser, caller),
            max_summary_tokens=self._max_summary,
            transcript_tokens=summariser_window - self._max_summary if summariser_window else None,
        )

    def summariser_for(self, request: ChatRequest, caller: Caller) -> Summarise:
        """The summariser of an overflowing request (``condense.model``, else its own model)."""
        return self.summarise_with(self._summariser or request.model, caller)

    def summarise_with(self, model: str, caller: Caller) -> Summarise:
        """A summariser calling ``model`` as ``caller``."""

        async def summarise(prompt: list[Message], limit: int) -> str:
            request = ChatRequest(model=model, messages=prompt, max_tokens=limit, temperature=0.0)
            result = await self._complete(request, caller)
            return result.text

        return summarise

    def render(self, name: str, variables: Mapping[str, Any]) -> Rendered:
        """A named prompt rendered with ``variables``."""
        return self.prompts.render(name, variables)

    def with_prompt(self, body: Any) -> Any:
        """A chat body with ``"prompt": {"name", "variables"}`` in place of ``messages`` rendered into
        messages (other bodies unchanged)."""
        if not isinstance(body, dict) or "prompt" not in body:
            return body
        asked = body["prompt"]
        if "messages" in body:
            raise InvalidRequest("give either messages or prompt, not both", param="prompt")
        if not isinstance(asked, dict) or not isinstance(asked.get("name"), str):
            raise InvalidRequest('prompt must be {"name": ..., "variables": {...}}', param="prompt")
        variables = asked.get("variables", {})
        if not isinstance(variables, dict):
            raise InvalidRequest("prompt.variables must be an object", param="prompt.variables")
        unknown = set(asked) - {"name", "variables"}
        if unknown:
            raise InvalidRequest(f"prompt has no field '{sorted(unknown)[0][:64]}'", param="prompt")
        rendered = self.prompts.render(asked["name"], variables)
        return {**{k: v for k, v in body.items() if k != "prompt"}, "messages": rendered.messages()}

    def prompt_list(self) -> list[dict[str, Any]]:
        """Every prompt template: name, description, variables, whether it has a system part, source."""
        return [
            {
                "name": prompt.name,
                "description": prompt.description,
                "variables": [variable.as_dict() for variable in prompt.variables],
                "system": prompt.system is not None,
                "source": "config" if prompt.source == "config" else "file",  # no server paths to callers
            }
            for prompt in (self.prompts.get(name) for name in self.prompts.names())
        ]

    def _counter_of(self, model: str) -> Callable[[Sequence[Message]], int]:
        def count(messages: Sequence[Message]) -> int:
            return self.counter.messages(model, messages).tokens

        return count


def as_messages(messages: Conversation) -> list[Message]:
    """Canonical messages from OpenAI dicts (``InvalidRequest`` naming the bad field)."""
    if isinstance(messages, (str, bytes)) or not isinstance(messages, Sequence):
        raise InvalidRequest("messages must be a list of messages", param="messages")
    if all(isinstance(m, Message) for m in messages):
        return [m for m in messages if isinstance(m, Message)]
    try:
        return msgspec.convert(
            [msgspec.to_builtins(m) if isinstance(m, Message) else dict(m) for m in messages], list[Message]
        )
    except (msgspec.ValidationError, TypeError, ValueError) as bad:
        raise InvalidRequest(f"messages: {bad}", param="messages") from None

"""The context-window stage: exact counts where they matter, and ``context_overflow`` fitting.

The plan estimates a prompt at about 4 characters per token, at no cost. Only when that estimate comes
near a candidate's window (within ``NEAR``: the estimate can be 4x low, for text like "1-1-1-") can the
difference change a decision, and only then is the prompt counted exactly, in a worker thread (the
first exact count loads the encoding), once per encoding. Each window is then checked with its own
model's count, and the token reservation covers the largest.

A prompt longer than every window of its chain is, per the requested group's ``context_overflow``,
refused (``error``, the default), fitted by dropping the oldest turns (``truncate``) or fitted by
summarising them (``condense``); the response says which (``CallInfo.context``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmgate.core.caller import Caller
from llmgate.core.request import ChatRequest, Message
from llmgate.routing.plan import Plan
from llmgate.toolkit.condense import Summarise, condense
from llmgate.toolkit.fit import fit
from llmgate.toolkit.tokens import TokenCounter, encoding_name

NEAR = 0.2
"""Count exactly when the estimate is at least this fraction of a candidate's window."""
MIN_OUTPUT_ROOM = 256


@dataclass(frozen=True, slots=True)
class Fitted:
    """A request fitted into the chain's window, and how (``truncated`` or ``condensed``)."""

    request: ChatRequest
    how: str


class ContextStage:
    """Exact counting and overflow handling for one gateway's calls."""

    def __init__(
        self,
        counter: TokenCounter,
        *,
        summariser: Callable[[ChatRequest, Caller], Summarise],
        max_summary_tokens: int,
        output_reserve: int,
    ) -> None:
        self.counter = counter
        self._summariser = summariser
        self._max_summary = max_summary_tokens
        self._output_reserve = output_reserve
        self._countable: dict[str, bool] = {}
        """Whether a model has an OpenAI encoding, by upstream model name (asked once each)."""

    def has_work(self, plan: Plan) -> bool:
        """Whether the stage can change anything for this plan: its group fits overflowing prompts, or
        an OpenAI-family deployment's window is near the estimate. Cheap (no coroutine, no list), for
        the request path."""
        chain = plan.chain
        if chain[0].context_overflow != "error":
            return True
        if len(chain) == 1 and len(chain[0].deployments) == 1:  # the common shape, without the loop
            only = chain[0].deployments[0]
            window = only.context_length
            if window is None or plan.prompt_tokens < window * NEAR:
                return False
        return bool(self._near(plan))

    def _near(self, plan: Plan) -> list[str]:
        """The OpenAI-family models of the chain whose window the estimate comes near."""
        near: list[str] = []
        countable = self._countable
        for group in plan.chain:
            for deployment in group.deployments:
                window, model = deployment.context_length, deployment.model
                if window is None:
                    continue
                exact = countable.get(model)
                if exact is None:
                    exact = countable[model] = encoding_name(model) is not None
                if exact and plan.prompt_tokens >= window * NEAR and model not in near:
                    near.append(model)
        return near

    async def measure(self, plan: Plan) -> None:
        """Count the prompt exactly for each model whose window the estimate comes near (once per
        encoding, in a worker thread), so that each window is checked with its own count."""
        near = self._near(plan)
        if near:
            counts = await asyncio.to_thread(self._counts, plan.request, near)
            if counts:
                plan.counted(counts)

    def _counts(self, request: ChatRequest, models: list[str]) -> dict[str, int]:
        by_encoding: dict[str, int] = {}
        counts = {}
        for model in models:
            name = encoding_name(model)
            if name is None:
                continue
            if name not in by_encoding:
                by_encoding[name] = self.counter.request(model, request).tokens
            counts[model] = by_encoding[name]
        return counts

    def overflows(self, plan: Plan) -> bool:
        """Whether the requested group fits overflowing prompts and this prompt fits no window."""
        group = plan.chain[0]
        if group.context_overflow == "error":
            return False
        deployments = [d for g in plan.chain for d in g.deployments]
        windows = [d.context_length for d in deployments]
        if any(window is None for window in windows):
            return False  # a window we do not know: let that upstream say
        return all(plan.size_for(d) > (d.context_length or 0) for d in deployments)

    async def fitted(self, plan: Plan, caller: Caller) -> Fitted:
        """The plan's request fitted into its chain's largest window (``overflows`` must hold); a
        summary is written as the caller's own call (its model list, limits and budget apply)."""
        request = plan.request
        model, window = max(plan.windows(), key=lambda item: item[1])
        output = request.output_limit or min(self._output_reserve, window // 4)
        budget = window - max(output, MIN_OUTPUT_ROOM if window > 4 * MIN_OUTPUT_ROOM else 0)

        def count(messages: Sequence[Message]) -> int:
            return self.counter.messages(model, messages).tokens

        if plan.chain[0].context_overflow == "truncate":
            fitted = await asyncio.to_thread(fit, request.messages, budget, count)
            return Fitted(request.with_messages(fitted.messages), "truncated")
        condensed = await condense(
            request.messages,
            max_tokens=budget,
            count=count,
            summarise=self._summariser(request, caller),
            max_summary_tokens=self._max_summary,
            transcript_tokens=budget,
        )
        return Fitted(request.with_messages(condensed.messages), "condensed")

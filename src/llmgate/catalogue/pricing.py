"""What a call cost, from its usage and the catalogue's (or the config's) prices."""

from __future__ import annotations

from dataclasses import dataclass

from llmgate.catalogue.catalogue import ModelInfo
from llmgate.core.usage import Usage

PER_MTOK = 1_000_000


@dataclass(frozen=True, slots=True)
class Prices:
    """USD per 1M tokens. ``None`` input or output price means the cost is unknown."""

    input: float | None
    output: float | None
    cached_input: float | None = None
    cache_write: float | None = None
    reasoning: float | None = None

    @classmethod
    def of(cls, info: ModelInfo) -> Prices:
        """The catalogue entry's prices."""
        return cls(
            info.input_per_mtok,
            info.output_per_mtok,
            info.cached_input_per_mtok,
            info.cache_write_per_mtok,
            info.reasoning_per_mtok,
        )

    def overridden(self, *, input: float | None, output: float | None, cached_input: float | None) -> Prices:
        """These prices with the given ones replacing them where set."""
        return Prices(
            input if input is not None else self.input,
            output if output is not None else self.output,
            cached_input if cached_input is not None else self.cached_input,
            self.cache_write,
            self.reasoning,
        )


UNKNOWN = Prices(None, None)


def cost_of(usage: Usage, prices: Prices) -> float | None:
    """USD for ``usage`` at ``prices``; ``None`` (cost unknown) when a needed price is missing.

    Cached prompt tokens are billed at the cached price (input price when the model has none), cache
    writes at the cache-write price, reasoning tokens at the reasoning price when it differs.
    """
    if prices.input is None or prices.output is None:
        return None
    cached = usage.cached_tokens
    written = usage.cache_creation_tokens
    fresh = max(0, usage.prompt_tokens - cached - written)
    cached_price = prices.cached_input if prices.cached_input is not None else prices.input
    write_price = prices.cache_write if prices.cache_write is not None else prices.input
    reasoning = usage.reasoning_tokens if prices.reasoning is not None else 0
    reasoning_price = prices.reasoning if prices.reasoning is not None else prices.output
    total = (
        fresh * prices.input
        + cached * cached_price
        + written * write_price
        + (usage.completion_tokens - reasoning) * prices.output
        + reasoning * reasoning_price
    )
    return total / PER_MTOK

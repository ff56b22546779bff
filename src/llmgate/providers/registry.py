"""Provider type name -> adapter. The one place in providers/ that knows every concrete adapter."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from llmgate.providers import anthropic, azure, cohere, gemini, ollama
from llmgate.providers.base import ChatProvider, ProviderSpec
from llmgate.providers.mock import MockBehaviour, MockProvider
from llmgate.providers.openai import OpenAIProvider, OpenAIWire
from llmgate.providers.transport import Transport

Factory = Callable[[ProviderSpec, Transport], ChatProvider]

# The API root as each vendor's official SDK takes it (SPEC.md section 3).
DEFAULT_BASE_URLS: Mapping[str, str] = {
    "openai": "https://api.openai.com/v1",
    "huggingface": "https://router.huggingface.co/v1",
}


def _openai(spec: ProviderSpec, transport: Transport) -> ChatProvider:
    base_url = spec.base_url or DEFAULT_BASE_URLS[spec.type]
    return OpenAIProvider(
        name=spec.name, wire=OpenAIWire(extra_headers=spec.headers), transport=transport, base_url=base_url
    )


def _anthropic(spec: ProviderSpec, transport: Transport) -> ChatProvider:
    default_max_tokens = spec.options.get("default_max_tokens")
    return anthropic.build(
        spec, transport, default_max_tokens=default_max_tokens if callable(default_max_tokens) else None
    )


def _mock(spec: ProviderSpec, transport: Transport) -> ChatProvider:
    behaviour = spec.options.get("mock")
    return MockProvider(name=spec.name, behaviour=behaviour if isinstance(behaviour, MockBehaviour) else None)


FACTORIES: Mapping[str, Factory] = {
    "openai": _openai,
    "azure": azure.build,
    "anthropic": _anthropic,
    "gemini": gemini.build,
    "cohere": cohere.build,
    "ollama": ollama.build,
    "huggingface": _openai,
    "mock": _mock,
}


def build_provider(spec: ProviderSpec, transport: Transport) -> ChatProvider:
    """The adapter for ``spec.type`` (one of ``FACTORIES``; the settings admit no other type)."""
    return FACTORIES[spec.type](spec, transport)

"""Providers available with zero config, from the standard environment variables (SPEC.md section 1)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

ENABLED_BY: dict[str, str] = {
    "openai": "OPENAI_API_KEY",
    "anthropic": "ANTHROPIC_API_KEY",
    "gemini": "GEMINI_API_KEY (or GOOGLE_API_KEY)",
    "cohere": "COHERE_API_KEY",
    "azure": "AZURE_OPENAI_API_KEY and AZURE_OPENAI_ENDPOINT",
    "huggingface": "HF_TOKEN",
    "ollama": "OLLAMA_HOST",
}
"""The environment variables that make each provider available with zero config."""


def how_to_enable(provider: str) -> str:
    """How a user makes a provider available: its variables, or a config entry."""
    variables = ENABLED_BY.get(provider)
    config = f"add a provider named '{provider}' to the config"
    return f"set {variables} (or {config})" if variables else config


def detect_providers(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Provider settings for every provider whose standard variables are set, plus ``mock``.

    ``mock`` is always present, so a gateway with nothing configured still answers.
    """
    found: dict[str, dict[str, Any]] = {}

    def add(name: str, type_: str, keys: list[str | None], base_url: str | None = None, **more: Any) -> None:
        entry: dict[str, Any] = {
            "type": type_,
            "api_keys": [key for key in keys if key],
            "detected_from_env": True,
        }
        if base_url:
            entry["base_url"] = base_url
        entry.update(more)
        found[name] = entry

    if env.get("OPENAI_API_KEY"):
        add("openai", "openai", [env.get("OPENAI_API_KEY")], env.get("OPENAI_BASE_URL"))
    if env.get("ANTHROPIC_API_KEY"):
        add("anthropic", "anthropic", [env.get("ANTHROPIC_API_KEY")], env.get("ANTHROPIC_BASE_URL"))
    gemini_key = env.get("GEMINI_API_KEY") or env.get("GOOGLE_API_KEY")
    if gemini_key:
        add("gemini", "gemini", [gemini_key])
    if env.get("COHERE_API_KEY"):
        add("cohere", "cohere", [env.get("COHERE_API_KEY")])
    if env.get("AZURE_OPENAI_API_KEY") and env.get("AZURE_OPENAI_ENDPOINT"):
        extra = {"api_version": env["OPENAI_API_VERSION"]} if env.get("OPENAI_API_VERSION") else {}
        add("azure", "azure", [env.get("AZURE_OPENAI_API_KEY")], env.get("AZURE_OPENAI_ENDPOINT"), **extra)
    if env.get("HF_TOKEN"):
        add("huggingface", "huggingface", [env.get("HF_TOKEN")])
    if env.get("OLLAMA_HOST"):
        host = env["OLLAMA_HOST"]
        add("ollama", "ollama", [], host if host.startswith(("http://", "https://")) else f"http://{host}")
    found["mock"] = {"type": "mock", "detected_from_env": True}
    return found

"""Azure OpenAI and Azure AI Foundry: OpenAI's wire format at Azure's addresses, with Azure's key header.

- Azure OpenAI (``https://{resource}.openai.azure.com``): the upstream model is the *deployment* name,
  ``/openai/deployments/{deployment}/chat/completions?api-version=...``
  (https://learn.microsoft.com/azure/ai-foundry/openai/reference).
- Azure AI Foundry model inference (``https://{resource}.services.ai.azure.com``): one endpoint for every
  model, named in the body, ``/models/chat/completions?api-version=...``; embeddings on the OpenAI v1
  surface ``/openai/v1/embeddings`` (as recorded from real traffic).

Both authenticate with an ``api-key`` header. Content-filter results are extra fields the OpenAI shapes
ignore; a filtered completion arrives as ``finish_reason: content_filter`` and is passed on as such, and
Azure's prompt-filter stream preamble is skipped by the OpenAI stream translator.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import quote, urlsplit

from llmgate.providers.base import AdapterConfigError, ProviderSpec, Target
from llmgate.providers.openai import OpenAIProvider, OpenAIWire
from llmgate.providers.transport import Transport

# The latest GA data-plane version of Azure OpenAI, and the model-inference version Foundry documents.
DEFAULT_API_VERSION = "2024-10-21"
DEFAULT_FOUNDRY_API_VERSION = "2024-05-01-preview"
FOUNDRY_HOST_SUFFIXES = (".services.ai.azure.com", ".models.ai.azure.com")


class AzureWire(OpenAIWire):
    """OpenAI's wire format, addressed and authenticated the Azure way."""

    def __init__(
        self, *, foundry: bool, api_version: str | None = None, extra_headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(extra_headers=extra_headers)
        self.foundry = foundry
        self.api_version = api_version or (DEFAULT_FOUNDRY_API_VERSION if foundry else DEFAULT_API_VERSION)

    def path(self, target: Target, operation: str) -> str:
        """Deployment-scoped paths for Azure OpenAI; the shared model endpoint for Foundry."""
        if self.foundry:
            if operation == "embeddings":
                return "/openai/v1/embeddings"
            return f"/models/{operation}?api-version={self.api_version}"
        if operation == "models":
            return f"/openai/models?api-version={self.api_version}"
        deployment = quote(target.model, safe="")
        return f"/openai/deployments/{deployment}/{operation}?api-version={self.api_version}"

    def headers(self, target: Target) -> dict[str, str]:
        """``api-key`` instead of a Bearer token."""
        headers = {"Content-Type": "application/json", **self._extra_headers}
        if target.api_key:
            headers["api-key"] = target.api_key
        return headers


def is_foundry(base_url: str) -> bool:
    """Whether a base URL is an Azure AI Foundry (model inference) endpoint."""
    host = urlsplit(base_url).hostname or ""
    return host.endswith(FOUNDRY_HOST_SUFFIXES)


def build(spec: ProviderSpec, transport: Transport) -> OpenAIProvider:
    """An Azure provider; ``base_url`` (the resource endpoint) is required."""
    if not spec.base_url:
        raise AdapterConfigError(
            f"provider '{spec.name}': azure needs base_url (e.g. https://RESOURCE.openai.azure.com)"
        )
    # Foundry is recognised by its host; options.foundry says so for custom domains, gateways and proxies.
    foundry = spec.options.get("foundry")
    wire = AzureWire(
        foundry=foundry if isinstance(foundry, bool) else is_foundry(spec.base_url),
        api_version=spec.api_version,
        extra_headers=spec.headers,
    )
    return OpenAIProvider(name=spec.name, wire=wire, transport=transport, base_url=spec.base_url)

"""The validated, frozen shape of llmgate's configuration (SPEC.md section 11)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

ProviderType = Literal["openai", "azure", "anthropic", "gemini", "cohere", "ollama", "huggingface", "mock"]
StrategyName = Literal[
    "round_robin", "weighted", "least_loaded", "fastest_response", "cost_optimized", "priority", "hybrid"
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Timeouts(_Frozen):
    """Seconds. ``first_token`` bounds the wait for the response head or first stream event."""

    connect: float = Field(5.0, gt=0)
    first_token: float = Field(30.0, gt=0)
    idle: float = Field(30.0, gt=0)
    total: float = Field(600.0, gt=0)


class MockFailure(_Frozen):
    """A failure the mock provider injects (for demos, tests and load tests)."""

    kind: Literal["status", "timeout", "reset", "stream_cut"] = "status"
    status: int = Field(500, ge=400, le=599)
    retry_after: float | None = Field(None, ge=0)
    message: str = "injected failure"
    after_chunks: int = Field(3, ge=0)


class MockSettings(_Frozen):
    """Behaviour of a ``mock`` provider. Replies are derived from the request, so they are deterministic."""

    latency_ms: float = Field(0.0, ge=0)
    tokens_per_second: float | None = Field(None, gt=0)
    failure_rate: float = Field(0.0, ge=0, le=1)
    failure: MockFailure = MockFailure()
    seed: int = 0


class ProviderSettings(_Frozen):
    """One provider account: where it is, how to authenticate, and its limits."""

    type: ProviderType
    base_url: str | None = None
    api_keys: tuple[SecretStr, ...] = ()
    api_version: str | None = None
    headers: dict[str, str] = {}
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    timeouts: Timeouts | None = None
    mock: MockSettings | None = None
    options: dict[str, bool | int | float | str] = {}
    """Adapter-specific switches, e.g. ``{structured_outputs: true}`` for anthropic."""
    detected_from_env: bool = False

    @field_validator("api_keys", mode="before")
    @classmethod
    def _drop_empty_keys(cls, value: object) -> object:
        # "${OPENAI_API_KEY_2}" with the variable unset resolves to "": an absent optional key.
        if isinstance(value, list | tuple):
            return tuple(item for item in value if item not in ("", None))
        return value

    @field_validator("base_url")
    @classmethod
    def _check_base_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("base_url must start with http:// or https://")
        return value.rstrip("/") if value else value


class PriceOverride(_Frozen):
    """USD per 1M tokens, replacing the catalogue's prices for one deployment."""

    input_per_mtok: float | None = Field(None, ge=0)
    output_per_mtok: float | None = Field(None, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


class DeploymentSettings(_Frozen):
    """One way to serve a model group: a provider and the upstream model name."""

    provider: str
    model: str
    weight: float = Field(1.0, gt=0)
    priority: int = 0
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    price: PriceOverride | None = None
    timeouts: Timeouts | None = None


class ModelGroupSettings(_Frozen):
    """A name callers use, served by one or more deployments."""

    name: str = Field(min_length=1)
    deployments: tuple[DeploymentSettings, ...] = Field(min_length=1)
    fallbacks: tuple[str, ...] = ()
    strategy: StrategyName | None = None


class RoutingSettings(_Frozen):
    """Global routing defaults."""

    strategy: StrategyName = "hybrid"
    retries: int = Field(3, ge=0, le=20)
    timeouts: Timeouts = Timeouts()


class ServerSettings(_Frozen):
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    master_key: SecretStr | None = None
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    grace_period: float = Field(30.0, ge=0)

    @field_validator("master_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


class StorageSettings(_Frozen):
    """Where keys, usage records and shared state live (used from the state/ layer on)."""

    database: str = "sqlite:///llmgate.db"
    redis: str | None = None


class CacheSettings(_Frozen):
    """Response cache (used from the caching layer on)."""

    mode: Literal["off", "exact", "semantic"] = "off"
    backend: Literal["memory", "sqlite", "redis"] = "memory"
    ttl: float = Field(3600.0, gt=0)
    max_entries: int = Field(1000, gt=0)


class RateLimit(_Frozen):
    """Requests and tokens per minute."""

    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)


class LimitsSettings(_Frozen):
    """Gateway-side limits (enforced from the limits layer on)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    global_: RateLimit = Field(RateLimit(), alias="global")
    default_key: RateLimit = RateLimit()


class Settings(_Frozen):
    """Everything llmgate is configured with, validated once and then read-only."""

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = StorageSettings()
    providers: dict[str, ProviderSettings] = {}
    models: tuple[ModelGroupSettings, ...] = ()
    routing: RoutingSettings = RoutingSettings()
    cache: CacheSettings = CacheSettings()
    limits: LimitsSettings = LimitsSettings()
    model_prices: dict[str, PriceOverride] = {}
    source: str | None = None

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        names = [group.name for group in self.models]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"model group names must be unique; repeated: {', '.join(duplicates)}")
        for index, group in enumerate(self.models):
            for d_index, deployment in enumerate(group.deployments):
                if deployment.provider not in self.providers:
                    raise ValueError(
                        f"models[{index}].deployments[{d_index}].provider: unknown provider "
                        f"'{deployment.provider}' (configured: {', '.join(sorted(self.providers)) or 'none'})"
                    )
            for fallback in group.fallbacks:
                if fallback not in names:
                    raise ValueError(f"models[{index}].fallbacks: unknown model group '{fallback}'")
        return self

"""The validated, frozen shape of llmgate's configuration (SPEC.md section 11)."""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from llmgate.config.batch import BatchSettings
from llmgate.config.toolkit import (
    PROMPT_NAME,
    CondenseSettings,
    ContextOverflow,
    PromptSettings,
    StructuredOutputSettings,
)

ProviderType = Literal["openai", "azure", "anthropic", "gemini", "cohere", "ollama", "huggingface", "mock"]
StrategyName = Literal[
    "round_robin", "weighted", "least_loaded", "fastest_response", "cost_optimized", "priority", "hybrid"
]


class ReferenceProblems(ValueError):
    """Names in the config that refer to nothing (a provider, a model group), each with where it is, so
    the loader can point at its line."""

    def __init__(self, problems: list[tuple[tuple[str | int, ...], str]]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, loc))}: {message}" for loc, message in problems))
        self.problems = problems


def data_dir(env: Mapping[str, str]) -> Path:
    """Where the embedded database lives: ``LLMGATE_DATA_DIR``, else the user's data directory
    (``~/.local/share/llmgate`` on Linux, as XDG says), never the current directory. It is created
    when missing (only this default place: a directory named in the config must exist)."""
    chosen = env.get("LLMGATE_DATA_DIR")
    path = Path(chosen).expanduser() if chosen else Path(platformdirs.user_data_dir("llmgate"))
    with contextlib.suppress(OSError):  # unwritable: opening the database will then say so, naming it
        path.mkdir(parents=True, exist_ok=True)
    return path


def default_cache_file(env: Mapping[str, str]) -> str:
    """The SQLite response cache's file: beside the embedded database."""
    return f"sqlite:///{data_dir(env) / 'cache.db'}"


def default_database(env: Mapping[str, str]) -> str:
    """The embedded SQLite database's URL."""
    return f"sqlite:///{data_dir(env) / 'llmgate.db'}"


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


def _without_empty_keys(value: object) -> object:
    # "${OPENAI_API_KEY_2}" with the variable unset resolves to "": an absent optional key.
    if isinstance(value, list | tuple):
        return tuple(item for item in value if item not in ("", None))
    return value


def _checked_base_url(value: str | None) -> str | None:
    if value is not None and not value.startswith(("http://", "https://")):
        raise ValueError("base_url must start with http:// or https://")
    return value.rstrip("/") if value else value


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

    _drop_empty_keys = field_validator("api_keys", mode="before")(_without_empty_keys)
    _check_base_url = field_validator("base_url")(_checked_base_url)


class PriceOverride(_Frozen):
    """USD per 1M tokens, replacing the catalogue's prices for one deployment."""

    input_per_mtok: float | None = Field(None, ge=0)
    output_per_mtok: float | None = Field(None, ge=0)
    cached_input_per_mtok: float | None = Field(None, ge=0)


class DeploymentSettings(_Frozen):
    """One way to serve a model group: a provider and the upstream model name.

    ``base_url`` and ``api_keys``, when given, replace the provider's for this deployment only.
    """

    provider: str
    model: str
    base_url: str | None = None
    api_keys: tuple[SecretStr, ...] | None = None
    weight: float = Field(1.0, gt=0)
    priority: int = 0
    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)
    price: PriceOverride | None = None
    timeouts: Timeouts | None = None
    context_length: int | None = Field(None, gt=0, le=100_000_000)
    """The model's context window, when the catalogue does not know it (or knows it wrong)."""

    _drop_empty_keys = field_validator("api_keys", mode="before")(_without_empty_keys)
    _check_base_url = field_validator("base_url")(_checked_base_url)


def _strategy_name(value: object) -> object:
    """Accept the seed's spellings (``ROUND_ROBIN``, ``least-loaded``) for the strategy names."""
    return value.strip().lower().replace("-", "_") if isinstance(value, str) else value


class HedgeSettings(_Frozen):
    """Opt-in hedging: no first token after ``after_ms`` -> a second request to another deployment.

    ``max_share`` caps the extra spend: at most that fraction of the group's requests are hedged.
    """

    after_ms: float = Field(gt=0)
    max_share: float = Field(0.1, gt=0, le=1)


class ModelGroupSettings(_Frozen):
    """A name callers use, served by one or more deployments."""

    name: str = Field(min_length=1)
    deployments: tuple[DeploymentSettings, ...] = Field(min_length=1)
    fallbacks: tuple[str, ...] = ()
    context_fallbacks: tuple[str, ...] = ()
    strategy: StrategyName | None = None
    hedge: HedgeSettings | None = None
    cache: GroupCacheSettings | None = None
    context_overflow: ContextOverflow = "error"
    """A prompt longer than every candidate's window: refused (400), truncated or condensed."""

    _strategy = field_validator("strategy", mode="before")(_strategy_name)


class BreakerSettings(_Frozen):
    """When a deployment's circuit opens (from live traffic) and for how long."""

    failures: int = Field(5, ge=1)
    error_rate: float = Field(0.5, gt=0, le=1)
    min_requests: int = Field(20, ge=1)
    cooldown: float = Field(30.0, gt=0)
    max_cooldown: float = Field(300.0, gt=0)


class RoutingSettings(_Frozen):
    """Global routing defaults.

    ``retries`` is how many times a request may go back to a candidate it already tried (after a
    backoff); every other candidate is tried once. ``max_attempts`` bounds the total, and
    ``max_queue_wait`` is the longest the gateway waits for a rate-limited upstream key to free up.
    """

    strategy: StrategyName = "hybrid"
    retries: int = Field(3, ge=0, le=20)
    max_attempts: int = Field(10, ge=1, le=50)
    max_queue_wait: float = Field(5.0, ge=0)
    timeouts: Timeouts = Timeouts()
    breaker: BreakerSettings = BreakerSettings()

    _strategy = field_validator("strategy", mode="before")(_strategy_name)


class ServerSettings(_Frozen):
    """The HTTP server."""

    host: str = "127.0.0.1"
    port: int = Field(8000, ge=0, le=65535)
    master_key: SecretStr | None = None
    max_body_bytes: int = Field(20 * 1024 * 1024, gt=0)
    grace_period: float = Field(30.0, ge=0)
    header_timeout: float = Field(10.0, gt=0, le=3600)
    """Seconds a connection has to send a request's line and headers (from when it opens, or from the
    first byte of a request on a kept-alive connection); then it is closed."""
    body_timeout: float = Field(10.0, gt=0, le=3600)
    """Seconds a request has to send its body, extended by one second per ``body_min_rate`` bytes
    received (a slow upload keeps going as long as it keeps that rate); then 408 and the connection
    is closed."""
    body_min_rate: int = Field(1024, gt=0)
    """Bytes per second a request body must keep up beyond ``body_timeout``."""
    idle_timeout: float = Field(5.0, gt=0, le=3600)
    """Seconds an idle kept-alive connection stays open waiting for its next request."""
    metrics: bool = True
    """Count Prometheus metrics and serve ``/metrics`` (off: no counting, ``/metrics`` is 404)."""
    metrics_token: SecretStr | None = None
    """A bearer token that may read ``/metrics`` (besides the master key; loopback callers need none)."""
    metrics_dir: str | None = None
    """prometheus-client's multiprocess directory (``PROMETHEUS_MULTIPROC_DIR``; set by ``--workers``)."""
    max_connections: int = Field(1000, ge=1, le=1_000_000)
    """Open connections per worker process; a connection over the cap gets 503 and is closed."""

    @field_validator("master_key", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


class StorageSettings(_Frozen):
    """Where keys and usage records live (``memory``, ``sqlite:///file.db``, ``postgresql://...``) and the
    Redis that replicas share limits, budgets, breaker trips and round-robin positions through."""

    database: str = Field(default_factory=lambda: default_database(os.environ))
    """Default: ``llmgate.db`` in the user's data directory (``LLMGATE_DATA_DIR`` to choose another)."""
    redis: str | None = None
    redis_prefix: str = Field("llmgate:", min_length=1, max_length=64, pattern=r"^[\x21-\x7e]+$")
    """Start of every Redis key this gateway uses: deployments (or test runs) sharing one Redis server
    keep apart by choosing different prefixes."""
    flush_interval: float = Field(1.0, gt=0, le=60)
    """Seconds between usage-record batch writes (the loss window on a crash)."""

    @field_validator("redis", mode="before")
    @classmethod
    def _empty_is_none(cls, value: object) -> object:
        return None if value in ("", None) else value


CacheMode = Literal["off", "exact", "semantic"]


class CacheSettings(_Frozen):
    """The response cache (SPEC.md section 6): on for every group with ``mode`` exact or semantic, or per
    group (``models[].cache``). Entries are per caller namespace: the virtual key, unless a group shares."""

    mode: CacheMode = "off"
    backend: Literal["memory", "sqlite", "redis"] = "memory"
    ttl: float = Field(3600.0, gt=0, le=365 * 86_400)
    max_entries: int = Field(1000, gt=0)
    max_bytes: int = Field(64 * 1024 * 1024, gt=0)
    """Memory and SQLite: bytes of answers held, at most (least recently used go first)."""
    max_entry_bytes: int = Field(1024 * 1024, gt=0)
    """An answer larger than this is not stored."""
    only_deterministic: bool = False
    """Cache only requests with temperature 0 or a seed (default: every request of a cached group)."""
    namespace: Literal["key", "shared"] = "key"
    """``key``: each virtual key has its own entries; ``shared``: callers share (an explicit choice)."""
    path: str = Field(default_factory=lambda: default_cache_file(os.environ))
    """SQLite backend: the file (default ``cache.db`` in the data directory)."""
    timeout: float = Field(0.2, gt=0, le=10)
    """Seconds a cache backend call may take; slower, the call is served without the cache."""
    embedding_model: str | None = None
    """Semantic mode: the embedding model (a group or ``provider:model`` the gateway serves)."""
    threshold: float = Field(0.92, gt=0, le=1)
    """Semantic mode: the cosine similarity a stored conversation must reach to be served."""


class GroupCacheSettings(_Frozen):
    """A model group's own cache rules; what is not set comes from the global ``cache`` block."""

    enabled: bool | None = None
    ttl: float | None = Field(None, gt=0, le=365 * 86_400)
    mode: Literal["exact", "semantic"] | None = None
    only_deterministic: bool | None = None
    namespace: Literal["key", "shared"] | None = None


class RateLimit(_Frozen):
    """Requests and tokens per minute."""

    rpm: int | None = Field(None, gt=0)
    tpm: int | None = Field(None, gt=0)


class LimitsSettings(_Frozen):
    """Gateway-side limits: ``global`` for all callers together, ``default_key`` for a virtual key that
    sets none of its own. ``budget_on_outage``: while the shared store is unreachable, ``open`` keeps
    serving keys with budgets on local counters, ``closed`` refuses them (503)."""

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    global_: RateLimit = Field(RateLimit(), alias="global")
    default_key: RateLimit = RateLimit()
    budget_on_outage: Literal["open", "closed"] = "open"
    reserve_output_tokens: int = Field(1024, ge=1)
    """Output tokens reserved for a request that sets no max_tokens (settled with the real usage)."""


class InteractionLogSettings(_Frozen):
    """The full request/response log (opt-in): JSONL, secrets redacted, rotated by size."""

    path: str
    max_bytes: int = Field(50 * 1024 * 1024, gt=0)
    backups: int = Field(3, ge=0, le=100)


class LogSettings(_Frozen):
    """What llmgate logs: ``format`` of every line, ``level``, one line per request (``requests``), and
    the interaction log."""

    format: Literal["text", "json"] = "text"
    level: Literal["debug", "info", "warning", "error"] = "info"
    requests: bool = True
    interactions: InteractionLogSettings | None = None


class TracingSettings(_Frozen):
    """OpenTelemetry traces (the ``otel`` extra): spans sent to an OTLP/HTTP collector."""

    endpoint: str | None = None
    """e.g. ``http://collector:4318/v1/traces`` (also ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``)."""
    service_name: str = "llmgate"

    _check = field_validator("endpoint")(_checked_base_url)


class Settings(_Frozen):
    """Everything llmgate is configured with, validated once and then read-only."""

    server: ServerSettings = ServerSettings()
    storage: StorageSettings = Field(default_factory=StorageSettings)  # its defaults read the environment
    providers: dict[str, ProviderSettings] = {}
    models: tuple[ModelGroupSettings, ...] = ()
    routing: RoutingSettings = RoutingSettings()
    cache: CacheSettings = Field(default_factory=CacheSettings)
    limits: LimitsSettings = LimitsSettings()
    log: LogSettings = LogSettings()
    tracing: TracingSettings = TracingSettings()
    model_prices: dict[str, PriceOverride] = {}
    prompts: dict[str, PromptSettings] = {}
    condense: CondenseSettings = CondenseSettings()
    structured_output: StructuredOutputSettings = StructuredOutputSettings()
    batch: BatchSettings = BatchSettings()
    source: str | None = None

    @model_validator(mode="after")
    def _check_references(self) -> Settings:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        names = [group.name for group in self.models]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append(
                    (("models", index, "name"), f"model group names must be unique: '{name}' again")
                )
        configured = ", ".join(sorted(self.providers)) or "none"
        for index, group in enumerate(self.models):
            for d_index, deployment in enumerate(group.deployments):
                if deployment.provider not in self.providers:
                    problems.append(
                        (
                            ("models", index, "deployments", d_index, "provider"),
                            f"unknown provider '{deployment.provider}' (configured: {configured})",
                        )
                    )
            for field_name in ("fallbacks", "context_fallbacks"):
                for f_index, fallback in enumerate(getattr(group, field_name)):
                    if fallback not in names:
                        problems.append(
                            (
                                ("models", index, field_name, f_index),
                                f"unknown model group '{fallback}' (groups: {', '.join(names)})",
                            )
                        )
        problems.extend(self._cache_problems())
        problems.extend(
            (("prompts", name), "a prompt name is letters, digits, '_', '.', '-' (up to 128)")
            for name in self.prompts
            if not re.fullmatch(PROMPT_NAME, name)
        )
        if problems:
            raise ReferenceProblems(problems)
        return self

    def _cache_problems(self) -> list[tuple[tuple[str | int, ...], str]]:
        problems: list[tuple[tuple[str | int, ...], str]] = []
        if self.cache.backend == "redis" and not self.storage.redis:
            problems.append((("cache", "backend"), "the redis backend needs storage.redis (a Redis URL)"))
        semantic = self.cache.mode == "semantic" or any(
            group.cache is not None and group.cache.mode == "semantic" for group in self.models
        )
        if semantic and not self.cache.embedding_model:
            problems.append((("cache", "embedding_model"), "semantic caching needs an embedding_model"))
        return problems

"""Virtual keys: create, list, update, revoke, and authenticate a caller's bearer token.

Keys are random 256-bit secrets; only their SHA-256 is stored (a slow hash buys nothing for secrets
that cannot be guessed), and the lookup compares hashes in constant time. Found keys are cached for a
few seconds so the hot path does not query the database per request; a revocation made through this
process applies at once, one made elsewhere within ``cache_seconds``.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any, Literal

import msgspec

from llmgate.core.caller import Caller
from llmgate.core.errors import AuthenticationError, InvalidRequest, NotFound, Overloaded
from llmgate.state.ports import KeyStore, StateUnavailable, VirtualKey

KEY_PREFIX = "sk-llmgate-"
MAX_CACHED = 10_000
MAX_METADATA_BYTES = 8192
MAX_LIMIT = 10**12  # limits beyond this mean nothing, and would overflow the databases' integers
MAX_TIMESTAMP = 1e11  # unix seconds, year ~5000


class KeyFields(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The fields of ``POST /admin/keys`` (all but ``name`` optional)."""

    name: str
    models: list[str] | None = None
    rpm: int | None = None
    tpm: int | None = None
    max_parallel: int | None = None
    budget_usd: float | None = None
    budget_period: Literal["day", "month", "total"] = "total"
    expires_at: float | None = None
    metadata: dict[str, Any] | None = None


class KeyChanges(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """The fields of ``PATCH /admin/keys/{id}``: only those present change (``null`` clears a limit)."""

    name: str | msgspec.UnsetType = msgspec.UNSET
    models: list[str] | msgspec.UnsetType | None = msgspec.UNSET
    rpm: int | msgspec.UnsetType | None = msgspec.UNSET
    tpm: int | msgspec.UnsetType | None = msgspec.UNSET
    max_parallel: int | msgspec.UnsetType | None = msgspec.UNSET
    budget_usd: float | msgspec.UnsetType | None = msgspec.UNSET
    budget_period: Literal["day", "month", "total"] | msgspec.UnsetType = msgspec.UNSET
    expires_at: float | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType | None = msgspec.UNSET


_FIELD_NAMED = re.compile(r"field `([^`]{1,64})`")


def hash_key(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode()).hexdigest()


def fields_from(body: object, kind: type[KeyFields] | type[KeyChanges]) -> Any:
    """Validate an admin payload, naming the offending field in the 400."""
    if not isinstance(body, dict):
        raise InvalidRequest("the body must be a JSON object", param=None)
    try:
        fields = msgspec.convert(body, kind)
    except msgspec.ValidationError as error:
        text = str(error)
        named = _FIELD_NAMED.search(text)
        param = text.rsplit("$.", 1)[-1].rstrip("`") if "$." in text else named.group(1) if named else None
        raise InvalidRequest(f"invalid key fields: {text}", param=param) from None
    _check(fields)
    return fields


def _check(fields: KeyFields | KeyChanges) -> None:
    name = fields.name
    if isinstance(name, str) and not 0 < len(name.strip()) <= 200:
        raise InvalidRequest("name must be 1 to 200 characters", param="name")
    for field in ("rpm", "tpm", "max_parallel"):
        value = getattr(fields, field)
        if isinstance(value, int) and not 0 < value <= MAX_LIMIT:
            raise InvalidRequest(f"{field} must be a positive integer up to {MAX_LIMIT}", param=field)
    budget = fields.budget_usd
    if isinstance(budget, float | int) and not 0 <= budget <= MAX_LIMIT:
        raise InvalidRequest(f"budget_usd must be between 0 and {MAX_LIMIT}", param="budget_usd")
    expires = fields.expires_at
    if isinstance(expires, float | int) and not 0 < expires <= MAX_TIMESTAMP:
        raise InvalidRequest("expires_at must be a unix time in seconds", param="expires_at")
    models = fields.models
    if isinstance(models, list) and (len(models) > 1000 or any(not m or len(m) > 256 for m in models)):
        raise InvalidRequest("models must be up to 1000 non-empty names", param="models")
    metadata = fields.metadata
    if isinstance(metadata, dict) and len(msgspec.json.encode(metadata)) > MAX_METADATA_BYTES:
        raise InvalidRequest(f"metadata must encode to at most {MAX_METADATA_BYTES} bytes", param="metadata")


class KeyService:
    """Virtual keys over a ``KeyStore``, with a short-lived cache for authentication."""

    def __init__(
        self, store: KeyStore, *, cache_seconds: float = 5.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.cache_seconds = cache_seconds
        self._clock = clock
        self._cache: dict[str, tuple[VirtualKey | None, float]] = {}

    async def create(self, fields: KeyFields) -> tuple[VirtualKey, str]:
        """A new key; the secret is returned only here."""
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        key = VirtualKey(
            id="key_" + secrets.token_hex(8),
            name=fields.name.strip(),
            key_hash=hash_key(secret),
            key_prefix=secret[: len(KEY_PREFIX) + 4],
            models=tuple(fields.models or ()),
            rpm=fields.rpm,
            tpm=fields.tpm,
            max_parallel=fields.max_parallel,
            budget_usd=fields.budget_usd,
            budget_period=fields.budget_period,
            expires_at=fields.expires_at,
            metadata=fields.metadata or {},
            created_at=self._clock(),
        )
        await self.store.create(key)
        return key, secret

    async def list(self) -> list[VirtualKey]:
        """Every key, revoked ones included."""
        return await self.store.list()

    async def get(self, key_id: str) -> VirtualKey:
        """One key by id (404 when unknown)."""
        key = await self.store.get(key_id) if len(key_id) <= 64 else None
        if key is None:
            raise NotFound(f"no key with id '{key_id[:64]}'", param="id")
        return key

    async def update(self, key_id: str, changes: KeyChanges) -> VirtualKey:
        """Change some fields of a key."""
        key = await self.get(key_id)
        values: dict[str, Any] = {
            name: getattr(changes, name)
            for name in changes.__struct_fields__
            if getattr(changes, name) is not msgspec.UNSET
        }
        if "models" in values:
            values["models"] = tuple(values["models"] or ())
        if "metadata" in values:
            values["metadata"] = values["metadata"] or {}
        if "name" in values:
            values["name"] = values["name"].strip()
        updated = replace(key, **values)
        await self.store.replace(updated)
        self._forget(updated.key_hash)
        return updated

    async def revoke(self, key_id: str) -> VirtualKey:
        """Revoke a key: it stops working at once on this process (within the cache time elsewhere)."""
        key = await self.get(key_id)
        revoked = replace(key, revoked=True)
        await self.store.replace(revoked)
        self._forget(key.key_hash)
        return revoked

    async def caller_for(self, key_id: str) -> Caller:
        """The caller a key id stands for now (a batch job's owner): 401 once revoked or expired."""
        key = await self.get(key_id)
        if key.revoked:
            raise AuthenticationError("The API key that made this batch has been revoked.")
        if key.expires_at is not None and key.expires_at <= self._clock():
            raise AuthenticationError("The API key that made this batch has expired.")
        return caller_of(key)

    async def authenticate(self, secret: str) -> Caller:
        """The caller a bearer token belongs to; 401 when unknown, revoked or expired."""
        digest = hash_key(secret)
        key = await self._lookup(digest)
        if key is None or not hmac.compare_digest(key.key_hash, digest):
            raise AuthenticationError("Invalid API key.")
        if key.revoked:
            raise AuthenticationError("This API key has been revoked.")
        if key.expires_at is not None and key.expires_at <= self._clock():
            raise AuthenticationError("This API key has expired.")
        return caller_of(key)

    async def _lookup(self, digest: str) -> VirtualKey | None:
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[1] < self.cache_seconds:
            return cached[0]
        try:
            key = await self.store.find(digest)
        except StateUnavailable:
            if cached is not None:  # the database is down: a key seen before keeps working
                return cached[0]
            raise Overloaded("The key store is unreachable; try again shortly.", retry_after=5) from None
        if len(self._cache) >= MAX_CACHED:
            self._cache.clear()  # unknown tokens come from callers: keep the cache bounded
        self._cache[digest] = (key, now)
        return key

    def _forget(self, digest: str) -> None:
        self._cache.pop(digest, None)


def caller_of(key: VirtualKey) -> Caller:
    """The identity a virtual key grants."""
    return Caller(
        key_id=key.id,
        name=key.name,
        models=key.models,
        rpm=key.rpm,
        tpm=key.tpm,
        max_parallel=key.max_parallel,
        budget_usd=key.budget_usd,
        budget_period=key.budget_period,
    )


def key_view(key: VirtualKey) -> Mapping[str, Any]:
    """A key as the admin API shows it: everything but the secret and its hash."""
    return {
        "id": key.id,
        "name": key.name,
        "key_prefix": key.key_prefix,
        "models": list(key.models),
        "rpm": key.rpm,
        "tpm": key.tpm,
        "max_parallel": key.max_parallel,
        "budget_usd": key.budget_usd,
        "budget_period": key.budget_period,
        "expires_at": key.expires_at,
        "metadata": dict(key.metadata),
        "created_at": key.created_at,
        "revoked": key.revoked,
    }

"""KeyService: virtual keys created, listed, updated, revoked; callers authenticated through a short cache."""

from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Any

import msgspec
import pytest

from clock import FakeClock
from llmgate.core.errors import AuthenticationError, InvalidRequest, NotFound, Overloaded
from llmgate.policies.keys import (
    KEY_PREFIX,
    MAX_METADATA_BYTES,
    KeyChanges,
    KeyFields,
    KeyService,
    fields_from,
    hash_key,
    key_view,
)
from llmgate.state.memory import MemoryKeyStore
from llmgate.state.ports import StateUnavailable, VirtualKey


class Store(MemoryKeyStore):
    """A memory key store that counts lookups and can be switched off like an unreachable database."""

    def __init__(self) -> None:
        super().__init__()
        self.finds = 0
        self.down = False

    async def find(self, key_hash: str) -> VirtualKey | None:
        self.finds += 1
        if self.down:
            raise StateUnavailable("connection refused")
        return await super().find(key_hash)


@pytest.fixture
def store() -> Store:
    return Store()


@pytest.fixture
def service(store: Store, clock: FakeClock) -> KeyService:
    return KeyService(store, cache_seconds=5.0, clock=clock)


def fields(**values: Any) -> KeyFields:
    return fields_from({"name": "team-a", **values}, KeyFields)  # type: ignore[no-any-return]


async def test_create_returns_the_secret_once_and_stores_only_its_hash(
    service: KeyService, store: Store, clock: FakeClock
) -> None:
    key, secret = await service.create(
        fields(models=["chat"], rpm=10, tpm=1000, max_parallel=2, budget_usd=5, metadata={"team": "a"})
    )
    assert secret.startswith(KEY_PREFIX) and len(secret) > len(KEY_PREFIX) + 40
    assert key.key_hash == hashlib.sha256(secret.encode()).hexdigest() == hash_key(secret)
    assert key.key_prefix == secret[: len(KEY_PREFIX) + 4]
    stored = await store.get(key.id)
    assert stored is not None
    assert secret not in repr(stored)
    assert (stored.name, stored.models, stored.rpm, stored.tpm, stored.max_parallel) == (
        "team-a",
        ("chat",),
        10,
        1000,
        2,
    )
    assert (stored.budget_usd, stored.budget_period, stored.created_at) == (5.0, "total", clock())
    view = key_view(stored)
    assert "key" not in view and "key_hash" not in view
    assert secret not in repr(view) and stored.key_hash not in repr(view)
    assert [k.id for k in await service.list()] == [key.id]
    _, other = await service.create(fields())
    assert other != secret


async def test_authenticate_gives_the_keys_caller(service: KeyService) -> None:
    key, secret = await service.create(fields(models=["a"], rpm=3, budget_usd=1.5, budget_period="day"))
    caller = await service.authenticate(secret)
    assert caller.key_id == key.id
    assert caller.name == "team-a"
    assert caller.models == ("a",)
    assert caller.rpm == 3 and caller.tpm is None
    assert caller.budget_usd == 1.5 and caller.budget_period == "day"
    assert not caller.admin


async def test_unknown_revoked_and_expired_keys_are_refused(service: KeyService, clock: FakeClock) -> None:
    with pytest.raises(AuthenticationError, match="Invalid API key"):
        await service.authenticate(KEY_PREFIX + "x" * 43)
    revoked, revoked_secret = await service.create(fields())
    await service.revoke(revoked.id)
    with pytest.raises(AuthenticationError, match="revoked"):
        await service.authenticate(revoked_secret)
    _, expiring = await service.create(fields(expires_at=clock() + 10))
    await service.authenticate(expiring)
    clock.advance(10)
    with pytest.raises(AuthenticationError, match="expired"):
        await service.authenticate(expiring)  # the expiry is checked even on a cached key


async def test_revoke_applies_at_once_despite_the_cache(service: KeyService, store: Store) -> None:
    key, secret = await service.create(fields())
    await service.authenticate(secret)
    revoked = await service.revoke(key.id)
    assert revoked.revoked
    with pytest.raises(AuthenticationError):
        await service.authenticate(secret)
    stored = await store.get(key.id)
    assert stored is not None and stored.revoked


async def test_update_applies_at_once(service: KeyService) -> None:
    key, secret = await service.create(fields(rpm=5, models=["a"], metadata={"x": 1}))
    await service.authenticate(secret)
    changes = fields_from({"rpm": 50, "models": None, "name": " renamed "}, KeyChanges)
    updated = await service.update(key.id, changes)
    assert (updated.rpm, updated.models, updated.name, updated.metadata) == (50, (), "renamed", {"x": 1})
    caller = await service.authenticate(secret)
    assert caller.rpm == 50 and caller.models == () and caller.name == "renamed"
    cleared = await service.update(key.id, fields_from({"metadata": None, "rpm": None}, KeyChanges))
    assert cleared.metadata == {} and cleared.rpm is None


async def test_unknown_ids_are_404(service: KeyService) -> None:
    for key_id in ("key_missing", "x" * 500):
        with pytest.raises(NotFound):
            await service.get(key_id)
        with pytest.raises(NotFound):
            await service.revoke(key_id)
        with pytest.raises(NotFound):
            await service.update(key_id, fields_from({"rpm": 1}, KeyChanges))


async def test_lookups_are_cached_for_cache_seconds(
    service: KeyService, store: Store, clock: FakeClock
) -> None:
    key, secret = await service.create(fields())
    await service.authenticate(secret)
    await service.authenticate(secret)
    assert store.finds == 1
    # Revoked elsewhere (another replica writing the shared database): seen once the cache entry ages out.
    await store.replace(replace(key, revoked=True))
    clock.advance(4.9)
    await service.authenticate(secret)
    clock.advance(0.2)
    with pytest.raises(AuthenticationError, match="revoked"):
        await service.authenticate(secret)
    assert store.finds == 2


async def test_database_down_keeps_known_keys_working(
    service: KeyService, store: Store, clock: FakeClock
) -> None:
    key, secret = await service.create(fields())
    await service.authenticate(secret)
    store.down = True
    clock.advance(60)  # long past the cache time: the store is asked, fails, the known key still works
    caller = await service.authenticate(secret)
    assert caller.key_id == key.id
    _, unseen = await service.create(fields())
    with pytest.raises(Overloaded) as refused:
        await service.authenticate(unseen)
    assert refused.value.status == 503 and refused.value.retry_after == 5
    store.down = False
    assert (await service.authenticate(unseen)).name == "team-a"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"name": "a", "rpm": "10"}, "rpm"),
        ({"name": "a", "rpm": True}, "rpm"),
        ({"name": "a", "tpm": 1.5}, "tpm"),
        ({"name": "a", "rpm": 0}, "rpm"),
        ({"name": "a", "max_parallel": -1}, "max_parallel"),
        ({"name": "a", "budget_usd": -0.01}, "budget_usd"),
        ({"name": "a", "budget_usd": "5"}, "budget_usd"),
        ({"name": "a", "budget_period": "week"}, "budget_period"),
        ({"name": "a", "expires_at": "tomorrow"}, "expires_at"),
        ({"name": "a", "models": "chat"}, "models"),
        ({"name": "a", "models": [""]}, "models"),
        ({"name": "a", "models": ["a", 1]}, "models[1]"),
        ({"name": "a", "metadata": [1]}, "metadata"),
        ({"name": "a", "metadata": {"x": "y" * MAX_METADATA_BYTES}}, "metadata"),
        ({"name": ""}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "n" * 201}, "name"),
        ({"name": 5}, "name"),
    ],
)
def test_create_fields_name_the_bad_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        fields_from(body, KeyFields)
    assert refused.value.param == param
    assert refused.value.status == 400


@pytest.mark.parametrize(
    ("body", "param"),
    [({"rpm": -5}, "rpm"), ({"name": None}, "name"), ({"budget_period": None}, "budget_period")],
)
def test_change_fields_name_the_bad_param(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        fields_from(body, KeyChanges)
    assert refused.value.param == param


@pytest.mark.parametrize("body", [[], "name", None, 5])
def test_a_body_that_is_not_an_object_is_refused(body: object) -> None:
    with pytest.raises(InvalidRequest, match="JSON object"):
        fields_from(body, KeyFields)


def test_valid_fields_are_converted() -> None:
    converted = fields_from({"name": "a", "budget_usd": 5, "expires_at": 1_900_000_000}, KeyFields)
    assert converted.budget_usd == 5.0 and converted.budget_period == "total"
    changes = fields_from({}, KeyChanges)
    assert changes.rpm is msgspec.UNSET and changes.models is msgspec.UNSET  # nothing changes


@pytest.mark.parametrize(("body", "param"), [({"name": "a", "colour": "red"}, "colour"), ({}, "name")])
def test_unknown_and_missing_fields_are_named(body: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as refused:
        fields_from(body, KeyFields)
    assert refused.value.param == param


def test_absurd_limits_are_refused() -> None:
    with pytest.raises(InvalidRequest) as refused:
        fields_from({"name": "a", "rpm": 2**63}, KeyFields)
    assert refused.value.param == "rpm"

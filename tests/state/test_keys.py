"""``KeyStore`` conformance: memory, SQLite and PostgreSQL behave the same."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest

from llmgate.state import KeyExists, VirtualKey

from .conftest import Backend

FULL = VirtualKey(
    id="key_full",
    name="team a",
    key_hash="hash-full",
    key_prefix="sk-abcde",
    models=("gpt-4o", "claude"),
    rpm=60,
    tpm=90_000,
    max_parallel=4,
    budget_usd=12.5,
    budget_period="month",
    expires_at=1_800_000_000.25,
    metadata={"team": "a", "tags": ["x", "y"], "nested": {"n": 1, "ok": True, "none": None}},
    created_at=1_700_000_000.5,
    revoked=False,
)
BARE = VirtualKey(id="key_bare", name="bare", key_hash="hash-bare", key_prefix="sk-zzzzz")


async def test_create_then_get_and_find_round_trip_every_field(keys: Backend[Any]) -> None:
    store = await keys.client()
    await store.create(FULL)
    await store.create(BARE)
    assert await store.get("key_full") == FULL
    assert await store.find("hash-full") == FULL
    assert await store.get("key_bare") == BARE
    assert (await store.get("key_bare")).models == ()


async def test_unknown_id_or_hash_is_none(keys: Backend[Any]) -> None:
    store = await keys.client()
    await store.create(BARE)
    assert await store.get("nope") is None
    assert await store.find("nope") is None
    assert await store.find("key_bare") is None  # ids are not hashes


async def test_duplicate_id_or_hash_is_refused(keys: Backend[Any]) -> None:
    store = await keys.client()
    await store.create(FULL)
    with pytest.raises(KeyExists):
        await store.create(replace(BARE, id="key_full"))
    with pytest.raises(KeyExists):
        await store.create(replace(BARE, key_hash="hash-full"))
    assert await store.list() == [FULL]


async def test_list_is_ordered_by_creation_time(keys: Backend[Any]) -> None:
    store = await keys.client()
    later = replace(BARE, id="later", key_hash="h-later", created_at=300.0)
    first = replace(BARE, id="first", key_hash="h-first", created_at=100.0)
    middle = replace(BARE, id="middle", key_hash="h-middle", created_at=200.0)
    for key in (later, first, middle):
        await store.create(key)
    assert [key.id for key in await store.list()] == ["first", "middle", "later"]


async def test_replace_overwrites_and_reindexes_the_hash(keys: Backend[Any]) -> None:
    store = await keys.client()
    await store.create(FULL)
    changed = replace(FULL, name="renamed", key_hash="hash-new", revoked=True, rpm=None, metadata={})
    assert await store.replace(changed) is True
    assert await store.get("key_full") == changed
    assert await store.find("hash-new") == changed
    assert await store.find("hash-full") is None


async def test_replace_unknown_id_is_false(keys: Backend[Any]) -> None:
    store = await keys.client()
    assert await store.replace(BARE) is False
    assert await store.list() == []


async def test_replace_onto_another_keys_hash_is_refused(keys: Backend[Any]) -> None:
    store = await keys.client()
    await store.create(FULL)
    await store.create(BARE)
    with pytest.raises(KeyExists):
        await store.replace(replace(BARE, key_hash="hash-full"))
    assert await store.find("hash-bare") == BARE


async def test_other_clients_see_the_same_keys(keys: Backend[Any]) -> None:
    writer = await keys.client()
    await writer.create(FULL)
    reader = await keys.client()
    assert await reader.find("hash-full") == FULL


async def test_stored_metadata_is_detached_from_the_callers_dict(keys: Backend[Any]) -> None:
    store = await keys.client()
    metadata: dict[str, object] = {"a": 1}
    await store.create(replace(BARE, metadata=metadata))
    metadata["a"] = 2
    assert (await store.get("key_bare")).metadata == {"a": 1}

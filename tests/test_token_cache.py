"""Bearer tokens are remembered for a few seconds so a busy app is not a database read per
request; a revocation here applies at once, one elsewhere within the cache's ttl."""

from __future__ import annotations

import asyncio

import sqlalchemy as sa

from hub import schema
from hub.appkeys import TOKEN_CACHE
from hub.users import TokenCache, authenticate_token, create_token, create_user
from tests.conftest import Hub


async def test_a_token_revoked_by_another_process_stops_working_within_the_ttl(lite_hub: Hub) -> None:
    hub = lite_hub
    hub.client.app[TOKEN_CACHE].ttl = 0.3
    db = hub.store.db
    user = await create_user(db, "dana@example.com", "agent", None)
    token = await create_token(db, user["id"])
    headers = {"Authorization": f"Bearer {token}"}
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 200
    # What `hub` CLI in another process does: delete the token row behind this process's back.
    async with db.write() as conn:
        await conn.execute(schema.api_tokens.delete().where(schema.api_tokens.c.user_id == user["id"]))
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 200  # still cached
    await asyncio.sleep(0.35)
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 401


async def test_a_deactivated_user_is_refused_once_the_entry_expires(lite_hub: Hub) -> None:
    hub = lite_hub
    hub.client.app[TOKEN_CACHE].ttl = 0.2
    db = hub.store.db
    user = await create_user(db, "erin@example.com", "agent", None)
    headers = {"Authorization": f"Bearer {await create_token(db, user['id'])}"}
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 200
    async with db.write() as conn:
        await conn.execute(schema.users.update().where(schema.users.c.id == user["id"]).values(active=False))
    await asyncio.sleep(0.25)
    assert (await hub.client.get("/api/v1/me", headers=headers)).status == 401


async def test_unknown_tokens_are_not_remembered_and_hits_skip_the_database(lite_hub: Hub) -> None:
    db = lite_hub.store.db
    cache = TokenCache(ttl=60)
    assert await authenticate_token(db, "hub_not-a-token", cache) is None
    assert cache._entries == {}
    user = await create_user(db, "fay@example.com", "agent", None)
    token = await create_token(db, user["id"])
    found = await authenticate_token(db, token, cache)
    assert found is not None and found["id"] == user["id"]
    assert "password_hash" not in found
    # With the row gone, only the cache can answer: it does, until dropped.
    async with db.write() as conn:
        await conn.execute(sa.delete(schema.api_tokens))
    assert (await authenticate_token(db, token, cache) or {}).get("id") == user["id"]
    cache.clear()
    assert await authenticate_token(db, token, cache) is None


def test_the_cache_is_bounded_and_drops_the_oldest() -> None:
    cache = TokenCache(ttl=60, max_entries=3)
    for i in range(5):
        cache.put(f"h{i}", {"id": i})
    assert [cache.get(f"h{i}") for i in range(5)] == [None, None, {"id": 2}, {"id": 3}, {"id": 4}]

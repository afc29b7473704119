"""The durable inbound pipeline, on SQLite and PostgreSQL: duplicates, batches, statuses, crashes."""

from __future__ import annotations

import asyncio
from typing import Any

import sqlalchemy as sa

from hub import schema
from hub.appkeys import CHANNELS, PROCESSOR, RAW_INBOX
from hub.inbound import InboundProcessor
from tests.conftest import Hub, eventually


def msg(
    mid: str, text: str = "hi", who: str = "alice", ts: int = 1_700_000_000, **extra: Any
) -> dict[str, Any]:
    return {"type": "message", "id": mid, "from": who, "name": who.title(), "text": text, "ts": ts, **extra}


async def count(hub: Hub, table: sa.Table, *where: Any) -> int:
    async with hub.store.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


# What the fixture's channel set-up emits (the channel, who serves it, their scope changing).
SETUP_EVENTS = {"channel.updated", "channel.members_updated", "access.changed", "config.updated"}


async def test_webhook_becomes_message_conversation_and_events(hub: Hub) -> None:
    resp = await hub.webhook(msg("m1", "Hello ☕"))
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    evs = await eventually(lambda: _types(hub, {"message.created"}))
    evs = [e for e in evs if e["type"] not in SETUP_EVENTS]
    types = [e["type"] for e in evs]
    assert types == ["conversation.created", "message.created"]
    created = evs[1]["data"]
    assert created["text"] == "Hello ☕"
    assert created["direction"] == "inbound"
    assert created["kind"] == "text"
    assert created["status"] == "received"
    assert created["external_id"] == "m1"
    assert created["created_at"].startswith("2023-11-14T22:13:20")
    conv = (await hub.conversations())[0]
    assert conv["contact"]["name"] == "Alice"
    assert conv["contact"]["identities"] == ["fake:alice"]
    assert conv["unread_count"] == 1
    assert [e["seq"] for e in evs] == sorted(e["seq"] for e in evs)


async def _types(hub: Hub, wanted: set[str]) -> list[dict[str, Any]] | None:
    evs = await hub.events()
    return evs if wanted <= {e["type"] for e in evs} else None


async def test_concurrent_copies_of_one_delivery_have_one_effect(hub: Hub) -> None:
    answers = await asyncio.gather(*(hub.webhook(msg("dup-1")) for _ in range(20)))
    assert [r.status for r in answers] == [200] * 20
    statuses = sorted([(await r.json())["status"] for r in answers])
    assert statuses.count("ok") == 1 and statuses.count("duplicate") == 19
    await eventually(lambda: _types(hub, {"message.created"}))
    await asyncio.sleep(0.1)
    assert await count(hub, schema.raw_events) == 1
    assert await count(hub, schema.messages) == 1
    assert [e["type"] for e in await hub.events()].count("message.created") == 1


async def test_same_message_in_different_deliveries_is_stored_once(hub: Hub) -> None:
    await hub.webhook(msg("same", "first copy"))
    await hub.webhook(msg("same", "first copy"), msg("other", "new"))
    await eventually(lambda: count_eq(hub, schema.messages, 2))
    await asyncio.sleep(0.1)
    assert await count(hub, schema.raw_events) == 2
    assert await count(hub, schema.messages) == 2


async def count_eq(hub: Hub, table: sa.Table, n: int) -> bool:
    return await count(hub, table) == n


async def test_every_element_of_a_batch_is_processed(hub: Hub) -> None:
    batch = [msg(f"b{i}", f"text {i}", who=f"user{i % 5}", ts=1_700_000_000 + i) for i in range(60)]
    resp = await hub.webhook(*batch)
    assert resp.status == 200
    await eventually(lambda: count_eq(hub, schema.messages, 60))
    assert len(await hub.conversations()) == 5
    created = [e for e in await hub.events() if e["type"] == "message.created"]
    assert sorted(e["data"]["external_id"] for e in created) == sorted(f"b{i}" for i in range(60))


async def test_statuses_only_move_forward(hub: Hub) -> None:
    conv = await _conversation_with_sent_message(hub)
    mid, ext = conv
    for status, ts in [("read", 30), ("delivered", 20), ("sent", 10), ("delivered", 20), ("failed", 40)]:
        await hub.webhook({"type": "status", "id": ext, "status": status, "ts": 1_700_000_000 + ts})
    await eventually(lambda: _processed_all(hub))
    resp = await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.agent)
    data = await resp.json()
    assert data["status"] == "read"
    assert set(data["status_at"]) >= {"sent", "delivered", "read"}
    updates = [
        e["data"]["status"]
        for e in await hub.events()
        if e["type"] == "message.updated" and e["data"]["id"] == mid
    ]
    assert updates == ["sent", "read"], updates


async def test_failed_is_terminal(hub: Hub) -> None:
    mid, ext = await _conversation_with_sent_message(hub)
    await hub.webhook(
        {
            "type": "status",
            "id": ext,
            "status": "failed",
            "ts": 1_700_000_050,
            "error": {"code": 131026, "title": "Message undeliverable"},
        }
    )
    await hub.webhook({"type": "status", "id": ext, "status": "delivered", "ts": 1_700_000_060})
    await eventually(lambda: _processed_all(hub))
    data = await (await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.agent)).json()
    assert data["status"] == "failed"
    assert data["error"] == {"code": 131026, "title": "Message undeliverable"}


async def _processed_all(hub: Hub) -> bool:
    return await count(hub, schema.raw_events, schema.raw_events.c.state == "pending") == 0


async def _conversation_with_sent_message(hub: Hub) -> tuple[str, str]:
    await hub.webhook(msg("in-1"))
    conv = (await eventually(hub.conversations))[0]
    resp = await hub.client.post(
        f"/api/v1/conversations/{conv['id']}/messages",
        json={"text": "reply"},
        headers={**hub.agent, "Idempotency-Key": "k-status"},
    )
    assert resp.status == 202, await resp.text()
    mid = (await resp.json())["id"]

    async def sent() -> dict[str, Any] | None:
        data = await (await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.agent)).json()
        return data if data["status"] == "sent" else None

    data = await eventually(sent)
    return mid, data["external_id"]


async def test_reactions_are_set_changed_and_removed(hub: Hub) -> None:
    await hub.webhook(msg("target"))
    await eventually(lambda: count_eq(hub, schema.messages, 1))
    conv = (await hub.conversations())[0]
    for emoji in ["👍", "❤️", ""]:
        await hub.webhook(
            {
                "type": "reaction",
                "id": f"r-{emoji}",
                "target": "target",
                "from": "alice",
                "emoji": emoji,
                "ts": 1_700_000_100,
            }
        )
        await eventually(lambda: _processed_all(hub))
        m = (await hub.messages(conv["id"]))[0]
        assert [r["emoji"] for r in m["reactions"]] == ([emoji] if emoji else [])


async def test_a_delivery_stored_before_a_crash_is_processed_at_start(hub: Hub) -> None:
    # Store as the webhook does, with no processor running: the state a kill after 200 leaves.
    await hub.client.app[PROCESSOR].stop()
    resp = await hub.webhook(msg("crash-1"), msg("crash-2"))
    assert resp.status == 200
    await asyncio.sleep(0.1)
    assert await count(hub, schema.messages) == 0
    fresh = InboundProcessor(hub.store, hub.client.app[CHANNELS])
    await fresh.start()
    try:
        await eventually(lambda: count_eq(hub, schema.messages, 2))
    finally:
        await fresh.stop()


async def test_parser_bug_keeps_the_delivery_for_replay(hub: Hub, monkeypatch: Any) -> None:
    def broken(self: Any, raw: Any) -> list[Any]:
        raise RuntimeError("parser bug")

    monkeypatch.setattr(hub.fake, "parse", broken)
    resp = await hub.webhook(msg("buggy"))
    assert resp.status == 200  # never a 500 for a parser bug: the provider would redeliver forever
    await eventually(lambda: _state_is(hub, "failed"))
    monkeypatch.undo()
    proc = InboundProcessor(hub.store, hub.client.app[CHANNELS])
    async with hub.store.db.read() as conn:
        row = (await conn.execute(sa.select(schema.raw_events))).mappings().one()
    await proc.process_one(dict(row))
    assert await count(hub, schema.messages) == 1
    assert await _state_is(hub, "done")


async def _state_is(hub: Hub, state: str) -> bool:
    return await count(hub, schema.raw_events, schema.raw_events.c.state == state) == 1


async def test_bad_signature_and_bad_json_store_nothing(hub: Hub) -> None:
    body = b'{"events": [{"type": "message", "id": "x", "from": "a", "text": "t", "ts": 1}]}'
    no_sig = await hub.client.post("/webhooks/fk", data=body)
    assert no_sig.status == 401
    assert (await no_sig.json())["error"]["code"] == "bad_signature"
    wrong = await hub.client.post(
        "/webhooks/fk", data=body, headers={"X-Fake-Signature": "sha256=" + "0" * 64}
    )
    assert wrong.status == 401
    from hub.testing.fake_channel import sign

    garbage = b'{"events": [ nope'
    bad_json = await hub.client.post(
        "/webhooks/fk", data=garbage, headers=sign("fake-webhook-secret-3f9a", garbage)
    )
    assert bad_json.status == 400
    err = (await bad_json.json())["error"]
    assert err["code"] == "bad_payload" and "JSON" in err["message"]
    assert await count(hub, schema.raw_events) == 0
    assert {e["type"] for e in await hub.events()} <= SETUP_EVENTS  # nothing about messages


async def test_contact_with_two_ids_is_one_contact(hub: Hub) -> None:
    hub.client.app[RAW_INBOX]  # the pipeline under test
    from hub.models import ContactRef
    from hub.records import ensure_contact

    async with hub.store.tx() as tx:
        a = await ensure_contact(tx, "fk", ContactRef(ids=["wa:1555"]))
        b = await ensure_contact(tx, "fk", ContactRef(ids=["bsuid:US.1", "wa:1555"]))
        c = await ensure_contact(tx, "fk", ContactRef(ids=["bsuid:US.1"]))
    assert a == b == c
    assert await count(hub, schema.contacts) == 1
    assert await count(hub, schema.contact_identities) == 2


async def test_stored_delivery_never_keeps_a_secret_or_credentials(hub: Hub) -> None:
    resp = await hub.webhook(
        msg("sec-1"),
        headers={
            "X-Echoed-Secret": "fake-webhook-secret-3f9a",
            "Authorization": "Bearer abc",
            "X-Other": "kept",
        },
    )
    assert resp.status == 200
    async with hub.store.db.read() as conn:
        headers = (await conn.execute(sa.select(schema.raw_events.c.headers))).scalar_one()
    assert headers["x-echoed-secret"] == "[redacted]"
    assert "authorization" not in headers
    assert headers["x-other"] == "kept"
    assert "fake-webhook-secret-3f9a" not in repr(headers)


async def test_a_failing_delivery_in_a_batch_holds_back_only_itself(hub: Hub, monkeypatch: Any) -> None:
    import hub.inbound as inbound

    await hub.client.app[PROCESSOR].stop()
    real = inbound.apply_messages

    async def poisoned(tx: Any, items: Any) -> None:
        if any(ev.external_id == "poison" for _, ev in items):
            raise RuntimeError("storage refused this one")
        await real(tx, items)

    monkeypatch.setattr(inbound, "apply_messages", poisoned)
    for mid in ["ok-1", "poison", "ok-2"]:
        assert (await hub.webhook(msg(mid, who=mid))).status == 200
    proc = InboundProcessor(hub.store, hub.client.app[CHANNELS])
    assert await proc.process_pending() == 3
    async with hub.store.db.read() as conn:
        rows = (await conn.execute(sa.select(schema.raw_events.c.state, schema.raw_events.c.attempts))).all()
        stored = (await conn.scalars(sa.select(schema.messages.c.external_id))).all()
    assert sorted(stored) == ["ok-1", "ok-2"]
    assert sorted(tuple(r) for r in rows) == [("done", 0), ("done", 0), ("pending", 1)]
    created = [e for e in await hub.events() if e["type"] == "message.created"]
    assert sorted(e["data"]["external_id"] for e in created) == ["ok-1", "ok-2"]

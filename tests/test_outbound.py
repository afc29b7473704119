"""The outbound pipeline: send requests, idempotency, validation, every SendErrorClass, the reply
window, receipts that beat the send, retry, cancel and uploads."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from aiohttp.test_utils import TestClient
from argon2 import PasswordHasher

from hub import schema
from hub.appkeys import CHANNELS, OUTBOX
from hub.channel import ReplyWindowPolicy
from hub.config import HubConfig
from hub.errors import SendError, SendErrorClass
from hub.models import utcnow
from hub.outbound import OutboxWorker
from hub.testing.fake_channel import FakeChannel, FakePlugin
from hub.web.app import create_app
from tests.conftest import Hub, eventually

M = schema.messages
O = schema.outbox  # noqa: E741
_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters for the fixture users (the real ones cost ~0.5 s a hash)."""
    monkeypatch.setattr("hub.users.hash_password", _cheap.hash)


def msg(mid: str, who: str = "alice", ts: float | None = None, text: str = "hi") -> dict[str, Any]:
    return {
        "type": "message",
        "id": mid,
        "from": who,
        "name": who.title(),
        "text": text,
        "ts": int(ts if ts is not None else time.time()),
    }


async def conversation(hub: Hub, who: str = "alice", ts: float | None = None) -> str:
    """The id of a conversation with ``who``, created by an inbound message."""
    resp = await hub.webhook(msg(f"in-{who}-{ts}", who, ts))
    assert resp.status == 200

    async def find() -> str | None:
        for c in await hub.conversations():
            if c["contact"]["identities"] == [f"fake:{who}"]:
                return str(c["id"])
        return None

    return str(await eventually(find))


async def send(hub: Hub, conv: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {**hub.agent, **({"Idempotency-Key": key} if key else {})}
    return await hub.client.post(f"/api/v1/conversations/{conv}/messages", json=body, headers=headers)


async def queued(hub: Hub, conv: str, body: dict[str, Any], key: str | None = None) -> str:
    resp = await send(hub, conv, body, key)
    assert resp.status == 202, await resp.text()
    data = await resp.json()
    assert data["status"] == "queued"
    return str(data["id"])


async def get_message(hub: Hub, mid: str) -> dict[str, Any]:
    resp = await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.agent)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def status_is(hub: Hub, mid: str, *statuses: str, within: float = 10.0) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        m = await get_message(hub, mid)
        return m if m["status"] in statuses else None

    result: dict[str, Any] = await eventually(check, within=within)
    return result


async def job(hub: Hub, mid: str) -> dict[str, Any]:
    async with hub.store.db.read() as conn:
        row = (await conn.execute(sa.select(O).where(O.c.message_id == mid))).mappings().one()
    return dict(row)


async def count(hub: Hub, table: sa.Table, *where: Any) -> int:
    async with hub.store.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


async def admin_channel(hub: Hub, cid: str = "fk") -> dict[str, Any]:
    resp = await hub.client.get(f"/api/v1/admin/channels/{cid}", headers=hub.admin)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def patch_settings(hub: Hub, cid: str = "fk", **settings: Any) -> dict[str, Any]:
    resp = await hub.client.patch(
        f"/api/v1/admin/channels/{cid}", json={"settings": settings}, headers=hub.admin
    )
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


# ---- the happy path and idempotency ------------------------------------------------------------


async def test_send_text_is_queued_then_sent(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    resp = await send(hub, conv, {"text": "Hello from the hub ✓"})
    assert resp.status == 202
    body = await resp.json()
    mid = body["id"]
    assert body["status"] == "queued"
    assert body["direction"] == "outbound"
    assert body["kind"] == "text"
    assert body["conversation_id"] == conv
    assert body["channel_id"] == "fk"
    assert body["external_id"] is None
    m = await status_is(hub, mid, "sent")
    assert m["external_id"] == f"fake-out-{mid}"
    assert "sent" in m["status_at"] and "queued" in m["status_at"]
    assert len(hub.fake.sent) == 1
    out = hub.fake.sent[0]
    assert out.id == mid
    assert out.channel_id == "fk"
    assert out.conversation_id == conv
    assert out.recipient.ids == ["fake:alice"]
    assert out.recipient.name == "Alice"
    assert out.text == "Hello from the hub ✓"
    assert out.kind.value == "text"
    assert out.attachments == []
    row = await job(hub, mid)
    assert (row["state"], row["attempts"]) == ("done", 1)
    events = [e for e in await hub.events() if e["data"].get("id") == mid]
    assert [(e["type"], e["data"]["status"]) for e in events] == [
        ("message.created", "queued"),
        ("message.updated", "sent"),
    ]
    assert events[0]["conversation_id"] == conv


async def test_same_idempotency_key_twice_is_one_message(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    first = await send(hub, conv, {"text": "once"}, key="key-1")
    assert first.status == 202
    assert "Idempotent-Replayed" not in first.headers
    mid = (await first.json())["id"]
    await status_is(hub, mid, "sent")
    again = await send(hub, conv, {"text": "once"}, key="key-1")
    assert again.status == 200
    assert again.headers.get("Idempotent-Replayed") == "true"
    replay = await again.json()
    assert replay["id"] == mid
    assert replay["status"] == "sent"
    await asyncio.sleep(0.1)
    assert [m.id for m in hub.fake.sent] == [mid]
    assert await count(hub, M, M.c.direction == "outbound") == 1


async def test_concurrent_requests_with_one_key_make_one_message(hub: Hub) -> None:
    conv = await conversation(hub)
    answers = await asyncio.gather(*(send(hub, conv, {"text": "race"}, key="race-key") for _ in range(10)))
    statuses = sorted(r.status for r in answers)
    assert statuses == [200] * 9 + [202], [await r.text() for r in answers]
    ids = {(await r.json())["id"] for r in answers}
    assert len(ids) == 1
    (mid,) = ids
    await status_is(hub, mid, "sent")
    await asyncio.sleep(0.1)
    assert [m.id for m in hub.fake.sent] == [mid]
    assert await count(hub, M, M.c.direction == "outbound") == 1
    assert await count(hub, O) == 1
    created = [e for e in await hub.events() if e["type"] == "message.created" and e["data"]["id"] == mid]
    assert len(created) == 1


async def test_same_key_with_a_different_body_is_refused(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    await queued(hub, conv, {"text": "first"}, key="k")
    resp = await send(hub, conv, {"text": "second"}, key="k")
    assert resp.status == 422
    err = (await resp.json())["error"]
    assert err["code"] == "idempotency_key_reused"
    assert "Idempotency-Key" in err["message"]
    assert await count(hub, M, M.c.direction == "outbound") == 1


async def test_same_key_for_another_conversation_is_refused(lite_hub: Hub) -> None:
    hub = lite_hub
    first = await conversation(hub, "alice")
    other = await conversation(hub, "bob")
    await queued(hub, first, {"text": "same words"}, key="k-conv")
    for target in (other, "cv_does_not_exist"):
        resp = await send(hub, target, {"text": "same words"}, key="k-conv")
        assert resp.status in (404, 422), (target, resp.status, await resp.text())
        assert (await resp.json())["error"]["code"] in ("idempotency_key_reused", "not_found")


async def test_requests_the_hub_refuses(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    interactive = {"interactive": {"body": "Pick one", "choices": [{"id": "a", "title": "A"}]}}
    cases: list[tuple[str, dict[str, Any], int, str, Callable[[Any], bool]]] = [
        ("unknown conversation", {"text": "hi"}, 404, "not_found", lambda d: d is None),
        ("empty body", {}, 422, "validation_failed", lambda d: [x["field"] for x in d] == ["text"]),
        (
            "blank text",
            {"text": "   "},
            422,
            "validation_failed",
            lambda d: [x["field"] for x in d] == ["text"],
        ),
        (
            "text too long",
            {"text": "x" * 4097},
            422,
            "validation_failed",
            lambda d: (
                d == [{"field": "text", "message": "text is 4097 characters; this channel allows 4096"}]
            ),
        ),
        (
            "video attachment",
            {"attachments": [{"kind": "video", "url": "https://cdn.test/v.mp4"}]},
            422,
            "validation_failed",
            lambda d: (
                {"field": "attachments", "message": "channel type 'fake' cannot send video messages"} in d
                and {"field": "attachments.0.kind", "message": "this channel cannot send video attachments"}
                in d
            ),
        ),
        (
            "interactive",
            interactive,
            422,
            "validation_failed",
            lambda d: (
                d
                == [
                    {
                        "field": "interactive",
                        "message": "channel type 'fake' cannot send interactive messages",
                    }
                ]
            ),
        ),
        (
            "attachment too big",
            {"attachments": [{"kind": "image", "url": "https://cdn.test/a.png", "size": 5_000_001}]},
            422,
            "validation_failed",
            lambda d: (
                [x["field"] for x in d] == ["attachments.0.size"]
                and "5000001 bytes" in d[0]["message"]
                and "5000000" in d[0]["message"]
            ),
        ),
        (
            "unknown field",
            {"text": "hi", "colour": "red"},
            422,
            "validation_failed",
            lambda d: [x["field"] for x in d] == ["colour"],
        ),
        (
            "two attachment sources",
            {"attachments": [{"kind": "image", "url": "https://x/a.png", "media_id": "m"}]},
            422,
            "validation_failed",
            lambda d: [x["field"] for x in d] == ["attachments.0"],
        ),
    ]
    for name, body, status, code, details_ok in cases:
        target = "cv_nope" if name == "unknown conversation" else conv
        resp = await send(hub, target, body)
        assert resp.status == status, (name, await resp.text())
        err = (await resp.json())["error"]
        assert err["code"] == code, name
        assert details_ok(err["details"]), (name, err)
    await asyncio.sleep(0.1)
    assert await count(hub, M, M.c.direction == "outbound") == 0
    assert await count(hub, O) == 0
    assert hub.fake.sent == []


# ---- error classes -----------------------------------------------------------------------------


async def test_final_error_classes_fail_the_message(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    final = [SendErrorClass.PERMANENT, SendErrorClass.RECIPIENT, SendErrorClass.NEEDS_TEMPLATE]
    for n, error_class in enumerate(final, 1):
        hub.fake.script_errors(error_class)
        mid = await queued(hub, conv, {"text": f"doomed {n}"})
        m = await status_is(hub, mid, "failed", "sent")
        assert m["status"] == "failed", error_class
        assert m["error"] == {
            "class": error_class.value,
            "message": f"scripted {error_class.value} failure",
            "provider_code": f"fake_{error_class.value}",
            "title": error_class.value.replace("_", " "),
        }
        assert m["external_id"] is None
        row = await job(hub, mid)
        assert row["state"] == "failed"
        assert row["last_error"]["class"] == error_class.value
        updated = [e for e in await hub.events() if e["type"] == "message.updated" and e["data"]["id"] == mid]
        assert [e["data"]["status"] for e in updated] == ["failed"]
        assert updated[0]["data"]["error"]["class"] == error_class.value
        assert len(hub.fake.sent) == n
    await asyncio.sleep(0.1)
    assert len(hub.fake.sent) == len(final)  # no retry for a final class


async def test_retryable_once_is_retried_within_the_attempt(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    hub.fake.script_errors(SendErrorClass.RETRYABLE)
    mid = await queued(hub, conv, {"text": "flaky"})
    m = await status_is(hub, mid, "sent", "failed")
    assert m["status"] == "sent"
    assert m["error"] is None
    assert [x.id for x in hub.fake.sent] == [mid, mid]
    row = await job(hub, mid)
    assert (row["state"], row["attempts"]) == ("done", 1)
    # A transport exception raised where the provider call is is classified retryable the same way.
    hub.fake.script_errors(ConnectionResetError("peer reset"))
    mid2 = await queued(hub, conv, {"text": "reset"})
    assert (await status_is(hub, mid2, "sent", "failed"))["status"] == "sent"
    assert [x.id for x in hub.fake.sent] == [mid, mid, mid2, mid2]


async def test_retryable_beyond_quick_retries_is_rescheduled_not_failed(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    outbox = hub.client.app[OUTBOX]
    hub.fake.script_errors(*[SendErrorClass.RETRYABLE] * (outbox.quick_retries + 1))
    mid = await queued(hub, conv, {"text": "outage"})

    async def rescheduled() -> dict[str, Any] | None:
        row = await job(hub, mid)
        return row if row["state"] == "pending" and row["last_error"] else None

    row = await eventually(rescheduled)
    assert row["attempts"] == 1
    assert row["last_error"]["class"] == "retryable"
    assert row["due_at"] > utcnow()
    assert len(hub.fake.sent) == outbox.quick_retries + 1
    assert (await get_message(hub, mid))["status"] == "queued"
    assert (await admin_channel(hub))["health"]["state"] == "unreachable"


async def test_rate_limited_is_rescheduled_then_sent(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    hub.fake.script_errors(
        SendError(SendErrorClass.RATE_LIMITED, "slow down", provider_code="130429", retry_after=0.6)
    )
    hub.client.app[OUTBOX].poll_interval = 0.05
    mid = await queued(hub, conv, {"text": "throttled"})

    async def waiting() -> dict[str, Any] | None:
        row = await job(hub, mid)
        return row if row["last_error"] else None

    row = await eventually(waiting)
    assert row["state"] == "pending"
    assert row["attempts"] == 0  # a throttle is not a failed attempt
    assert row["last_error"] == {
        "class": "rate_limited",
        "message": "slow down",
        "provider_code": "130429",
        "title": None,
    }
    assert (await get_message(hub, mid))["status"] == "queued"
    assert len(hub.fake.sent) == 1
    assert (await admin_channel(hub))["health"]["state"] == "rate_limited"
    m = await status_is(hub, mid, "sent", "failed", within=5)
    assert m["status"] == "sent"
    assert len(hub.fake.sent) == 2


async def test_auth_error_pauses_the_channel_until_new_credentials(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    hub.fake.script_errors(SendErrorClass.AUTH)
    mid = await queued(hub, conv, {"text": "revoked"})

    async def paused() -> dict[str, Any] | None:
        ch = await admin_channel(hub)
        return ch if ch["sending_paused"] else None

    ch = await eventually(paused)
    assert ch["health"]["state"] == "auth_failed"
    assert ch["health"]["last_error"] == "scripted auth failure"
    hub.client.app[OUTBOX].poll_interval = 0.02  # a paused channel must stay unclaimed however often
    await asyncio.sleep(0.2)
    assert len(hub.fake.sent) == 1
    assert (await get_message(hub, mid))["status"] == "queued"
    assert (await job(hub, mid))["state"] == "pending"
    # The app sees the pause too.
    listed = await (await hub.client.get("/api/v1/channels", headers=hub.agent)).json()
    assert [c["sending_paused"] for c in listed["channels"] if c["id"] == "fk"] == [True]
    updated = await patch_settings(hub, secret="a-brand-new-secret-77")
    assert updated["sending_paused"] is False
    m = await status_is(hub, mid, "sent", "failed")
    assert m["status"] == "sent"
    assert len(hub.fake.sent) == 2
    assert (await admin_channel(hub))["sending_paused"] is False


async def test_renaming_a_paused_channel_keeps_it_paused(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    hub.fake.script_errors(SendErrorClass.AUTH, SendErrorClass.AUTH)
    await queued(hub, conv, {"text": "revoked"})

    async def paused() -> bool:
        return bool((await admin_channel(hub))["sending_paused"])

    await eventually(paused)
    resp = await hub.client.patch("/api/v1/admin/channels/fk", json={"name": "Renamed"}, headers=hub.admin)
    assert resp.status == 200
    assert (await resp.json())["sending_paused"] is True


async def test_a_slow_send_or_a_plugin_bug_is_retryable_not_stuck(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.client.app[OUTBOX].stop()
    conv = await conversation(hub)
    await patch_settings(hub, latency=5.0)
    mid = await queued(hub, conv, {"text": "slow"})
    worker = OutboxWorker(hub.store, hub.client.app[CHANNELS], send_timeout=0.1, quick_retries=0)
    jobs = await worker.claim(10)
    assert [j["message_id"] for j in jobs] == [mid]
    started = time.monotonic()
    await asyncio.wait_for(worker.deliver(jobs[0]), 2.0)
    assert time.monotonic() - started < 1.0
    row = await job(hub, mid)
    assert row["state"] == "pending"
    assert row["attempts"] == 1
    assert row["lease_until"] is None
    assert row["last_error"]["class"] == "retryable"
    assert "did not answer" in row["last_error"]["message"]
    assert (await get_message(hub, mid))["status"] == "queued"
    assert len(hub.fake.sent) == 1
    # Not stuck: once the provider answers again, the same job goes out.
    await patch_settings(hub, latency=0.0)
    async with hub.store.db.write() as conn:
        await conn.execute(O.update().where(O.c.message_id == mid).values(due_at=utcnow()))
    jobs = await worker.claim(10)
    assert [j["message_id"] for j in jobs] == [mid]
    await worker.deliver(jobs[0])
    m = await get_message(hub, mid)
    assert (m["status"], m["external_id"]) == ("sent", f"fake-out-{mid}")
    # A plugin bug (an unclassified exception from send) keeps the message for a later attempt.
    hub.fake.script_errors(KeyError("bug"))
    bug_mid = await queued(hub, conv, {"text": "buggy plugin"})
    (j,) = await worker.claim(10)
    await worker.deliver(j)
    row = await job(hub, bug_mid)
    assert row["state"] == "pending"
    assert row["last_error"]["class"] == "retryable"
    assert "KeyError" in row["last_error"]["message"]
    assert (await get_message(hub, bug_mid))["status"] == "queued"


# ---- reply window --------------------------------------------------------------------------------


@pytest.fixture
async def window_hub(aiohttp_client: Any, hub_config: Callable[..., HubConfig], sqlite_url: str) -> Hub:
    base = FakeChannel.isolated()
    caps = FakeChannel.capabilities.model_copy(
        update={"reply_window": ReplyWindowPolicy(hours=24, outside="template")}
    )
    cls: type[FakeChannel] = type("WindowFake", (base,), {"capabilities": caps})
    app = create_app(hub_config(sqlite_url), extra_plugins=[("fake", FakePlugin(cls))])
    client: TestClient = await aiohttp_client(app)
    h = Hub(client, cls)
    await h.setup_users()
    await h.create_channel()
    return h


async def test_closed_reply_window_needs_a_template(window_hub: Hub) -> None:
    hub = window_hub
    old = await conversation(hub, "olga", ts=time.time() - 25 * 3600)
    fresh = await conversation(hub, "fred")
    detail = await (await hub.client.get(f"/api/v1/conversations/{old}", headers=hub.agent)).json()
    assert detail["reply_window"]["open"] is False
    assert detail["reply_window"]["outside"] == "template"
    text_mid = await queued(hub, old, {"text": "free text, too late"})
    m = await status_is(hub, text_mid, "failed", "sent")
    assert m["status"] == "failed"
    assert m["error"]["class"] == "needs_template"
    assert m["error"]["title"] == "Reply window closed"
    assert hub.fake.sent == []  # refused before any provider call
    tpl_mid = await queued(hub, old, {"template": {"name": "order_update", "language": "en"}})
    m = await status_is(hub, tpl_mid, "sent", "failed")
    assert m["status"] == "sent"
    ok_mid = await queued(hub, fresh, {"text": "within the window"})
    assert (await status_is(hub, ok_mid, "sent", "failed"))["status"] == "sent"
    assert [(x.id, x.kind.value) for x in hub.fake.sent] == [(tpl_mid, "template"), (ok_mid, "text")]
    assert hub.fake.sent[0].template is not None
    assert hub.fake.sent[0].template.name == "order_update"


# ---- receipts, retry, cancel, uploads ----------------------------------------------------------


async def test_receipt_before_the_send_returns_is_applied_after_it(
    hub: Hub, monkeypatch: pytest.MonkeyPatch
) -> None:
    conv = await conversation(hub)
    # The provider call takes as long as the test needs (a latency the test controls exactly).
    answer = asyncio.Event()
    provider_call = hub.fake._call_provider

    async def slow_provider(self: FakeChannel) -> None:
        await answer.wait()
        await provider_call(self)

    monkeypatch.setattr(hub.fake, "_call_provider", slow_provider)
    mid = await queued(hub, conv, {"text": "racing receipts"})
    ext = f"fake-out-{mid}"

    async def in_flight() -> bool:
        return len(hub.fake.sent) == 1

    try:
        await eventually(in_flight)
        now = int(time.time())
        resp = await hub.webhook(
            {"type": "status", "id": ext, "status": "delivered", "ts": now},
            {"type": "status", "id": ext, "status": "read", "ts": now + 1},
        )
        assert resp.status == 200

        async def parked() -> bool:
            return await count(hub, schema.pending_statuses) == 2

        await eventually(parked, within=5)
        assert (await get_message(hub, mid))["status"] == "queued"  # the provider has not answered yet
    finally:
        answer.set()
    m = await status_is(hub, mid, "read", "failed")
    assert m["status"] == "read"
    assert m["external_id"] == ext
    assert {"queued", "sent", "delivered", "read"} <= set(m["status_at"])
    assert await count(hub, schema.pending_statuses) == 0
    updates = [
        e["data"]["status"]
        for e in await hub.events()
        if e["type"] == "message.updated" and e["data"]["id"] == mid
    ]
    assert updates == ["sent", "delivered", "read"]


async def test_retry_a_failed_message(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    hub.fake.script_errors(SendErrorClass.PERMANENT)
    mid = await queued(hub, conv, {"text": "second chance"})
    assert (await status_is(hub, mid, "failed", "sent"))["status"] == "failed"
    resp = await hub.client.post(f"/api/v1/messages/{mid}/retry", headers=hub.agent)
    assert resp.status == 202, await resp.text()
    body = await resp.json()
    assert (body["id"], body["status"], body["error"]) == (mid, "queued", None)
    m = await status_is(hub, mid, "sent", "failed")
    assert m["status"] == "sent"
    assert m["error"] is None
    assert m["external_id"] == f"fake-out-{mid}"
    assert [x.id for x in hub.fake.sent] == [mid, mid]
    again = await hub.client.post(f"/api/v1/messages/{mid}/retry", headers=hub.agent)
    assert again.status == 409
    assert (await again.json())["error"]["code"] == "not_retryable"
    missing = await hub.client.post("/api/v1/messages/msg_nope/retry", headers=hub.agent)
    assert missing.status == 404


async def test_cancel_a_queued_message_but_not_a_sent_one(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    outbox = hub.client.app[OUTBOX]
    await outbox.stop()
    mid = await queued(hub, conv, {"text": "never mind"})
    resp = await hub.client.post(f"/api/v1/messages/{mid}/cancel", headers=hub.agent)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["status"] == "failed"
    assert body["error"]["class"] == "cancelled"
    assert (await job(hub, mid))["state"] == "cancelled"
    twice = await hub.client.post(f"/api/v1/messages/{mid}/cancel", headers=hub.agent)
    assert twice.status == 409
    # A message that went out cannot be cancelled.
    await outbox.start()
    sent_mid = await queued(hub, conv, {"text": "too late to cancel"})
    await status_is(hub, sent_mid, "sent")
    late = await hub.client.post(f"/api/v1/messages/{sent_mid}/cancel", headers=hub.agent)
    assert late.status == 409
    err = (await late.json())["error"]
    assert err["code"] == "not_cancellable"
    assert (await get_message(hub, sent_mid))["status"] == "sent"
    assert [x.id for x in hub.fake.sent] == [sent_mid]
    cancelled_events = [
        e for e in await hub.events() if e["type"] == "message.updated" and e["data"]["id"] == mid
    ]
    assert [e["data"]["status"] for e in cancelled_events] == ["failed"]


async def test_upload_then_send_it_as_an_attachment(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub)
    png = b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8
    resp = await hub.client.post(
        "/api/v1/uploads?filename=a.png", data=png, headers={**hub.agent, "Content-Type": "image/png"}
    )
    assert resp.status == 201, await resp.text()
    up = await resp.json()
    assert up["size"] == len(png)
    assert up["mime_type"] == "image/png"
    assert up["filename"] == "a.png"
    assert "path" not in up
    mid = await queued(hub, conv, {"attachments": [{"kind": "image", "upload_id": up["upload_id"]}]})
    m = await status_is(hub, mid, "sent", "failed")
    assert m["status"] == "sent"
    assert m["kind"] == "image"
    (out,) = hub.fake.sent
    (att,) = out.attachments
    assert att.kind.value == "image"
    assert att.size == len(png)
    assert att.mime_type == "image/png"
    assert att.filename == "a.png"
    assert att.path is not None
    assert await asyncio.to_thread(Path(att.path).read_bytes) == png
    unknown = await send(hub, conv, {"attachments": [{"kind": "image", "upload_id": "up_missing"}]})
    assert unknown.status == 422
    assert [d["field"] for d in (await unknown.json())["error"]["details"]] == ["attachments.0.upload_id"]

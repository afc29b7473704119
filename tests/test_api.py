"""The app API: one error shape, auth, OpenAPI, ops endpoints, admin channels and secrets,
conversations (pagination, patch, read) and the webhook handshake."""

from __future__ import annotations

import hashlib
import logging
import time
from collections import Counter
from typing import Any

import pytest
import sqlalchemy as sa
from argon2 import PasswordHasher

from hub import schema
from hub.security import hash_password
from hub.testing.fake_channel import sign, webhook_body
from hub.users import create_user
from hub.web.openapi import is_console, undocumented_routes
from tests.conftest import SECRET, Hub, eventually

_cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)


@pytest.fixture(autouse=True)
def fast_password_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cheap argon2 parameters for the fixture users (the real ones cost ~0.5 s a hash)."""
    monkeypatch.setattr("hub.users.hash_password", _cheap.hash)


async def error_of(resp: Any, status: int, code: str) -> dict[str, Any]:
    """Assert ``resp`` is the hub's one JSON error shape with ``status`` and ``code``."""
    text = await resp.text()
    assert resp.status == status, text
    assert resp.content_type == "application/json", text
    body = await resp.json()
    assert list(body) == ["error"], body
    err: dict[str, Any] = body["error"]
    assert set(err) == {"code", "message", "details"}, err
    assert err["code"] == code, err
    assert isinstance(err["message"], str) and err["message"], err
    return err


def msg(mid: str, who: str = "alice", ts: int = 1_700_000_000, text: str = "hi") -> dict[str, Any]:
    return {"type": "message", "id": mid, "from": who, "name": who.title(), "text": text, "ts": ts}


async def count(hub: Hub, table: sa.Table, *where: Any) -> int:
    async with hub.store.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


async def first_conversation(hub: Hub) -> dict[str, Any]:
    convs = await eventually(hub.conversations)
    result: dict[str, Any] = convs[0]
    return result


# ---- errors and auth ---------------------------------------------------------------------------


async def test_every_error_has_one_json_shape(lite_hub: Hub) -> None:
    hub = lite_hub
    c = hub.client
    await error_of(await c.get("/api/v1/nothing-here", headers=hub.agent), 404, "not_found")
    wrong = await c.delete("/api/v1/me", headers=hub.agent)
    await error_of(wrong, 405, "method_not_allowed")
    assert "GET" in wrong.headers["Allow"]
    err = await error_of(await c.get("/api/v1/me"), 401, "unauthorized")
    assert "Bearer" in err["message"]
    await error_of(
        await c.get("/api/v1/me", headers={"Authorization": "Bearer hub_nope"}), 401, "unauthorized"
    )
    await error_of(await c.get("/api/v1/me", headers={"Authorization": "Basic abc"}), 401, "unauthorized")
    err = await error_of(await c.get("/api/v1/admin/channels", headers=hub.agent), 403, "forbidden")
    assert "channels.manage" in err["message"]
    err = await error_of(
        await c.post(
            "/api/v1/auth/login", data=b'{"email": "a@b.c", ', headers={"Content-Type": "application/json"}
        ),
        400,
        "bad_request",
    )
    assert "JSON" in err["message"]
    await error_of(await c.post("/api/v1/auth/login", data=b""), 400, "bad_request")
    err = await error_of(
        await c.post(
            "/api/v1/admin/channels", json={"type": 5, "name": "", "bogus": True}, headers=hub.admin
        ),
        422,
        "validation_failed",
    )
    assert sorted(d["field"] for d in err["details"]) == ["bogus", "name", "type"]
    assert all(d["message"] for d in err["details"])
    conv_patch = await c.patch(
        "/api/v1/conversations/cv_x", json={"status": "closed", "labels": "vip"}, headers=hub.agent
    )
    err = await error_of(conv_patch, 422, "validation_failed")
    assert sorted(d["field"] for d in err["details"]) == ["labels", "status"]


async def test_body_over_max_body_bytes_is_413(lite_hub: Hub) -> None:
    hub = lite_hub
    big = b'{"email": "' + b"a" * (300 * 1024) + b'", "password": "x"}'
    resp = await hub.client.post("/api/v1/auth/login", data=big, headers={"Content-Type": "application/json"})
    err = await error_of(resp, 413, "payload_too_large")
    assert str(256 * 1024) in err["message"]
    hook_body = webhook_body(msg("big", text="x" * (300 * 1024)))
    resp = await hub.client.post("/webhooks/fk", data=hook_body, headers=sign(SECRET, hook_body))
    await error_of(resp, 413, "payload_too_large")
    assert await count(hub, schema.raw_events) == 0


async def test_login_with_argon2_password_and_hashed_tokens(lite_hub: Hub) -> None:
    hub = lite_hub
    db = hub.store.db
    # The hub's own hashing (not the cheap fixture parameters) for this user.
    await create_user(db, "Carol@Example.com", "agent", None, "Carol")
    async with db.write() as conn:
        await conn.execute(
            schema.users.update()
            .where(schema.users.c.email == "carol@example.com")
            .values(password_hash=hash_password("s3cret passphrase"))
        )
    ok = await hub.client.post(
        "/api/v1/auth/login", json={"email": "carol@example.com", "password": "s3cret passphrase"}
    )
    assert ok.status == 200, await ok.text()
    body = await ok.json()
    token = body["token"]
    assert body["token_type"] == "bearer"
    assert body["user"]["email"] == "carol@example.com"
    assert body["user"]["role"] == "agent"
    assert token.startswith("hub_") and len(token) > 30
    me = await hub.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    assert (await me.json())["email"] == "carol@example.com"
    for email, password in [("carol@example.com", "wrong password"), ("nobody@example.com", "x")]:
        bad = await hub.client.post("/api/v1/auth/login", json={"email": email, "password": password})
        err = await error_of(bad, 401, "invalid_credentials")
        assert password not in err["message"]
    async with db.read() as conn:
        stored = await conn.scalar(
            sa.select(schema.users.c.password_hash).where(schema.users.c.email == "carol@example.com")
        )
        hashes = (await conn.scalars(sa.select(schema.api_tokens.c.token_hash))).all()
    assert stored.startswith("$argon2id$")
    assert "s3cret" not in stored
    assert token not in hashes
    assert hashlib.sha256(token.encode()).hexdigest() in hashes
    assert all(len(h) == 64 for h in hashes)
    # Logout revokes exactly that token.
    out = await hub.client.post("/api/v1/auth/logout", headers={"Authorization": f"Bearer {token}"})
    assert out.status == 204
    again = await hub.client.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"})
    await error_of(again, 401, "unauthorized")


async def test_me_shows_role_and_permissions(lite_hub: Hub) -> None:
    hub = lite_hub
    admin = await (await hub.client.get("/api/v1/me", headers=hub.admin)).json()
    agent = await (await hub.client.get("/api/v1/me", headers=hub.agent)).json()
    assert (admin["email"], admin["role"]) == ("admin@example.com", "administrator")
    assert (agent["email"], agent["role"]) == ("agent@example.com", "agent")
    assert {"channels.manage", "users.manage", "plugins.read", "messages.send"} <= set(admin["permissions"])
    assert set(agent["permissions"]) == {
        "conversations.read.all",
        "conversations.update",
        "conversations.assign",
        "messages.send",
        "contacts.read",
        "contacts.update",
        "labels.apply",
        "notes.write",
    }
    assert "users.manage" not in agent["permissions"]
    assert (admin["all_channels"], agent["all_channels"]) == (True, False)
    assert agent["channel_ids"] == ["fk"] and admin["channel_ids"] == ["fk"]
    assert "password_hash" not in admin


# ---- OpenAPI, health, metrics ------------------------------------------------------------------


async def test_openapi_documents_every_route(lite_hub: Hub) -> None:
    hub = lite_hub
    app = hub.client.app
    assert undocumented_routes(app) == []
    resp = await hub.client.get("/openapi.json")
    assert resp.status == 200
    doc = await resp.json()
    assert doc["openapi"].startswith("3.")
    assert doc["servers"] == [{"url": "http://hub.test"}]
    # A generated client names a method by its operation id: two alike would clash.
    ids = [op["operationId"] for item in doc["paths"].values() for op in item.values() if "operationId" in op]
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    for route in app.router.routes():
        if route.method == "HEAD" or is_console(route):
            continue
        info = route.resource.get_info() if route.resource else {}
        path = info.get("path") or info.get("formatter")
        assert path in doc["paths"], path
        assert route.method.lower() in doc["paths"][path], (route.method, path)
    paths = doc["paths"]
    schemas = doc["components"]["schemas"]
    send = paths["/api/v1/conversations/{conversation_id}/messages"]
    assert {"get", "post"} <= set(send)
    ref = send["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == "#/components/schemas/SendRequest"
    assert "text" in schemas["SendRequest"]["properties"]
    assert "202" in send["post"]["responses"] and "422" in send["post"]["responses"]
    assert any(p["name"] == "Idempotency-Key" and p["in"] == "header" for p in send["post"]["parameters"])
    login = paths["/api/v1/auth/login"]["post"]
    assert login["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/LoginRequest")
    assert "security" not in login
    assert set(schemas["LoginRequest"]["required"]) == {"email", "password"}
    assert paths["/api/v1/me"]["get"]["security"] == [{"bearer": []}]
    assert "ChannelCreate" in schemas and "ChannelPatch" in schemas and "ConversationPatch" in schemas
    assert {"get", "post"} <= set(paths["/webhooks/{channel_id}"])
    assert "get" in paths["/api/v1/stream"] and "get" in paths["/healthz"]
    # Every $ref resolves.
    refs: list[str] = []

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k == "$ref":
                    refs.append(v)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(doc)
    missing = {r for r in refs if r.split("/")[-1] not in schemas}
    assert not missing


async def test_healthz_and_metrics(lite_hub: Hub) -> None:
    hub = lite_hub
    resp = await hub.client.get("/healthz")
    assert resp.status == 200
    health = await resp.json()
    assert health["status"] == "ok"
    assert health["database"] == "sqlite"
    assert set(health["channels"]) == {"fk"}
    before = await (await hub.client.get("/metrics")).text()
    assert 'hub_webhooks_total{channel_type="fake",outcome="stored"}' not in before
    await hub.webhook(msg("m-metrics"))
    await hub.webhook(msg("m-metrics"))
    bad = await hub.client.post(
        "/webhooks/fk", data=b"{}", headers={"X-Fake-Signature": "sha256=" + "0" * 64}
    )
    assert bad.status == 401
    metrics = await hub.client.get("/metrics")
    assert metrics.status == 200
    assert metrics.content_type == "text/plain"
    text = await metrics.text()
    assert 'hub_webhooks_total{channel_type="fake",outcome="stored"} 1.0' in text
    assert 'hub_webhooks_total{channel_type="fake",outcome="duplicate"} 1.0' in text
    assert 'hub_webhooks_total{channel_type="fake",outcome="bad_signature"} 1.0' in text
    assert "hub_event_last_seq" in text


async def test_metrics_count_processed_deliveries_and_sends(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(msg("m-count", ts=int(time.time())))
    conv = await first_conversation(hub)
    resp = await hub.client.post(
        f"/api/v1/conversations/{conv['id']}/messages", json={"text": "counted"}, headers=hub.agent
    )
    mid = (await resp.json())["id"]

    async def sent() -> bool:
        got = await (await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.agent)).json()
        return bool(got["status"] == "sent")

    await eventually(sent)
    text = await (await hub.client.get("/metrics")).text()
    assert "hub_inbound_processed_total 1.0" in text
    assert 'hub_sends_total{channel_type="fake",result="sent"} 1.0' in text


# ---- admin channels and secrets ----------------------------------------------------------------


async def test_admin_channel_lifecycle_keeps_secrets_secret(
    lite_hub: Hub, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    hub = lite_hub
    c = hub.client
    new_secret = "replacement-secret-9c1e"
    seen: list[str] = []

    async def call(method: str, url: str, **kw: Any) -> Any:
        resp = await c.request(method, url, headers=hub.admin, **kw)
        seen.append(await resp.text())
        return resp

    body = {
        "id": "fk2",
        "type": "fake",
        "name": "Second",
        "settings": {"secret": SECRET, "verify_token": "vt-2"},
    }
    created = await call("POST", "/api/v1/admin/channels", json=body)
    assert created.status == 201
    ch = await created.json()
    assert ch["id"] == "fk2" and ch["type"] == "fake" and ch["enabled"] is True
    await hub.serve("fk2", hub.agent_id)
    assert ch["source"] == "api"
    assert ch["setup"] == {"webhook_url": "http://hub.test/webhooks/fk2", "verify_token": "vt-2"}
    assert ch["settings"]["secret"] == "********"
    assert ch["settings"]["verify_token"] == "vt-2"
    assert ch["sending_paused"] is False
    generated = await call("POST", "/api/v1/admin/channels", json={**body, "id": None})
    assert generated.status == 201
    gen_id = (await generated.json())["id"]
    assert gen_id.startswith("ch_")
    dup = await call("POST", "/api/v1/admin/channels", json=body)
    await error_of(dup, 409, "conflict")
    unknown_type = await call("POST", "/api/v1/admin/channels", json={**body, "id": "x1", "type": "pigeon"})
    err = await error_of(unknown_type, 422, "validation_failed")
    assert [d["field"] for d in err["details"]] == ["type"]
    extra = await call(
        "POST",
        "/api/v1/admin/channels",
        json={**body, "id": "x2", "settings": {**body["settings"], "colour": "red"}},
    )
    err = await error_of(extra, 422, "validation_failed")
    assert [d["field"] for d in err["details"]] == ["settings.colour"]
    missing = await call("POST", "/api/v1/admin/channels", json={**body, "id": "x3", "settings": {}})
    err = await error_of(missing, 422, "validation_failed")
    assert sorted(d["field"] for d in err["details"]) == ["settings.secret", "settings.verify_token"]

    async def hook(secret: str, mid: str) -> int:
        raw = webhook_body(msg(mid))
        resp = await c.post("/webhooks/fk2", data=raw, headers=sign(secret, raw))
        seen.append(await resp.text())
        return int(resp.status)

    assert await hook(SECRET, "a1") == 200
    # PATCH without the secret, then with the mask: the stored secret stays.
    renamed = await call("PATCH", "/api/v1/admin/channels/fk2", json={"name": "Renamed"})
    assert renamed.status == 200 and (await renamed.json())["name"] == "Renamed"
    assert await hook(SECRET, "a2") == 200
    masked = await call(
        "PATCH",
        "/api/v1/admin/channels/fk2",
        json={"settings": {"secret": "********", "verify_token": "vt-3"}},
    )
    assert masked.status == 200
    assert (await masked.json())["setup"]["verify_token"] == "vt-3"
    assert await hook(SECRET, "a3") == 200
    bad_patch = await call("PATCH", "/api/v1/admin/channels/fk2", json={"settings": {"colour": "red"}})
    err = await error_of(bad_patch, 422, "validation_failed")
    assert [d["field"] for d in err["details"]] == ["settings.colour"]
    changed = await call("PATCH", "/api/v1/admin/channels/fk2", json={"settings": {"secret": new_secret}})
    assert changed.status == 200
    assert (await changed.json())["settings"]["secret"] == "********"
    assert await hook(SECRET, "a4") == 401
    assert await hook(new_secret, "a5") == 200
    async with hub.store.db.read() as conn:
        row = (
            (await conn.execute(sa.select(schema.channels).where(schema.channels.c.id == "fk2")))
            .mappings()
            .one()
        )
    assert row["secrets"] and new_secret not in row["secrets"] and SECRET not in row["secrets"]
    assert new_secret not in str(row["settings"]) and SECRET not in str(row["settings"])
    # Disable: the webhook is gone and the app no longer lists it; enable brings both back.
    disabled = await call("POST", "/api/v1/admin/channels/fk2/disable")
    assert disabled.status == 200 and (await disabled.json())["enabled"] is False
    assert await hook(new_secret, "a6") == 404
    listed = await (await c.get("/api/v1/channels", headers=hub.agent)).json()
    seen.append(str(listed))
    assert "fk2" not in [x["id"] for x in listed["channels"]]
    admin_list = await call("GET", "/api/v1/admin/channels")
    assert "fk2" in [x["id"] for x in (await admin_list.json())["channels"]]
    enabled = await call("POST", "/api/v1/admin/channels/fk2/enable")
    assert (await enabled.json())["enabled"] is True
    assert await hook(new_secret, "a7") == 200
    listed = await (await c.get("/api/v1/channels", headers=hub.agent)).json()
    seen.append(str(listed))
    app_view = next(x for x in listed["channels"] if x["id"] == "fk2")
    assert "settings" not in app_view and "setup" not in app_view
    assert app_view["capabilities"]["max_text_length"] == 4096
    got = await call("GET", "/api/v1/admin/channels/fk2")
    assert got.status == 200
    deleted = await call("DELETE", f"/api/v1/admin/channels/{gen_id}")
    assert deleted.status == 204
    deleted = await call("DELETE", "/api/v1/admin/channels/fk2")
    assert deleted.status == 204
    await error_of(await call("GET", "/api/v1/admin/channels/fk2"), 404, "not_found")
    await error_of(await call("DELETE", "/api/v1/admin/channels/fk2"), 404, "not_found")
    assert await hook(new_secret, "a8") == 404
    await eventually(lambda: _no_pending(hub))
    events = await hub.events()
    seen.append(str(events))
    for planted in (SECRET, new_secret):
        leaks = [s for s in seen if planted in s]
        assert not leaks, leaks[:1]
        assert planted not in caplog.text


async def _no_pending(hub: Hub) -> bool:
    return await count(hub, schema.raw_events, schema.raw_events.c.state == "pending") == 0


async def test_webhook_handshake(lite_hub: Hub) -> None:
    hub = lite_hub
    ok = await hub.client.get("/webhooks/fk?mode=subscribe&verify_token=vt-123&challenge=abc")
    assert ok.status == 200
    assert await ok.text() == "abc"
    for query in (
        "mode=subscribe&verify_token=wrong&challenge=abc",
        "mode=unsubscribe&verify_token=vt-123&challenge=abc",
        "mode=subscribe&verify_token=vt-123",
    ):
        await error_of(await hub.client.get(f"/webhooks/fk?{query}"), 403, "forbidden")
    await error_of(
        await hub.client.get("/webhooks/nope?mode=subscribe&verify_token=vt-123&challenge=abc"),
        404,
        "not_found",
    )


# ---- conversations -----------------------------------------------------------------------------


async def test_conversation_pagination_has_no_gaps_or_duplicates(lite_hub: Hub) -> None:
    hub = lite_hub
    base = 1_700_000_000
    # Seven contacts; some share a timestamp so the id tie-break is exercised too.
    batch = [msg(f"p{i}", who=f"user{i}", ts=base + i // 2 * 60) for i in range(7)]
    assert (await hub.webhook(*batch)).status == 200

    async def seven() -> bool:
        return len(await hub.conversations()) == 7

    await eventually(seven)
    pages: list[list[dict[str, Any]]] = []
    cursor = None
    for _ in range(5):
        url = "/api/v1/conversations?limit=3" + (f"&cursor={cursor}" if cursor else "")
        resp = await hub.client.get(url, headers=hub.agent)
        assert resp.status == 200, await resp.text()
        data = await resp.json()
        pages.append(data["conversations"])
        cursor = data["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [3, 3, 1]
    flat = [c for p in pages for c in p]
    ids = [c["id"] for c in flat]
    assert len(set(ids)) == 7
    whole = await (await hub.client.get("/api/v1/conversations?limit=50", headers=hub.agent)).json()
    assert ids == [c["id"] for c in whole["conversations"]]
    assert whole["next_cursor"] is None
    stamps = [c["last_message_at"] for c in flat]
    assert stamps == sorted(stamps, reverse=True)
    assert flat[0]["contact"]["identities"] == ["fake:user6"]
    assert flat[-1]["contact"]["identities"] in (["fake:user0"], ["fake:user1"])
    bad = await hub.client.get("/api/v1/conversations?cursor=%%%", headers=hub.agent)
    await error_of(bad, 400, "bad_request")
    await error_of(
        await hub.client.get("/api/v1/conversations?limit=x", headers=hub.agent), 400, "bad_request"
    )


async def test_patch_conversation_emits_conversation_updated(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(msg("c1"))
    conv = await first_conversation(hub)
    agent_id = (await (await hub.client.get("/api/v1/me", headers=hub.agent)).json())["id"]
    for name in ("vip", "billing"):
        await hub.define_label(name)
    await hub.define_attribute("plan")
    await hub.define_attribute("seats", "number")
    last = max(e["seq"] for e in await hub.events())
    patch = {
        "status": "pending",
        "labels": ["billing", "vip"],
        "assignee_id": agent_id,
        "custom_attributes": {"plan": "gold", "seats": 12},
    }
    resp = await hub.client.patch(f"/api/v1/conversations/{conv['id']}", json=patch, headers=hub.agent)
    assert resp.status == 200, await resp.text()
    data = await resp.json()
    for key, value in patch.items():
        assert data[key] == value, key
    again = await (await hub.client.get(f"/api/v1/conversations/{conv['id']}", headers=hub.agent)).json()
    assert {k: again[k] for k in patch} == patch
    new = await hub.events(after=last)
    assert [e["type"] for e in new] == ["conversation.updated"]
    assert new[0]["conversation_id"] == conv["id"]
    assert {k: new[0]["data"][k] for k in patch} == patch
    # A partial patch changes only what it names.
    resp = await hub.client.patch(
        f"/api/v1/conversations/{conv['id']}", json={"status": "resolved"}, headers=hub.agent
    )
    data = await resp.json()
    assert data["status"] == "resolved" and data["labels"] == ["billing", "vip"]
    missing = await hub.client.patch(
        "/api/v1/conversations/cv_nope", json={"status": "open"}, headers=hub.agent
    )
    await error_of(missing, 404, "not_found")
    await error_of(await hub.client.get("/api/v1/conversations/cv_nope", headers=hub.agent), 404, "not_found")


async def test_patch_conversation_with_a_null_status_is_422(lite_hub: Hub) -> None:
    hub = lite_hub
    await hub.webhook(msg("n1"))
    conv = await first_conversation(hub)
    resp = await hub.client.patch(
        f"/api/v1/conversations/{conv['id']}", json={"status": None}, headers=hub.agent
    )
    err = await error_of(resp, 422, "validation_failed")
    assert [d["field"] for d in err["details"]] == ["status"]


async def test_marking_a_conversation_read(lite_hub: Hub) -> None:
    hub = lite_hub
    now = int(time.time())
    await hub.webhook(msg("r1", ts=now), msg("r2", ts=now + 1))

    async def two_unread() -> dict[str, Any] | None:
        convs = await hub.conversations()
        return convs[0] if convs and convs[0]["unread_count"] == 2 else None

    conv = await eventually(two_unread)
    last = max(e["seq"] for e in await hub.events())
    resp = await hub.client.post(f"/api/v1/conversations/{conv['id']}/read", headers=hub.agent)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["unread_count"] == 0
    assert (await hub.conversations())[0]["unread_count"] == 0
    new = await hub.events(after=last)
    assert [(e["type"], e["data"]["unread_count"]) for e in new] == [("conversation.read", 0)]
    await error_of(
        await hub.client.post("/api/v1/conversations/cv_nope/read", headers=hub.agent), 404, "not_found"
    )

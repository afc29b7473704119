"""Quick replies, private notes and macros through the API of an in-process hub (fake channel)."""

from __future__ import annotations

import time
from typing import Any

import pytest
import sqlalchemy as sa

from hub import schema
from tests.conftest import Hub, eventually


@pytest.fixture(autouse=True)
def fast_password_hashing(fast_passwords: None) -> None:
    """Users made here get cheap password hashes."""


def msg(mid: str, who: str = "alice", text: str = "hi") -> dict[str, Any]:
    return {
        "type": "message",
        "id": mid,
        "from": who,
        "name": who.title(),
        "text": text,
        "ts": int(time.time()),
    }


async def call(hub: Hub, method: str, url: str, headers: dict[str, str], expect: int, **kw: Any) -> Any:
    resp = await hub.client.request(method, url, headers=headers, **kw)
    assert resp.status == expect, (resp.status, await resp.text())
    return await resp.json() if resp.status != 204 else None


async def conversation(hub: Hub, who: str = "alice") -> dict[str, Any]:
    await hub.webhook(msg(f"m-{who}-{time.monotonic_ns()}", who))

    async def find() -> Any:
        return next((c for c in await hub.conversations() if c["contact"]["name"] == who.title()), None)

    return dict(await eventually(find))


async def count(hub: Hub, table: sa.Table, *where: Any) -> int:
    async with hub.store.db.read() as conn:
        return int(await conn.scalar(sa.select(sa.func.count()).select_from(table).where(*where)) or 0)


# ---- quick replies ------------------------------------------------------------------------------


async def test_quick_reply_placeholders_are_checked_searched_previewed_and_sent_rendered(
    lite_hub: Hub,
) -> None:
    hub = lite_hub
    conv = await conversation(hub, "zoe")
    await hub.define_attribute("plan")  # values are accepted for defined attributes only
    await call(
        hub,
        "PATCH",
        f"/api/v1/conversations/{conv['id']}",
        hub.agent,
        200,
        json={"custom_attributes": {"plan": "gold"}},
    )
    bad = await call(
        hub,
        "POST",
        "/api/v1/admin/quick-replies",
        hub.admin,
        422,
        json={"code": "x", "text": "Hi {{contact.nmae}}"},
    )
    assert bad["error"]["details"][0]["field"] == "text"
    assert "contact.nmae" in bad["error"]["details"][0]["message"]
    unclosed = await call(
        hub,
        "POST",
        "/api/v1/admin/quick-replies",
        hub.admin,
        422,
        json={"code": "x", "text": "Hi {{contact.name"},
    )
    assert unclosed["error"]["details"][0]["field"] == "text"
    # Agents use quick replies; admins manage them.
    await call(hub, "POST", "/api/v1/admin/quick-replies", hub.agent, 403, json={"code": "x", "text": "x"})
    text = (
        "Hello {{ contact.name }}, I am {{agent.email}}. Your plan: {{conversation.custom_attributes.plan}}."
    )
    qr = await call(
        hub, "POST", "/api/v1/admin/quick-replies", hub.admin, 201, json={"code": "Hello", "text": text}
    )
    assert qr["code"] == "hello"
    await call(
        hub, "POST", "/api/v1/admin/quick-replies", hub.admin, 409, json={"code": "HELLO", "text": "again"}
    )
    other = await call(
        hub,
        "POST",
        "/api/v1/admin/quick-replies",
        hub.admin,
        201,
        json={"code": "bye", "text": "Goodbye 100%"},
    )

    async def search(q: str) -> list[str]:
        got = await call(hub, "GET", f"/api/v1/quick-replies?q={q}", hub.agent, 200)
        return [r["code"] for r in got["quick_replies"]]

    assert await search("HEL") == ["hello"]
    assert await search("plan") == ["hello"]
    assert await search("100%") == ["bye"]
    assert await search("%") == ["bye"]  # a literal percent sign, not a wildcard
    assert await search("") == ["bye", "hello"]

    preview = await call(
        hub,
        "POST",
        f"/api/v1/quick-replies/{qr['id']}/preview",
        hub.agent,
        200,
        json={"conversation_id": conv["id"]},
    )
    expected = "Hello Zoe, I am agent@example.com. Your plan: gold."
    assert preview["text"] == expected
    await call(
        hub,
        "POST",
        f"/api/v1/quick-replies/{qr['id']}/preview",
        hub.agent,
        404,
        json={"conversation_id": "nope"},
    )

    before = len(hub.fake.sent)
    sent = await call(
        hub,
        "POST",
        f"/api/v1/conversations/{conv['id']}/messages",
        {**hub.agent, "Idempotency-Key": "qr-1"},
        202,
        json={"quick_reply_id": qr["id"]},
    )
    assert sent["text"] == expected
    await eventually(lambda: _async(len(hub.fake.sent) > before))
    assert hub.fake.sent[-1].text == expected
    both = await call(
        hub,
        "POST",
        f"/api/v1/conversations/{conv['id']}/messages",
        hub.agent,
        422,
        json={"quick_reply_id": qr["id"], "text": "x"},
    )
    assert "not both" in str(both["error"]["details"])
    unknown = await call(
        hub,
        "POST",
        f"/api/v1/conversations/{conv['id']}/messages",
        hub.agent,
        422,
        json={"quick_reply_id": "qr_no"},
    )
    assert unknown["error"]["details"][0]["field"] == "quick_reply_id"
    await call(hub, "DELETE", f"/api/v1/admin/quick-replies/{other['id']}", hub.admin, 204)
    assert await search("") == ["hello"]


async def _async(value: Any) -> Any:
    return value


# ---- private notes ------------------------------------------------------------------------------


async def test_a_note_is_never_sent_and_mentions_only_who_can_read(lite_hub: Hub) -> None:
    hub = lite_hub
    conv = await conversation(hub, "nora")
    outbox_before = await count(hub, schema.outbox)
    messages_before = await hub.messages(conv["id"])
    sent_before = len(hub.fake.sent)
    seq = (await hub.events())[-1]["seq"]

    note = await call(
        hub,
        "POST",
        f"/api/v1/conversations/{conv['id']}/notes",
        hub.admin,
        201,
        json={"text": "@agent@example.com please call her back"},
    )
    assert note["mentions"] == [hub.agent_id]
    assert note["author"]["type"] == "user"
    listed = await call(hub, "GET", f"/api/v1/conversations/{conv['id']}/notes", hub.agent, 200)
    assert [n["id"] for n in listed["notes"]] == [note["id"]]

    events = await hub.events(seq)
    assert [e["type"] for e in events if e["type"] == "note.created"] == ["note.created"]
    # The note is no message and no outbox job: nothing can carry it to the provider.
    assert await count(hub, schema.outbox) == outbox_before
    assert await hub.messages(conv["id"]) == messages_before
    assert len(hub.fake.sent) == sent_before

    # A colleague who cannot read the conversation cannot be mentioned in it.
    outsider = await call(
        hub,
        "POST",
        "/api/v1/admin/users",
        hub.admin,
        201,
        json={"email": "out@example.com", "name": "Out", "role": "agent"},
    )
    refused = await call(
        hub,
        "POST",
        f"/api/v1/conversations/{conv['id']}/notes",
        hub.admin,
        422,
        json={"text": "fyi", "mention_ids": [outsider["user"]["id"]]},
    )
    assert refused["error"]["details"][0]["field"] == "mention_ids"
    assert await count(hub, schema.notes) == 1


# ---- macros -------------------------------------------------------------------------------------


async def test_macro_labels_assigns_and_resolves_in_one_step_with_its_events(lite_hub: Hub) -> None:
    hub = lite_hub
    first = await conversation(hub, "mia")
    await hub.define_label("vip")  # labels are definitions (hub.services.labels)
    second = await conversation(hub, "max")
    seq = (await hub.events())[-1]["seq"]
    actions = [
        {"type": "add_label", "label": "vip"},
        {"type": "assign_agent", "user_id": hub.agent_id},
        {"type": "add_note", "text": "handled by the macro"},
        {"type": "set_status", "status": "resolved"},
    ]
    # Shared macros are configuration; an agent keeps personal ones.
    await call(
        hub,
        "POST",
        "/api/v1/macros",
        hub.agent,
        403,
        json={"name": "m", "visibility": "shared", "actions": actions},
    )
    bad = await call(
        hub, "POST", "/api/v1/macros", hub.agent, 422, json={"name": "m", "actions": [{"type": "explode"}]}
    )
    assert bad["error"]["details"]
    macro = await call(
        hub, "POST", "/api/v1/macros", hub.agent, 201, json={"name": "VIP and close", "actions": actions}
    )
    assert macro["visibility"] == "personal"
    assert [m["id"] for m in (await call(hub, "GET", "/api/v1/macros", hub.agent, 200))["macros"]] == [
        macro["id"]
    ]
    # Someone else's personal macro is absent to the admin too.
    assert (await call(hub, "GET", "/api/v1/macros", hub.admin, 200))["macros"] == []
    await call(
        hub,
        "POST",
        f"/api/v1/macros/{macro['id']}/run",
        hub.admin,
        404,
        json={"conversation_ids": [first["id"]]},
    )

    out = await call(
        hub,
        "POST",
        f"/api/v1/macros/{macro['id']}/run",
        hub.agent,
        200,
        json={"conversation_ids": [first["id"], second["id"], "no-such-conversation"]},
    )
    by_conv = {r["conversation_id"]: r for r in out["results"]}
    for conv in (first, second):
        run = by_conv[conv["id"]]
        assert run["status"] == "done", run
        assert [a["status"] for a in run["actions"]] == ["done"] * 4
        got = await call(hub, "GET", f"/api/v1/conversations/{conv['id']}", hub.agent, 200)
        assert (got["labels"], got["assignee_id"], got["status"]) == (["vip"], hub.agent_id, "resolved")
    missing = by_conv["no-such-conversation"]
    assert missing["status"] == "failed"
    assert missing["actions"][0]["status"] == "failed" and "does not exist" in missing["actions"][0]["detail"]
    assert {a["status"] for a in missing["actions"][1:]} == {"skipped"}

    events = [e for e in await hub.events(seq) if e["conversation_id"] == first["id"]]
    changed = [e["data"]["changed"] for e in events if e["type"] == "conversation.updated"]
    assert changed == [["labels"], ["assignee_id"], ["snoozed_until", "status"]]
    assert [e["type"] for e in events].count("note.created") == 1
    # One transaction per conversation: its events have consecutive sequence numbers.
    seqs = [e["seq"] for e in events if e["type"] in ("conversation.updated", "note.created")]
    assert seqs == list(range(seqs[0], seqs[0] + 4))


async def test_macro_action_the_caller_may_not_do_fails_with_the_reason_and_changes_nothing(
    lite_hub: Hub,
) -> None:
    hub = lite_hub
    conv = await conversation(hub, "lea")
    await call(
        hub,
        "POST",
        "/api/v1/admin/roles",
        hub.admin,
        201,
        json={"name": "labeller", "permissions": ["conversations.read.all", "labels.apply"]},
    )
    user = await call(
        hub,
        "POST",
        "/api/v1/admin/users",
        hub.admin,
        201,
        json={"email": "lab@example.com", "role": "labeller"},
    )
    from hub.users import create_token

    token = await create_token(hub.store.db, user["user"]["id"])
    await hub.define_label("late")
    await hub.serve("fk", hub.agent_id, user["user"]["id"])
    headers = {"Authorization": f"Bearer {token}"}
    macro = await call(
        hub,
        "POST",
        "/api/v1/macros",
        headers,
        201,
        json={
            "name": "label and close",
            "actions": [{"type": "add_label", "label": "late"}, {"type": "set_status", "status": "resolved"}],
        },
    )
    out = await call(
        hub,
        "POST",
        f"/api/v1/macros/{macro['id']}/run",
        headers,
        200,
        json={"conversation_ids": [conv["id"]]},
    )
    run = out["results"][0]
    assert run["status"] == "failed"
    assert [a["status"] for a in run["actions"]] == ["rolled_back", "failed"]
    assert "conversations.update" in run["actions"][1]["detail"]
    got = await call(hub, "GET", f"/api/v1/conversations/{conv['id']}", hub.agent, 200)
    assert (got["labels"], got["status"]) == ([], "open")

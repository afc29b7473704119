"""Edits and deletions reach the app as ``message.updated``: an edit keeps what it replaced, a
deletion leaves a tombstone, a redelivery has one effect, and either may arrive before its message."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from hub import schema
from tests.conftest import Hub, eventually
from tests.test_pipeline import msg

T0 = 1_700_000_000


def edit(target: str, text: str, ts: int, eid: str | None = None, **extra: Any) -> dict[str, Any]:
    element = {"type": "edit", "target": target, "from": "alice", "text": text, "ts": T0 + ts, **extra}
    return {**element, "id": eid} if eid else element


def delete(target: str, ts: int, **extra: Any) -> dict[str, Any]:
    return {
        "type": "delete",
        "id": f"del-{target}",
        "target": target,
        "from": "alice",
        "ts": T0 + ts,
        **extra,
    }


async def processed(hub: Hub) -> bool:
    async with hub.store.db.read() as conn:
        left = await conn.scalar(
            sa.select(sa.func.count())
            .select_from(schema.raw_events)
            .where(schema.raw_events.c.state != "done")
        )
    return left == 0


async def message(hub: Hub, external_id: str) -> dict[str, Any]:
    async with hub.store.db.read() as conn:
        mid = await conn.scalar(
            sa.select(schema.messages.c.id).where(schema.messages.c.external_id == external_id)
        )
    resp = await hub.client.get(f"/api/v1/messages/{mid}", headers=hub.agent)
    assert resp.status == 200, await resp.text()
    data: dict[str, Any] = await resp.json()
    return data


async def updates(hub: Hub, external_id: str) -> list[dict[str, Any]]:
    return [
        e["data"]
        for e in await hub.events()
        if e["type"] == "message.updated" and e["data"]["external_id"] == external_id
    ]


async def test_an_edit_keeps_the_previous_text_in_the_history(hub: Hub) -> None:
    await hub.webhook(msg("m1", "helo", ts=T0))
    await eventually(lambda: processed(hub))
    await hub.webhook(edit("m1", "hello", 10, eid="e1"))
    await hub.webhook(edit("m1", "hello", 10, eid="e1"))  # the provider delivers it again
    await hub.webhook(edit("m1", "hello!", 20, eid="e2"))
    await eventually(lambda: processed(hub))
    got = await message(hub, "m1")
    assert got["text"] == "hello!"
    assert [(r["text"], r["replaced_at"][:19]) for r in got["edits"]] == [
        ("helo", "2023-11-14T22:13:30"),
        ("hello", "2023-11-14T22:13:40"),
    ]
    assert got["edited_at"].startswith("2023-11-14T22:13:40")
    assert got["deleted_at"] is None
    seen = await updates(hub, "m1")
    assert [u["text"] for u in seen] == ["hello", "hello!"], "one message.updated per edit, none for the copy"
    assert seen[-1]["edits"] == got["edits"]


async def test_edits_delivered_out_of_order_keep_the_newest_text(hub: Hub) -> None:
    await hub.webhook(msg("m1", "v0", ts=T0))
    await eventually(lambda: processed(hub))
    await hub.webhook(edit("m1", "v2", 20, eid="e2"))
    await eventually(lambda: processed(hub))
    await hub.webhook(edit("m1", "v1", 10, eid="e1"))
    await eventually(lambda: processed(hub))
    got = await message(hub, "m1")
    assert got["text"] == "v2"
    assert [(r["text"], r["replaced_at"][11:19]) for r in got["edits"]] == [
        ("v0", "22:13:30"),
        ("v1", "22:13:40"),
    ]


async def test_a_deletion_leaves_a_tombstone_that_nothing_changes(hub: Hub) -> None:
    await hub.webhook(msg("m1", "secret plan", ts=T0))
    await eventually(lambda: processed(hub))
    await hub.webhook(edit("m1", "secret plan v2", 5, eid="e1"))
    await hub.webhook(delete("m1", 10))
    await hub.webhook(delete("m1", 10))
    await hub.webhook(edit("m1", "back again", 20, eid="e9"))
    await eventually(lambda: processed(hub))
    got = await message(hub, "m1")
    assert got["deleted_at"].startswith("2023-11-14T22:13:30")
    assert got["text"] is None and got["attachments"] == [] and got["edits"] == []
    assert "secret plan" not in str(got)
    seen = await updates(hub, "m1")
    assert [u["deleted_at"] is not None for u in seen] == [False, True]


async def test_edit_and_deletion_before_their_message_apply_when_it_arrives(hub: Hub) -> None:
    await hub.webhook(edit("early", "fixed typo", 10, eid="e1"))
    await hub.webhook(edit("early", "fixed typo", 10, eid="e1"))
    await hub.webhook(delete("gone", 10))
    await eventually(lambda: processed(hub))
    async with hub.store.db.read() as conn:
        waiting = await conn.scalar(sa.select(sa.func.count()).select_from(schema.pending_changes))
    assert waiting == 2, "the redelivered edit waits once"
    await hub.webhook(msg("early", "fixd typo", ts=T0), msg("gone", "oops", ts=T0))
    await eventually(lambda: processed(hub))
    early = await message(hub, "early")
    assert early["text"] == "fixed typo"
    assert [r["text"] for r in early["edits"]] == ["fixd typo"]
    gone = await message(hub, "gone")
    assert gone["deleted_at"] is not None and gone["text"] is None
    types = [e["type"] for e in await hub.events() if e["data"].get("external_id") == "early"]
    assert types == ["message.created", "message.updated"]
    async with hub.store.db.read() as conn:
        assert await conn.scalar(sa.select(sa.func.count()).select_from(schema.pending_changes)) == 0


async def test_an_edit_in_the_same_delivery_as_its_message(hub: Hub) -> None:
    await hub.webhook(msg("m1", "one", ts=T0), edit("m1", "two", 1, eid="e1"))
    await eventually(lambda: processed(hub))
    got = await message(hub, "m1")
    assert (got["text"], [r["text"] for r in got["edits"]]) == ("two", ["one"])


async def test_a_customer_cannot_edit_what_the_business_sent(hub: Hub) -> None:
    await hub.webhook(msg("out-1", "our offer", ts=T0, direction="outbound"))
    await eventually(lambda: processed(hub))
    await hub.webhook(edit("out-1", "free stuff", 10, eid="e1"))
    await hub.webhook(edit("out-1", "our better offer", 11, eid="e2", direction="outbound"))
    await eventually(lambda: processed(hub))
    got = await message(hub, "out-1")
    assert got["direction"] == "outbound"
    assert (got["text"], [r["text"] for r in got["edits"]]) == ("our better offer", ["our offer"])


async def test_a_deleted_message_no_longer_serves_its_file(hub: Hub, tmp_path: Any) -> None:
    image = {"kind": "image", "url": "https://cdn.example/p.png", "mime_type": "image/png", "id": "media-1"}
    await hub.webhook(msg("pic", ts=T0, text=None, attachment=image))
    await eventually(lambda: processed(hub))
    stored = tmp_path / "p.png"
    stored.write_bytes(b"\x89PNG private photo")
    async with hub.store.db.write() as conn:  # as the media worker leaves a fetched file
        await conn.execute(schema.media_jobs.update().values(state="done", path=str(stored)))
    mid = (await message(hub, "pic"))["id"]
    resp = await hub.client.get(f"/api/v1/attachments/{mid}/0", headers=hub.agent)
    assert resp.status == 200 and await resp.read() == b"\x89PNG private photo"
    await hub.webhook(delete("pic", 10))
    await eventually(lambda: processed(hub))
    resp = await hub.client.get(f"/api/v1/attachments/{mid}/0", headers=hub.agent)
    assert resp.status == 404, "a tombstone shows no content, its file included"
    assert (await message(hub, "pic"))["attachments"] == []

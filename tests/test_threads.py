"""Conversations follow the provider's threads: ``thread_id`` (a group chat) gathers every sender,
``thread_refs`` file a reply with the message it answers (even within one delivery), and ``cc``
becomes the conversation's participants."""

from __future__ import annotations

import sqlalchemy as sa

from hub import schema
from tests.conftest import Hub, eventually
from tests.test_edits import processed
from tests.test_pipeline import msg

T0 = 1_700_000_000


async def test_a_thread_is_one_conversation_whoever_writes(hub: Hub) -> None:
    await hub.webhook(msg("g1", "hi all", who="alice", ts=T0, thread="group-7"))
    await eventually(lambda: processed(hub))
    await hub.webhook(
        msg("g2", "hello", who="bob", ts=T0 + 1, thread="group-7"),
        msg("p1", "psst", who="bob", ts=T0 + 2),
        msg("g3", "other group", who="bob", ts=T0 + 3, thread="group-8"),
    )
    await eventually(lambda: processed(hub))
    convs = {c["thread_id"]: c for c in await hub.conversations()}
    assert set(convs) == {"group-7", "group-8", None}
    group = convs["group-7"]
    assert sorted(m["external_id"] for m in await hub.messages(group["id"])) == ["g1", "g2"]
    assert [m["external_id"] for m in await hub.messages(convs[None]["id"])] == ["p1"]
    assert convs[None]["contact"]["name"] == "Bob"


async def test_thread_refs_find_a_message_of_the_same_delivery(hub: Hub) -> None:
    await hub.webhook(
        msg("mail-1", "question", who="ann", ts=T0),
        msg("mail-2", "follow-up", who="carl", ts=T0 + 1, refs=["unknown", "mail-1"]),
    )
    await hub.webhook(msg("mail-3", "late answer", who="dora", ts=T0 + 2, refs=["mail-2"]))
    await eventually(lambda: processed(hub))
    convs = await hub.conversations()
    assert len(convs) == 1
    assert sorted(m["external_id"] for m in await hub.messages(convs[0]["id"])) == [
        "mail-1",
        "mail-2",
        "mail-3",
    ]


async def test_cc_becomes_the_conversations_latest_participants(hub: Hub) -> None:
    await hub.webhook(msg("c1", "hello", who="ann", ts=T0, cc=["bob", "carl"]))
    await eventually(lambda: processed(hub))
    conv = (await hub.conversations())[0]
    assert [p["ids"] for p in conv["participants"]] == [["fake:bob"], ["fake:carl"]]
    await hub.webhook(msg("c2", "dropping carl", who="ann", ts=T0 + 5, cc=["bob"]))
    await hub.webhook(msg("c0", "an old one, delivered late", who="ann", ts=T0 - 5, cc=["zed"]))
    await eventually(lambda: processed(hub))
    conv = (await hub.conversations())[0]
    assert [p["ids"] for p in conv["participants"]] == [["fake:bob"]]
    async with hub.store.db.read() as conn:
        stored = await conn.scalar(sa.select(schema.conversations.c.participants))
    assert stored == [{"ids": ["fake:bob"], "name": None}] or stored == [{"ids": ["fake:bob"]}]

"""Outbox claims are fenced: a worker writes about a job only while it holds the claim that leased
it, leases are renewed while a send is in flight, a send of unknown outcome after a crash waits for
a status naming it, and the provider's receipt (status, data) is recorded as given."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any, ClassVar

from hub import schema
from hub.appkeys import CHANNELS, OUTBOX
from hub.channel import Capabilities
from hub.errors import SendError, SendErrorClass
from hub.models import MessageStatus, OutboundMessage, SendReceipt, utcnow
from hub.outbound import OutboxWorker
from hub.outbound.load import load
from hub.testing.fake_channel import FakeChannel
from tests.conftest import Hub, eventually
from tests.test_outbound import conversation, get_message, job, queued, status_is

O = schema.outbox  # noqa: E741


async def stopped_outbox(hub: Hub) -> OutboxWorker:
    """Stop the app's own outbox, so the test's workers are the only ones claiming."""
    await hub.client.app[OUTBOX].stop()
    return OutboxWorker(hub.store, hub.client.app[CHANNELS], lease=30.0, grace=5.0, quick_retries=0)


async def expire_lease(hub: Hub, mid: str) -> None:
    async with hub.store.db.write() as conn:
        await conn.execute(
            O.update().where(O.c.message_id == mid).values(lease_until=utcnow() - timedelta(seconds=1))
        )


async def test_a_worker_that_lost_its_claim_writes_nothing(hub: Hub) -> None:
    first = await stopped_outbox(hub)
    second = OutboxWorker(hub.store, hub.client.app[CHANNELS], quick_retries=0)
    conv = await conversation(hub)
    mid = await queued(hub, conv, {"text": "claimed twice"})
    (stale,) = await first.claim(10)
    assert await first.claim(10) == [], "a held job is claimed once"
    assert (await job(hub, mid))["unknown_since"] is None, "a due job's outcome is known"
    await expire_lease(hub, mid)  # the first worker stalled past its lease
    (fresh,) = await second.claim(10)
    assert fresh["claim_token"] != stale["claim_token"]
    assert fresh["unknown_since"] is not None, "taken back from a lease that ran out mid-send"

    # Every write of the stale claim is refused: sent, failed, rescheduled, finished, renewed.
    row, _, _ = (await load(hub.store, [mid]))[mid]
    await first.recorder.sent(stale, row, SendReceipt(external_id="stale-send"))
    assert not await first.recorder.fail(stale, row, SendError(SendErrorClass.PERMANENT, "no"))
    assert not await first.recorder.reschedule(stale, 0.0, None, count=False)
    assert not await first.recorder.finish(stale, "done")
    assert (await get_message(hub, mid))["status"] == "queued"
    assert (await job(hub, mid))["state"] == "inflight"

    await second.recorder.sent(fresh, row, SendReceipt(external_id="fresh-send"))
    m = await get_message(hub, mid)
    assert (m["status"], m["external_id"]) == ("sent", "fresh-send")
    assert (await job(hub, mid))["state"] == "done"


async def test_a_held_lease_is_renewed_and_never_taken_back_by_its_own_worker(lite_hub: Hub) -> None:
    worker = await stopped_outbox(lite_hub)
    conv = await conversation(lite_hub)
    mid = await queued(lite_hub, conv, {"text": "long send"})
    (claimed,) = await worker.claim(10)
    await expire_lease(lite_hub, mid)
    assert await worker.claim(10) == [], "its own expired lease is not claimed back"
    assert await worker.renew() == 1
    assert (await job(lite_hub, mid))["lease_until"] > utcnow() + timedelta(seconds=20)
    await worker.deliver(claimed)
    assert await worker.renew() == 0, "a finished send is no longer held"


class _ReceiptFake(FakeChannel):
    """Accepts a send into the provider's own queue: receipt status ``queued`` with data."""

    async def send(self, message: OutboundMessage) -> SendReceipt:
        await super().send(message)
        return SendReceipt(
            external_id=f"q-{message.id}", status=MessageStatus.QUEUED, data={"queue_position": 3}
        )


async def test_the_receipt_status_and_data_are_recorded(
    aiohttp_client: Any, hub_config: Any, sqlite_url: str
) -> None:
    hub = await _custom_hub(aiohttp_client, hub_config, sqlite_url, _ReceiptFake.isolated())
    conv = await conversation(hub)
    mid = await queued(hub, conv, {"text": "into the provider's queue"})

    async def recorded() -> dict[str, Any] | None:
        m = await get_message(hub, mid)
        return m if m["external_id"] else None

    m = await eventually(recorded)
    assert m["status"] == "queued", "the provider has not sent it yet"
    assert "sent" not in m["status_at"]
    assert m["data"] == {"queue_position": 3}
    assert (await job(hub, mid))["state"] == "done"
    # The provider's later status moves it on.
    ts = int(time.time())
    await hub.webhook({"type": "status", "id": f"q-{mid}", "status": "sent", "ts": ts})
    m = await status_is(hub, mid, "sent")
    assert m["data"] == {"queue_position": 3}


class _ReferencingFake(FakeChannel):
    capabilities: ClassVar[Capabilities] = FakeChannel.capabilities.model_copy(
        update={"client_reference": True}
    )


async def _custom_hub(aiohttp_client: Any, hub_config: Any, url: str, cls: type[FakeChannel]) -> Hub:
    from hub.testing.fake_channel import FakePlugin
    from hub.web.app import create_app

    app = create_app(hub_config(url), extra_plugins=[("fake", FakePlugin(cls))])
    h = Hub(await aiohttp_client(app), cls)
    await h.setup_users()
    await h.create_channel()
    return h


async def test_a_send_of_unknown_outcome_waits_for_a_status_naming_it(
    aiohttp_client: Any, hub_config: Any, database_url: str
) -> None:
    hub = await _custom_hub(aiohttp_client, hub_config, database_url, _ReferencingFake.isolated())
    worker = await stopped_outbox(hub)
    # Two conversations: a conversation's sends go out one at a time, so only different
    # conversations' sends are in flight together.
    named = await queued(hub, await conversation(hub), {"text": "reached the provider before the crash"})
    silent = await queued(hub, await conversation(hub, "bob"), {"text": "no status ever names it"})
    assert len(await worker.claim(10)) == 2  # a process claims both, sends, and dies before recording
    await expire_lease(hub, named)
    await expire_lease(hub, silent)
    ts = int(time.time())
    await hub.webhook(
        {"type": "status", "id": "wamid.named", "status": "delivered", "ts": ts, "client_ref": named}
    )

    restarted = OutboxWorker(hub.store, hub.client.app[CHANNELS], grace=1.5, quick_retries=0)
    started = time.monotonic()
    await restarted.start()
    try:
        m = await status_is(hub, named, "delivered")
        assert m["external_id"] == "wamid.named"
        await status_is(hub, silent, "sent", within=15)
        assert time.monotonic() - started >= 1.4, "the silent one waited out the grace"
    finally:
        await restarted.stop()
    assert [o.id for o in hub.fake.sent] == [silent], "only the send no status named went again"


async def test_send_gets_the_conversations_context(hub: Hub) -> None:
    await hub.webhook(
        {
            "type": "message",
            "id": "g1",
            "from": "alice",
            "name": "Alice",
            "text": "hello all",
            "ts": 1_700_000_000,
            "thread": "group-7",
            "subject": "Booking 42",
            "cc": ["bob", "alice", "carl"],
        }
    )

    async def conv_id() -> str | None:
        convs = await hub.conversations()
        return str(convs[0]["id"]) if convs else None

    conv = await eventually(conv_id)
    mid = await queued(hub, conv, {"text": "to the group"})
    await status_is(hub, mid, "sent")
    (out,) = [o for o in hub.fake.sent if o.id == mid]
    ctx = out.context
    assert ctx.thread_id == "group-7"
    assert ctx.subject == "Booking 42"
    assert [ref.ids for ref in ctx.cc] == [["fake:bob"], ["fake:carl"]], "the recipient is not a cc"
    assert ctx.last_inbound_at is not None and ctx.last_inbound_at.timestamp() == 1_700_000_000
    assert ctx.author == "agent"
    assert out.recipient.ids == ["fake:alice"]

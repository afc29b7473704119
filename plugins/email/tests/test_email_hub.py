"""The email channel inside a whole in-process hub (the kit's ``make_hub_client``), against a real
Dovecot and a real SMTP server: the ingest loop starts when the admin creates the channel, mail
becomes conversations threaded by In-Reply-To/References (and split by subject), replies go out
threaded to everyone on the thread, bounces fail the message they return, auto-replies create
nothing, an agent starts a conversation by address, and an admin resyncs since a date.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from dovecot import PASSWORD, USER, Dovecot
from email_support import eventually, make_bounce, make_mail, settings_dict
from smtp_server import SmtpServer

from hub.testing.pytest_plugin import HubTestApp


class Mailbox:
    """The hub, its email channel, and helpers that read what the app would see."""

    def __init__(self, hub: HubTestApp, channel_id: str) -> None:
        self.hub = hub
        self.channel_id = channel_id

    async def get(self, path: str) -> Any:
        resp = await self.hub.client.get(path, headers=self.hub.admin_headers)
        assert resp.status == 200, await resp.text()
        return await resp.json()

    async def post(self, path: str, body: Any, expect: int) -> Any:
        resp = await self.hub.client.post(path, json=body, headers=self.hub.admin_headers)
        data = await resp.json()
        assert resp.status == expect, data
        return data

    async def health_is(self, state: str) -> bool:
        channel = await self.get(f"/api/v1/admin/channels/{self.channel_id}")
        return bool(channel["health"]["state"] == state)

    async def conversations(self) -> list[dict[str, Any]]:
        data = await self.get("/api/v1/conversations?limit=200")
        return [c for c in data["conversations"] if c["channel_id"] == self.channel_id]

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        data = await self.get(f"/api/v1/conversations/{conversation_id}/messages?limit=200")
        return sorted(data["messages"], key=lambda m: m["created_at"])

    async def by_subject(self, subject: str) -> list[dict[str, Any]]:
        return [c for c in await self.conversations() if c["subject"] == subject]

    async def message_by_external_id(self, external_id: str) -> dict[str, Any] | None:
        for conv in await self.conversations():
            for m in await self.messages(conv["id"]):
                if m["external_id"] == external_id:
                    return m
        return None


@pytest.fixture
async def box(make_hub_client: Any, dovecot: Dovecot, smtp: SmtpServer) -> Mailbox:
    hub: HubTestApp = await make_hub_client()
    created = await hub.create_channel(
        "email",
        settings_dict(
            imap_port=dovecot.port,
            imap_username=USER,
            imap_password=PASSWORD,
            smtp_port=smtp.port,
            poll_interval_seconds=1,
            timeout_seconds=10,
            backfill_days=0,
        ),
        "mail",
    )
    assert created["mode"] == "pull"
    assert PASSWORD not in str(created)
    box = Mailbox(hub, "mail")
    # The loop was started by the admin's create, with no restart; it reports ok once connected.
    await eventually(lambda: box.health_is("ok"))
    return box


async def test_mail_threads_replies_bounces_and_auto_replies(
    box: Mailbox, dovecot: Dovecot, smtp: SmtpServer
) -> None:
    # The channel was created through the admin API: its loop must be running without a restart.
    dovecot.deliver(make_mail("<a1@customer.example>", "Broken vase", "The vase arrived broken."))
    [conv] = await eventually(lambda: box.by_subject("Broken vase"))
    [first] = await box.messages(conv["id"])
    assert (first["kind"], first["text"], first["direction"]) == (
        "email",
        "The vase arrived broken.",
        "inbound",
    )
    assert first["external_id"] == "<a1@customer.example>"

    # A reply by In-Reply-To joins it; the same customer's new topic is a conversation of its own;
    # a reply whose subject changed topic is not merged although it references the thread.
    dovecot.deliver(
        make_mail(
            "<a2@customer.example>",
            "Re: Broken vase",
            "Photos attached soon.\r\n\r\nOn Mon, Support wrote:\r\n> old",
            In_Reply_To="<a1@customer.example>",
            Cc="Kim <kim@customer.example>",
        )
    )
    dovecot.deliver(make_mail("<b1@customer.example>", "Invoice address", "Please change it."))
    dovecot.deliver(
        make_mail("<c1@customer.example>", "Totally new question", "Hi", References="<a1@customer.example>")
    )
    await eventually(lambda: box.by_subject("Totally new question"))
    await eventually(lambda: box.by_subject("Invoice address"))
    msgs = await eventually(lambda: _at_least(box.messages(conv["id"]), 2))
    assert [m["text"] for m in msgs] == ["The vase arrived broken.", "Photos attached soon."]

    # Automatic mail: nothing in the app.
    before = len(await box.conversations())
    dovecot.deliver(
        make_mail("<ooo@customer.example>", "Out of office", "Away", Auto_Submitted="auto-replied")
    )
    dovecot.deliver(
        make_mail("<news@shop.example>", "Sale", "50% off", sender="news@shop.example", Precedence="bulk")
    )

    # The agent replies: threaded, to the customer and the person they copied in.
    sent = await box.post(
        f"/api/v1/conversations/{conv['id']}/messages", {"text": "Sorry! A new one ships today."}, 202
    )
    await eventually(lambda: len(smtp.received) == 1)
    out = smtp.received[0].message
    assert out["Subject"] == "Re: Broken vase"
    assert out["In-Reply-To"] == "<a2@customer.example>"
    assert out["References"] == "<a1@customer.example> <a2@customer.example>"
    assert sorted(smtp.received[0].recipients) == ["ann@customer.example", "kim@customer.example"]
    assert out["Cc"] == "Kim <kim@customer.example>"
    message_id = str(out["Message-ID"])
    stored = await eventually(lambda: _sent(box, sent["id"]))
    assert stored["external_id"] == message_id

    # The reply bounces: the message fails with the reason, and no conversation appears.
    dovecot.deliver(make_bounce(message_id))
    failed = await eventually(lambda: _status(box, sent["id"], "failed"))
    assert failed["error"]["class"] == "recipient"
    assert "User unknown" in failed["error"]["message"]
    # The customer answers our reply: it joins by In-Reply-To on the Message-ID the hub sent.
    dovecot.deliver(make_mail("<a3@customer.example>", "Re: Broken vase", "Thanks!", In_Reply_To=message_id))
    await eventually(lambda: _at_least(box.messages(conv["id"]), 4))
    assert len(await box.conversations()) == before


async def test_agent_starts_a_conversation_and_admin_resyncs(
    box: Mailbox, dovecot: Dovecot, smtp: SmtpServer
) -> None:
    conv = await box.post(
        "/api/v1/conversations",
        {"channel_id": "mail", "to": "New Person <new@customer.example>", "subject": "Your quote"},
        201,
    )
    assert conv["subject"] == "Your quote"
    assert conv["contact"]["email"] == "new@customer.example"
    await box.post(f"/api/v1/conversations/{conv['id']}/messages", {"text": "Here is the quote."}, 202)
    await eventually(lambda: len(smtp.received) == 1)
    out = smtp.received[0].message
    assert out["Subject"] == "Your quote"
    assert out["In-Reply-To"] is None
    assert smtp.received[0].recipients == ["new@customer.example"]
    # Starting again is a new thread, not the same conversation.
    again = await box.post("/api/v1/conversations", {"channel_id": "mail", "to": "new@customer.example"}, 201)
    assert again["id"] != conv["id"]
    # Bad input: one JSON error shape, nothing stored.
    bad = await box.post("/api/v1/conversations", {"channel_id": "mail", "to": "not an address"}, 422)
    assert bad["error"]["details"][0]["field"] == "to"
    await box.post("/api/v1/conversations", {"channel_id": "nope", "to": "a@b.example"}, 404)

    # backfill_days is 0: mail already in the mailbox was not taken; the admin resyncs it.
    await box.hub.client.post("/api/v1/admin/channels/mail/disable", headers=box.hub.admin_headers)
    dovecot.deliver(make_mail("<old1@customer.example>", "Old one", "From last week"))
    dovecot.deliver(make_mail("<old2@customer.example>", "Old two", "Also old"))
    await box.hub.client.post("/api/v1/admin/channels/mail/enable", headers=box.hub.admin_headers)
    await eventually(lambda: box.health_is("ok"))
    since = (datetime.now(UTC) - timedelta(days=1)).date().isoformat()
    counts = await box.post("/api/v1/admin/channels/mail/resync", {"since": since}, 200)
    assert counts["found"] >= 2
    await eventually(lambda: box.by_subject("Old two"))
    again_counts = await box.post("/api/v1/admin/channels/mail/resync", {"since": since}, 200)
    assert again_counts == {"found": counts["found"], "new": 0}
    assert len(await box.by_subject("Old one")) == 1
    bad = await box.post("/api/v1/admin/channels/mail/resync", {"since": "next week"}, 422)
    assert bad["error"]["code"] == "validation_failed"


async def _at_least(messages: Any, n: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await messages
    return found if len(found) >= n else None


async def _sent(box: Mailbox, message_id: str) -> dict[str, Any] | None:
    msg: dict[str, Any] = await box.get(f"/api/v1/messages/{message_id}")
    return msg if msg["status"] == "sent" else None


async def _status(box: Mailbox, message_id: str, status: str) -> dict[str, Any] | None:
    msg: dict[str, Any] = await box.get(f"/api/v1/messages/{message_id}")
    return msg if msg["status"] == status else None

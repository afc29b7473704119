"""End to end: a real ``hub serve`` process, a real Dovecot and a real SMTP server, driven over HTTP
as the app and an admin would.

Mail delivered to the IMAP mailbox appears as normalized messages in the right conversations (its
attachment downloadable through the hub); mail delivered while the hub was down appears once after
it starts; an agent's reply reaches the SMTP server threaded; auto-replies and bounces never become
conversations, and a bounce fails the reply it returns.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from dovecot import PASSWORD, USER, Dovecot
from email_support import load, make_bounce, make_mail, settings_dict
from smtp_server import SmtpServer

from tests.e2e.e2e_support import Api, HubProcess, wait_until

pytestmark = [pytest.mark.e2e]


@pytest.fixture
async def hub(tmp_path: Path) -> AsyncIterator[HubProcess]:
    process = HubProcess(tmp_path / "hub")
    try:
        await process.bootstrap()
        yield process
    finally:
        await process.close()


class App:
    def __init__(self, api: Api) -> None:
        self.api = api

    async def conversations(self) -> list[dict[str, Any]]:
        data = await self.api.ok("GET", "/api/v1/conversations?limit=200")
        return list(data["conversations"])

    async def by_subject(self, subject: str) -> list[dict[str, Any]]:
        return [c for c in await self.conversations() if c["subject"] == subject]

    async def messages(self, conversation_id: str) -> list[dict[str, Any]]:
        return sorted(await self.api.messages(conversation_id), key=lambda m: m["created_at"])

    async def health(self) -> str:
        channel = await self.api.ok("GET", "/api/v1/admin/channels/mail")
        return str(channel["health"]["state"])


async def test_email_through_a_real_hub(hub: HubProcess, dovecot: Dovecot, smtp: SmtpServer) -> None:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
        api = Api(session, hub.base_url, hub.token)
        app = App(api)
        await api.ok(
            "POST",
            "/api/v1/admin/channels",
            201,
            json_body={
                "id": "mail",
                "type": "email",
                "name": "Support mailbox",
                "settings": settings_dict(
                    imap_port=dovecot.port,
                    imap_username=USER,
                    imap_password=PASSWORD,
                    smtp_port=smtp.port,
                    poll_interval_seconds=1,
                    timeout_seconds=10,
                ),
            },
        )
        await wait_until(lambda: _is(app.health(), "ok"), within=60)

        # New mail: a conversation with the new text, the subject and the attachments.
        dovecot.deliver(load("attachments"))
        dovecot.deliver(
            make_mail(
                "<e2e-a1@customer.example>",
                "Order 1042 arrived damaged",
                "The vase is broken.\r\n\r\nOn Mon, 2 Mar 2026, Shop <shop@example.com> wrote:\r\n> Shipped!",
            )
        )
        [photos] = await wait_until(lambda: app.by_subject("Photos of the damage"), within=60)
        [order] = await wait_until(lambda: app.by_subject("Order 1042 arrived damaged"), within=60)
        [first] = await app.messages(order["id"])
        assert (first["kind"], first["direction"], first["text"]) == (
            "email",
            "inbound",
            "The vase is broken.",
        )
        assert "Shipped!" in first["data"]["quoted_text"]
        assert order["contact"]["email"] == "ann@customer.example"
        [with_files] = await app.messages(photos["id"])
        assert [a["filename"] for a in with_files["attachments"]] == ["photo.png", "Rapport naïf.pdf"]
        # The hub fetches the attachment from the mailbox and serves it to the app.
        ready = await wait_until(lambda: _attachment_ready(app, photos["id"], 1), within=60)
        async with session.get(
            f"{hub.base_url}{ready['url']}" if ready["url"].startswith("/") else ready["url"],
            headers={"Authorization": f"Bearer {hub.token}"},
        ) as resp:
            assert resp.status == 200
            assert (await resp.read()).startswith(b"%PDF-1.4")

        # A reply joins the conversation; automatic mail never becomes one.
        dovecot.deliver(
            make_mail(
                "<e2e-a2@customer.example>",
                "Re: Order 1042 arrived damaged",
                "Photos follow.",
                In_Reply_To="<e2e-a1@customer.example>",
                References="<e2e-a1@customer.example>",
            )
        )
        dovecot.deliver(
            make_mail("<e2e-ooo@customer.example>", "Out of office", "Away", Auto_Submitted="auto-replied")
        )
        dovecot.deliver(make_mail("<e2e-bulk@customer.example>", "Newsletter", "Sale!", Precedence="bulk"))
        await wait_until(lambda: _count(app.messages(order["id"]), 2), within=60)

        # The agent replies: it reaches the SMTP server threaded.
        sent = await api.ok(
            "POST",
            f"/api/v1/conversations/{order['id']}/messages",
            202,
            json_body={"text": "Sorry! A new vase ships today."},
            headers={"Idempotency-Key": "e2e-reply-1"},
        )
        await wait_until(lambda: len(smtp.received) == 1, within=60)
        out = smtp.received[0].message
        assert out["Subject"] == "Re: Order 1042 arrived damaged"
        assert out["In-Reply-To"] == "<e2e-a2@customer.example>"
        assert out["References"] == "<e2e-a1@customer.example> <e2e-a2@customer.example>"
        assert smtp.received[0].recipients == ["ann@customer.example"]
        reply_id = str(out["Message-ID"])
        await wait_until(lambda: _status(api, sent["id"], "sent"), within=60)

        # It bounces: the reply fails with the reason; no conversation appears.
        dovecot.deliver(make_bounce(reply_id, "5.2.2", "552 5.2.2 Mailbox full"))
        failed = await wait_until(lambda: _status(api, sent["id"], "failed"), within=60)
        assert "Mailbox full" in failed["error"]["message"]
        assert {c["subject"] for c in await app.conversations()} == {
            "Photos of the damage",
            "Order 1042 arrived damaged",
        }

        # The hub stops; mail arrives meanwhile; after the start it appears once.
        await hub.stop()
        dovecot.deliver(make_mail("<e2e-down1@customer.example>", "Sent while down", "Are you there?"))
        dovecot.deliver(
            make_mail(
                "<e2e-down2@customer.example>",
                "Re: Order 1042 arrived damaged",
                "Any news?",
                In_Reply_To=reply_id,
            )
        )
        await hub.start()
        await wait_until(lambda: app.by_subject("Sent while down"), within=60)
        msgs = await wait_until(lambda: _count(app.messages(order["id"]), 4), within=60)
        assert [m["text"] for m in msgs] == [
            "The vase is broken.",
            "Photos follow.",
            "Sorry! A new vase ships today.",
            "Any news?",
        ]
        subjects = sorted(c["subject"] for c in await app.conversations())
        assert subjects == ["Order 1042 arrived damaged", "Photos of the damage", "Sent while down"]
        assert len(await app.messages((await app.by_subject("Sent while down"))[0]["id"])) == 1


async def _is(value: Any, expected: str) -> bool:
    return bool(await value == expected)


async def _count(messages: Any, n: int) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = await messages
    assert len(found) <= n, f"more messages than expected: {[m['text'] for m in found]}"
    return found if len(found) == n else None


async def _status(api: Api, message_id: str, status: str) -> dict[str, Any] | None:
    msg = await api.message(message_id)
    return msg if msg["status"] == status else None


async def _attachment_ready(app: App, conversation_id: str, index: int) -> dict[str, Any] | None:
    [msg] = await app.messages(conversation_id)
    att: dict[str, Any] = msg["attachments"][index]
    return att if att.get("state") == "ready" and att.get("url") else None

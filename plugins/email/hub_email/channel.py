"""``EmailChannel``: one mailbox as a hub channel, IMAP in (a pull channel) and SMTP out."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from email.utils import parseaddr
from pathlib import Path
from typing import Any, ClassVar, Literal

import aiosmtplib

from hub.channel import (
    Capabilities,
    Channel,
    ChannelContext,
    ChannelSettings,
    Health,
    HealthState,
    Inbox,
    MediaContent,
    RawEvent,
)
from hub.errors import SendError, SendErrorClass
from hub.models import ContactRef, InboundMessage, OutboundMessage, ParsedEvent, SendReceipt

from .compose import OutboundFile, build_mail, recipient_address
from .imap import ImapAuthError, ImapError, imap_session
from .ingest import Ingestor, delivery_key
from .mime import leaf_parts, read_message
from .parse import parse_mail
from .settings import CAPABILITIES
from .settings import Settings as EmailSettings
from .smtp import classify_smtp_error, send_mail

__all__ = ["EmailChannel", "same_topic"]

_PREFIXES = re.compile(
    r"^\s*((re|aw|sv|vs|antw|ref|rif|r|fwd?|wg|tr|rv|enc)\s*(\[\d+\])?\s*:\s*|\[[^\]]{1,40}\]\s*)+",
    re.IGNORECASE,
)


def _topic(subject: str | None) -> str:
    return " ".join(_PREFIXES.sub("", subject or "").lower().split())


def same_topic(conversation_subject: str | None, subject: str | None) -> bool:
    """Whether a reply's subject still belongs to the conversation's (``Re:``/``Fwd:``/tags aside).

    An empty subject on either side does not separate them, and neither does one subject
    containing the other (a customer appending "- urgent").
    """
    a, b = _topic(conversation_subject), _topic(subject)
    return not a or not b or a == b or a in b or b in a


class EmailChannel(Channel):
    """One mailbox: mail read over IMAP (IDLE or polling), replies sent over SMTP."""

    type_name: ClassVar[str] = "email"
    display_name: ClassVar[str] = "Email (IMAP and SMTP)"
    Settings: ClassVar[type[ChannelSettings]] = EmailSettings
    capabilities: ClassVar[Capabilities] = CAPABILITIES
    mode: ClassVar[Literal["push", "pull"]] = "pull"
    threaded: ClassVar[bool] = True
    """Each new mail thread is a conversation of its own, even with the same customer."""

    settings: EmailSettings

    def __init__(self, channel_id: str, settings: ChannelSettings, context: ChannelContext) -> None:
        if not isinstance(settings, EmailSettings):
            settings = EmailSettings.model_validate(settings.model_dump())
        super().__init__(channel_id, settings, context)
        self.ingestor = Ingestor(settings, context)

    # ---- inbound -------------------------------------------------------------------------------

    def delivery_key(self, body: bytes, headers: Any) -> str:
        return delivery_key(body)

    def parse(self, raw: RawEvent) -> list[ParsedEvent]:
        return parse_mail(
            raw.body,
            own_address=self.settings.from_address,
            received_at=raw.received_at,
            log=self.context.log,
        )

    def joins_thread(self, conversation_subject: str | None, message: InboundMessage) -> bool:
        """A reply joins the conversation its headers point to only when the subject agrees."""
        return same_topic(conversation_subject, message.subject)

    def contact_for(self, address: str, name: str | None = None) -> ContactRef:
        """An agent starting a conversation: a bare address such as ``ann@example.com``."""
        display, addr = parseaddr(address.strip())
        local, _, domain = addr.rpartition("@")
        if not local or "." not in domain or any(c.isspace() for c in addr):
            raise ValueError("an email address such as ann@example.com")
        addr = addr.lower()
        return ContactRef(ids=[f"email:{addr}"], name=name or display or None, email=addr)

    async def ingest(self, inbox: Inbox) -> None:
        await self.ingestor.run(inbox)

    async def resync(self, inbox: Inbox, since: date) -> dict[str, int]:
        try:
            return await self.ingestor.resync(inbox, since)
        except ImapAuthError as exc:
            raise SendError(SendErrorClass.AUTH, str(exc)) from None
        except (ImapError, OSError, TimeoutError) as exc:
            raise SendError(SendErrorClass.RETRYABLE, f"IMAP: {exc}") from None

    async def fetch_media(self, attachment_external_id: str, source_url: str | None) -> MediaContent:
        """Fetch the mail again (by Message-ID) and return the attachment's part."""
        message_id, _, index = attachment_external_id.rpartition("#")
        if not message_id or not index.isdigit():
            raise SendError(SendErrorClass.PERMANENT, f"not an email attachment id: {attachment_external_id}")
        try:
            async with imap_session(self.settings) as session:
                await session.select(self.settings.imap_mailbox)
                uids = await session.uids("HEADER", "Message-ID", f'"{message_id}"')
                fetched = await session.fetch(uids[-1:])
        except ImapAuthError as exc:
            raise SendError(SendErrorClass.AUTH, str(exc)) from None
        except (ImapError, OSError, TimeoutError) as exc:
            raise SendError(SendErrorClass.RETRYABLE, f"IMAP: {exc}") from None
        if not fetched:
            raise SendError(SendErrorClass.PERMANENT, "the mail is no longer in the mailbox")
        parts = list(leaf_parts(read_message(fetched[0][1])))
        if int(index) >= len(parts):
            raise SendError(SendErrorClass.PERMANENT, "the mail has no such part")
        part = parts[int(index)]
        payload = part.get_payload(decode=True)
        data = payload if isinstance(payload, bytes) else part.as_bytes()
        return MediaContent(data=data, mime_type=part.get_content_type(), filename=part.get_filename())

    # ---- outbound ------------------------------------------------------------------------------

    async def _files(self, out: OutboundMessage) -> list[OutboundFile]:
        files: list[OutboundFile] = []
        for att in out.attachments:
            mime = att.mime_type or "application/octet-stream"
            name = att.filename or f"attachment-{len(files) + 1}"
            if att.path:
                try:
                    data = await asyncio.to_thread(Path(att.path).read_bytes)
                except OSError as exc:
                    raise SendError(
                        SendErrorClass.PERMANENT, f"attachment {name} is unreadable: {exc}"
                    ) from None
            elif att.url:
                try:
                    response = await self.context.http.get(att.url, timeout=self.settings.timeout_seconds)
                except Exception as exc:
                    raise SendError(SendErrorClass.RETRYABLE, f"attachment {name}: {exc}") from None
                if response.status_code >= 400:
                    cls = (
                        SendErrorClass.RETRYABLE if response.status_code >= 500 else SendErrorClass.PERMANENT
                    )
                    raise SendError(cls, f"attachment {name}: HTTP {response.status_code}")
                data = response.content
            else:
                raise SendError(SendErrorClass.PERMANENT, f"attachment {name} has neither a file nor a URL")
            files.append((name, mime, data))
        return files

    async def send(self, message: OutboundMessage) -> SendReceipt:
        context = message.context
        cc = list(context.cc)  # the conversation's other participants: replies go to all
        try:
            mail = build_mail(
                message,
                from_address=self.settings.from_address,
                from_name=self.settings.from_name,
                to=message.recipient,
                cc=cc,
                subject=context.subject,
                thread_refs=message.thread_refs,
                automated=context.author in ("bot", "automation"),
                files=await self._files(message),
            )
        except ValueError as exc:
            raise SendError(SendErrorClass.RECIPIENT, str(exc)) from None
        to = [a for c in [message.recipient, *cc] if (a := recipient_address(c))]
        refused = await send_mail(self.settings, mail, list(dict.fromkeys(to)))
        await self._keep_sent_copy(mail.as_bytes())
        data: dict[str, Any] = {"refused": refused} if refused else {}
        return SendReceipt(external_id=str(mail["Message-ID"]), data=data)

    async def _keep_sent_copy(self, data: bytes) -> None:
        """Append the mail to the Sent folder where there is one. The mail went out: never fail."""
        try:
            async with asyncio.timeout(self.settings.timeout_seconds):
                async with imap_session(self.settings) as session:
                    sent = await session.sent_mailbox()
                    if sent is not None:
                        await session.append(sent, data)
        except Exception as exc:
            self.context.log.warning("could not keep a copy in the Sent folder: %s", exc)

    # ---- health --------------------------------------------------------------------------------

    async def health_check(self) -> Health:
        """Log in to both servers: ``ok``, ``auth_failed`` or ``unreachable`` with the reason."""
        try:
            async with imap_session(self.settings) as session:
                await session.select(self.settings.imap_mailbox)
        except ImapAuthError as exc:
            return Health(state=HealthState.AUTH_FAILED, last_error=f"IMAP: {exc}")
        except Exception as exc:
            return Health(state=HealthState.UNREACHABLE, last_error=f"IMAP: {exc}")
        client = aiosmtplib.SMTP(
            hostname=self.settings.smtp_host,
            port=self.settings.smtp_port,
            use_tls=self.settings.smtp_security == "ssl",
            start_tls=True if self.settings.smtp_security == "starttls" else False,
            timeout=self.settings.timeout_seconds,
        )
        try:
            async with client:
                if self.settings.smtp_username and self.settings.smtp_password:
                    await client.login(
                        self.settings.smtp_username, self.settings.smtp_password.get_secret_value()
                    )
        except Exception as exc:
            err = classify_smtp_error(exc)
            state = (
                HealthState.AUTH_FAILED if err.error_class is SendErrorClass.AUTH else HealthState.UNREACHABLE
            )
            return Health(state=state, last_error=f"SMTP: {err.message}")
        return Health(state=HealthState.OK)

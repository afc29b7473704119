"""A small layer over aioimaplib: connect (ssl, starttls or plain), select, search, fetch, append.

aioimaplib answers with raw response lines; the parsing of SELECT's UIDVALIDITY, FETCH literals
and LIST attributes lives here so the ingest loop reads as what it does.
"""

from __future__ import annotations

import asyncio
import re
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import date

import aioimaplib

from .settings import Settings

__all__ = ["ImapAuthError", "ImapError", "ImapSession", "Selected", "imap_session"]

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_FETCH_UID = re.compile(rb"\bUID (\d+)")
_LIST = re.compile(rb'^\((?P<flags>[^)]*)\) (?:"[^"]*"|NIL) (?P<name>.+)$')
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_SENT_NAMES = ("Sent", "Sent Items", "Sent Messages", "Sent Mail", "INBOX.Sent", "INBOX/Sent")


class ImapError(Exception):
    """The server refused a command or the connection failed."""


class ImapAuthError(ImapError):
    """The server refused the login: the admin must fix the credentials."""


@dataclass
class Selected:
    mailbox: str
    uidvalidity: int
    uidnext: int | None


def _quote(mailbox: str) -> str:
    return '"' + mailbox.replace("\\", "\\\\").replace('"', '\\"') + '"'


def imap_date(day: date) -> str:
    return f"{day.day}-{_MONTHS[day.month - 1]}-{day.year}"


@dataclass
class ImapSession:
    client: aioimaplib.IMAP4
    settings: Settings
    lost: asyncio.Event = field(default_factory=asyncio.Event)
    idling: bool = False
    """An IDLE is running and its DONE not sent yet."""

    @property
    def capabilities(self) -> set[str]:
        return set(self.client.protocol.capabilities)

    async def _check(self, response: aioimaplib.Response, what: str) -> aioimaplib.Response:
        if response.result != "OK":
            text = b" ".join(line for line in response.lines if isinstance(line, bytes)).decode(
                errors="replace"
            )
            raise ImapError(f"{what} refused: {text[:200]}")
        return response

    async def select(self, mailbox: str) -> Selected:
        response = await self._check(await self.client.select(_quote(mailbox)), f"SELECT {mailbox}")
        text = b" ".join(line for line in response.lines if isinstance(line, bytes | bytearray))
        validity = _UIDVALIDITY.search(text)
        if validity is None:
            raise ImapError(f"the server gave no UIDVALIDITY for {mailbox}")
        nxt = _UIDNEXT.search(text)
        return Selected(mailbox, int(validity.group(1)), int(nxt.group(1)) if nxt else None)

    async def uids(self, *criteria: str) -> list[int]:
        response = await self._check(await self.client.uid_search(*criteria, charset=None), "UID SEARCH")
        found: list[int] = []
        for line in response.lines:
            if isinstance(line, bytes | bytearray) and not line.startswith(b"SEARCH completed"):
                found += [int(tok) for tok in bytes(line).split() if tok.isdigit()]
        return sorted(set(found))

    async def fetch(self, uids: list[int]) -> list[tuple[int, bytes]]:
        """The full bytes of each message (``BODY.PEEK[]``: fetching does not mark it read)."""
        if not uids:
            return []
        response = await self._check(
            await self.client.uid("fetch", ",".join(map(str, uids)), "(UID BODY.PEEK[])"), "UID FETCH"
        )
        out: list[tuple[int, bytes]] = []
        lines = response.lines
        for i, line in enumerate(lines[:-1]):
            if isinstance(line, bytes) and b"FETCH" in line and isinstance(lines[i + 1], bytearray):
                uid = _FETCH_UID.search(line)
                nxt_line = lines[i + 2] if i + 2 < len(lines) else b""
                if uid is None and isinstance(nxt_line, bytes):
                    uid = _FETCH_UID.search(nxt_line)  # some servers put UID after the literal
                if uid is not None:
                    out.append((int(uid.group(1)), bytes(lines[i + 1])))
        return sorted(out)

    async def sent_mailbox(self) -> str | None:
        """The mailbox the server marks ``\\Sent`` (RFC 6154), else one with a usual name."""
        if self.settings.imap_sent_mailbox:
            return self.settings.imap_sent_mailbox
        response = await self.client.list('""', "*")
        if response.result != "OK":
            return None
        names: list[str] = []
        for line in response.lines:
            if not isinstance(line, bytes):
                continue
            match = _LIST.match(line)
            if match is None:
                continue
            name = match.group("name").decode(errors="replace").strip().strip('"')
            if b"\\Sent" in match.group("flags"):
                return name
            names.append(name)
        return next((n for n in _SENT_NAMES if n in names), None)

    async def append(self, mailbox: str, data: bytes) -> None:
        await self._check(await self.client.append(data, mailbox=_quote(mailbox), flags="(\\Seen)"), "APPEND")

    async def wait_for_news(self, seconds: float) -> None:
        """Return when the server reports a change (IDLE) or ``seconds`` passed (polling)."""
        if "IDLE" not in self.capabilities:
            lost = asyncio.ensure_future(self.lost.wait())
            try:
                await asyncio.wait({lost}, timeout=seconds)
            finally:
                lost.cancel()
            if self.lost.is_set():
                raise ImapError("the connection was lost")
            await self._check(await self.client.noop(), "NOOP")
            return
        idle = await self.client.idle_start(timeout=seconds)
        self.idling = True
        push = asyncio.ensure_future(self.client.wait_server_push(timeout=seconds + 5))
        lost = asyncio.ensure_future(self.lost.wait())
        try:
            await asyncio.wait({push, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            push.cancel()
            lost.cancel()
        if self.lost.is_set():
            raise ImapError("the connection was lost")
        self.client.idle_done()
        self.idling = False
        await asyncio.wait_for(idle, self.settings.timeout_seconds)


async def _starttls(client: aioimaplib.IMAP4, host: str) -> None:
    """aioimaplib has no STARTTLS: send it, then upgrade the transport in place (RFC 3501 6.2.1)."""
    protocol = client.protocol
    if "STARTTLS" not in protocol.capabilities:
        raise ImapError("the IMAP server does not offer STARTTLS; choose ssl or none")
    response = await protocol.simple_command("STARTTLS")
    if response.result != "OK":
        raise ImapError("the IMAP server refused STARTTLS")
    loop = asyncio.get_running_loop()
    transport = await loop.start_tls(
        protocol.transport, protocol, ssl.create_default_context(), server_hostname=host
    )
    protocol.transport = transport
    await protocol.capability()  # capabilities may change once encrypted


@asynccontextmanager
async def imap_session(settings: Settings) -> AsyncIterator[ImapSession]:
    """A logged-in session; the connection is closed on exit. Raises ``ImapAuthError`` on a bad login."""
    lost = asyncio.Event()
    session: ImapSession | None = None
    kwargs = {"host": settings.imap_host, "port": settings.imap_port, "timeout": settings.timeout_seconds}
    if settings.imap_security == "ssl":
        client: aioimaplib.IMAP4 = aioimaplib.IMAP4_SSL(**kwargs, conn_lost_cb=lambda _exc: lost.set())
    else:
        client = aioimaplib.IMAP4(**kwargs, conn_lost_cb=lambda _exc: lost.set())
    try:
        try:
            await client.wait_hello_from_server()
        except (OSError, TimeoutError) as exc:
            raise ImapError(f"cannot connect to {settings.imap_host}:{settings.imap_port}: {exc}") from None
        if settings.imap_security == "starttls":
            await _starttls(client, settings.imap_host)
        response = await client.login(settings.imap_username, settings.imap_password.get_secret_value())
        if response.result != "OK":
            raise ImapAuthError(f"the IMAP server refused the login for {settings.imap_username}")
        session = ImapSession(client, settings, lost)
        yield session
    finally:
        # LOGOUT only where the server can take it: not on a connection never made (aioimaplib
        # refuses it in state STARTED, and the refusal surfaced as a task's unretrieved exception).
        if not lost.is_set() and client.protocol.state in ("NONAUTH", "AUTH", "SELECTED"):
            try:
                if session is not None and session.idling:  # stopped while idling: end it first
                    client.idle_done()
                await asyncio.wait_for(client.logout(), 2)
            except Exception:  # the connection is going anyway
                pass
        transport = getattr(client.protocol, "transport", None)
        if transport is not None:
            transport.close()

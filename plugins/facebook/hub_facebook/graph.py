"""The Graph API calls the Messenger and Instagram channels make, on ``hub_meta.GraphClient``."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
from hub_meta import GraphClient

from hub.channel import MediaContent
from hub.errors import SendError, SendErrorClass

from .errors import CODE_TABLE
from .settings import MessengerSettings

__all__ = ["MessengerGraph"]


class MessengerGraph(GraphClient):
    """Send API, attachment upload, user profiles and the account probe."""

    def __init__(
        self, http: httpx.AsyncClient, settings: MessengerSettings, log: logging.Logger, name: str
    ) -> None:
        token = settings.page_access_token.get_secret_value()
        super().__init__(
            http,
            base_url=settings.api_base_url,
            access_token=token,
            secrets=[token, settings.app_secret.get_secret_value()],
            table=CODE_TABLE,
            log=log,
            name=name,
            user_agent=settings.user_agent,
            timeout=settings.request_timeout,
        )
        self._messages_url = httpx.URL(self.url("me", "messages"))

    async def post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.json("POST", self._messages_url, json=body)

    async def upload_attachment(self, kind: str, data: bytes, mime_type: str, filename: str) -> str:
        """``POST /me/message_attachments`` (multipart); the reusable attachment id."""
        message = {"attachment": {"type": kind, "payload": {"is_reusable": True}}}
        result = await self.json(
            "POST",
            self.url("me", "message_attachments"),
            data={"message": json.dumps(message)},
            files={"filedata": (filename, data, mime_type)},
        )
        attachment_id = result.get("attachment_id")
        if not attachment_id:
            raise SendError(SendErrorClass.RETRYABLE, "the attachment upload returned no attachment_id")
        return str(attachment_id)

    async def profile(self, user_id: str, fields: str) -> dict[str, Any]:
        """``GET /{psid or igsid}?fields=...``: the user's public profile."""
        return await self.json("GET", self.url(user_id), params={"fields": fields})

    async def account(self, account_id: str, fields: str) -> dict[str, Any]:
        return await self.json("GET", self.url(account_id), params={"fields": fields})

    async def download(self, url: str) -> MediaContent:
        """An attachment's bytes from Meta's CDN URL (public and short-lived: no token sent)."""
        response = await self.request("GET", url, anonymous=True)
        return MediaContent(data=response.content, mime_type=response.headers.get("content-type"))

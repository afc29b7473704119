"""The Graph API calls the WhatsApp channel makes, on ``hub_meta.GraphClient``'s plumbing.

Every failure leaves as a classified ``SendError`` (the code table in ``errors.py``); the access
token travels only in the ``Authorization`` header.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from typing import Any

import httpx
from hub_meta import GraphClient as MetaGraphClient

from hub.channel import MediaContent
from hub.errors import SendError, SendErrorClass

from .errors import CODE_TABLE
from .settings import Settings

__all__ = ["GraphClient"]


class GraphClient(MetaGraphClient):
    """Thin, typed access to the endpoints the WhatsApp channel uses."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings, log: logging.Logger) -> None:
        super().__init__(
            http,
            base_url=settings.api_base_url,
            access_token=settings.access_token.get_secret_value(),
            secrets=[settings.access_token.get_secret_value(), settings.app_secret.get_secret_value()],
            table=CODE_TABLE,
            log=log,
            name="whatsapp",
            user_agent=settings.user_agent,
            timeout=settings.request_timeout,
        )
        self.settings = settings
        # Parsed once: parsing a URL string is the largest single cost inside httpx's request
        # building on the send path (profiled).
        self._messages_url = httpx.URL(self.url(settings.phone_number_id, "messages"))

    # ---- endpoints -----------------------------------------------------------------------------

    async def post_message(self, body: dict[str, Any]) -> dict[str, Any]:
        return await self.json("POST", self._messages_url, json=body)

    async def upload_media(self, data: bytes, mime_type: str, filename: str) -> str:
        """``POST /{phone-number-id}/media`` (multipart); returns the new media id."""
        result = await self.json(
            "POST",
            self.url(self.settings.phone_number_id, "media"),
            data={"messaging_product": "whatsapp", "type": mime_type},
            files={"file": (filename, data, mime_type)},
        )
        media_id = result.get("id")
        if not media_id:
            raise SendError(SendErrorClass.RETRYABLE, "the media upload returned no id")
        return str(media_id)

    async def download_media(self, media_id: str | None, source_url: str | None) -> MediaContent:
        """Two steps: ``GET /{media-id}`` for a short-lived URL, then GET it with the same token."""
        mime_type: str | None = None
        expected: str | None = None
        url = source_url
        if media_id:
            info = await self.json(
                "GET",
                self.url(media_id),
                params={"phone_number_id": self.settings.phone_number_id},
            )
            url = info.get("url") or source_url
            mime_type = info.get("mime_type")
            sha = info.get("sha256")
            expected = sha.lower() if isinstance(sha, str) and sha else None
        if not url:
            raise SendError(SendErrorClass.PERMANENT, "no media id or URL to download from")
        response = await self.request("GET", str(url))
        data = response.content
        # Off the event loop: a video is megabytes, and every other channel waits on this loop.
        digest = (await asyncio.to_thread(hashlib.sha256, data)).hexdigest()
        if expected and digest != expected:
            raise SendError(
                SendErrorClass.RETRYABLE,
                f"media {media_id} failed its sha256 check (got {len(data)} bytes)",
                details={"expected_sha256": expected, "sha256": digest},
            )
        mime_type = mime_type or response.headers.get("content-type")
        return MediaContent(data=data, mime_type=mime_type, sha256_hex=digest)

    async def phone_number_info(self) -> dict[str, Any]:
        return await self.json(
            "GET",
            self.url(self.settings.phone_number_id),
            params={"fields": "id,display_phone_number,verified_name,quality_rating"},
        )

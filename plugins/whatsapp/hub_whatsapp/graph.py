"""The Graph API calls the channel makes, over the ``httpx.AsyncClient`` the hub lends.

Every failure leaves as a classified ``SendError``: provider errors through the code table in
``errors.py``, timeouts and transport errors as ``retryable``. The access token travels only in the
``Authorization`` header, and every message or detail is scrubbed of secret values before it
leaves this module.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Mapping
from typing import Any

import httpx

from hub.channel import MediaContent
from hub.errors import SendError, SendErrorClass

from .errors import error_from_response, redact
from .settings import Settings

__all__ = ["GraphClient"]


class GraphClient:
    """Thin, typed access to the endpoints the WhatsApp channel uses."""

    def __init__(self, http: httpx.AsyncClient, settings: Settings, log: logging.Logger) -> None:
        self.http = http
        self.settings = settings
        self.log = log
        # Built once: the send path runs this per message, and parsing a URL string is the
        # largest single cost inside httpx's request building (profiled).
        self._headers = {
            "Authorization": f"Bearer {settings.access_token.get_secret_value()}",
            "User-Agent": settings.user_agent,
        }
        self._timeout = httpx.Timeout(settings.request_timeout)
        self._messages_url = httpx.URL(self.url(settings.phone_number_id, "messages"))

    # ---- plumbing ------------------------------------------------------------------------------

    @property
    def secrets(self) -> list[str]:
        return [
            self.settings.access_token.get_secret_value(),
            self.settings.app_secret.get_secret_value(),
        ]

    def url(self, *parts: str) -> str:
        return "/".join([self.settings.api_base_url, *(p.strip("/") for p in parts)])

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self._headers, **extra} if extra else self._headers

    async def request(self, method: str, url: str | httpx.URL, **kwargs: Any) -> httpx.Response:
        """Send one request; raise a classified ``SendError`` unless the answer is 2xx."""
        try:
            response = await self.http.request(
                method,
                url,
                headers=self.headers(kwargs.pop("headers", None)),
                timeout=self._timeout,
                **kwargs,
            )
        except httpx.TimeoutException as exc:
            raise SendError(
                SendErrorClass.RETRYABLE,
                f"the Graph API did not answer within {self.settings.request_timeout:g} s "
                f"({type(exc).__name__})",
                details={"exception": type(exc).__name__},
            ) from None
        except httpx.HTTPError as exc:
            text = redact(str(exc), self.secrets)
            raise SendError(
                SendErrorClass.RETRYABLE,
                f"could not reach the Graph API: {type(exc).__name__}: {text}",
                details={"exception": type(exc).__name__},
            ) from None
        if response.is_success:
            return response
        try:
            body: Any = response.json()
        except ValueError:
            body = response.text
        error = error_from_response(response.status_code, body, response.headers, secrets=self.secrets)
        self.log.warning(
            "whatsapp: %s %s failed: HTTP %s, code %s, class %s: %s",
            method,
            httpx.URL(url).path,
            response.status_code,
            error.provider_code,
            error.error_class.value,
            error.message,
        )
        raise error

    async def json(self, method: str, url: str | httpx.URL, **kwargs: Any) -> dict[str, Any]:
        response = await self.request(method, url, **kwargs)
        try:
            data = response.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise SendError(
                SendErrorClass.RETRYABLE,
                f"the Graph API answered HTTP {response.status_code} without a JSON object",
            )
        return data

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

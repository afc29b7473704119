"""``GraphClient``: requests to Meta's Graph API over the ``httpx.AsyncClient`` the hub lends.

Every failure leaves as a classified ``SendError``: provider errors through the channel's
``CodeTable``, timeouts and transport errors as ``retryable``. The access token travels only in
the ``Authorization`` header, and every message or detail is scrubbed of secret values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import httpx

from hub.channel import Health, HealthState
from hub.errors import SendError, SendErrorClass
from hub_meta.errors import CodeTable, error_from_response, redact

__all__ = ["GraphClient", "health_of"]


class GraphClient:
    """The request plumbing every Meta channel's Graph client builds its endpoints on."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        base_url: str,
        access_token: str,
        secrets: list[str],
        table: CodeTable,
        log: logging.Logger,
        name: str,
        user_agent: str,
        timeout: float,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.secrets = [s for s in secrets if s]
        self.table = table
        self.log = log
        self.name = name
        self.timeout_seconds = timeout
        # Built once: the send path runs this per message, and building headers and URLs is a
        # visible share of httpx's per-request cost (profiled on the WhatsApp send path).
        self._headers = {"Authorization": f"Bearer {access_token}", "User-Agent": user_agent}
        self._timeout = httpx.Timeout(timeout)

    def url(self, *parts: str) -> str:
        return "/".join([self.base_url, *(p.strip("/") for p in parts)])

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {**self._headers, **extra} if extra else self._headers

    async def request(
        self, method: str, url: str | httpx.URL, *, anonymous: bool = False, **kwargs: Any
    ) -> httpx.Response:
        """Send one request; raise a classified ``SendError`` unless the answer is 2xx.

        ``anonymous`` leaves the access token out (a CDN URL needs none and must never see it).
        """
        extra = kwargs.pop("headers", None)
        headers = {"User-Agent": self._headers["User-Agent"], **(extra or {})} if anonymous else None
        try:
            response = await self.http.request(
                method,
                url,
                headers=headers or self.headers(extra),
                timeout=self._timeout,
                **kwargs,
            )
        except httpx.TimeoutException as exc:
            raise SendError(
                SendErrorClass.RETRYABLE,
                f"the Graph API did not answer within {self.timeout_seconds:g} s ({type(exc).__name__})",
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
        error = error_from_response(
            response.status_code, body, response.headers, table=self.table, secrets=self.secrets
        )
        self.log.warning(
            "%s: %s %s failed: HTTP %s, code %s, class %s: %s",
            self.name,
            method,
            httpx.URL(url).path,
            response.status_code,
            error.provider_code,
            error.error_class.value,
            error.message,
        )
        raise error

    async def json(self, method: str, url: str | httpx.URL, **kwargs: Any) -> dict[str, Any]:
        """``request``, and the answer as a JSON object (anything else is a retryable error)."""
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


def health_of(exc: SendError) -> Health:
    """A failed health probe in the shared vocabulary: bad token, throttled, or unreachable."""
    if exc.error_class is SendErrorClass.AUTH:
        state = HealthState.AUTH_FAILED
    elif exc.error_class is SendErrorClass.RATE_LIMITED:
        state = HealthState.RATE_LIMITED
    else:
        state = HealthState.UNREACHABLE
    return Health(state=state, last_error=exc.message)

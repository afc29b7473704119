"""Channel secrets are masked in every log record, whatever logger, library or handler."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from urllib.parse import quote

import httpx
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from hub.http import provider_client
from hub.redact import MASK, SecretRedactor

TOKEN = "123456789:AAE-planted_Token+with odd~chars"


@pytest.fixture
def redactor() -> Iterator[SecretRedactor]:
    r = SecretRedactor()
    uninstall = r.install()
    try:
        yield r
    finally:
        uninstall()


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A handler of its own on the root logger at DEBUG, as a deployment might add one."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


async def test_a_token_in_the_url_path_of_the_lent_client_is_masked_at_debug(
    redactor: SecretRedactor, stream: io.StringIO
) -> None:
    seen: list[str] = []

    async def get_me(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_get("/{bot}/getMe", get_me)
    redactor.set("tg", [TOKEN])
    async with TestServer(app, host="127.0.0.1") as server, provider_client("test") as client:
        resp = await client.get(str(server.make_url("/bot" + quote(TOKEN) + "/getMe")))
    assert resp.status_code == 200 and seen == [f"/bot{TOKEN}/getMe"]
    text = stream.getvalue()
    assert "HTTP Request: GET http://127.0.0.1" in text, text
    assert "planted" not in text, text
    assert MASK in text


def test_messages_arguments_exceptions_and_stacks_are_masked(
    redactor: SecretRedactor, stream: io.StringIO
) -> None:
    redactor.set("ch1", ["s3cr3t-value"])
    log = logging.getLogger("some.library")
    log.debug("calling %s with %r", "https://x.invalid/s3cr3t-value/", {"k": "s3cr3t-value"})
    log.info("as a URL path encodes it: %s", "s3cr3t%2Dvalue".replace("%2D", "-").replace("-", "%2D"))
    try:
        raise RuntimeError("provider refused s3cr3t-value")
    except RuntimeError:
        log.exception("failed")
    log.warning("where", stack_info=True, extra={"note": "ok"})
    text = stream.getvalue()
    assert "s3cr3t" not in text, text
    assert text.count(MASK) >= 4
    assert "RuntimeError: provider refused [redacted]" in text


def test_secrets_follow_channel_changes_and_old_ones_stay_masked(
    redactor: SecretRedactor, stream: io.StringIO
) -> None:
    log = logging.getLogger("hub.test")
    log.info("before: tok-one")
    redactor.set("ch", ["tok-one"])
    log.info("set: tok-one")
    redactor.set("ch", ["tok-two"])  # the admin rotated the token
    log.info("rotated: tok-one tok-two")
    redactor.discard("ch")
    log.info("removed: tok-two")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith("before: tok-one")  # unknown until a channel declares it
    assert lines[1].endswith(f"set: {MASK}")
    assert lines[2].endswith(f"rotated: {MASK} {MASK}")
    assert lines[3].endswith(f"removed: {MASK}")


def test_short_values_are_not_secrets_and_uninstall_stops_masking(stream: io.StringIO) -> None:
    r = SecretRedactor()
    uninstall = r.install()
    r.set("ch", ["abc", "longer-secret"])
    logging.getLogger("hub.test").info("abc longer-secret")
    uninstall()
    logging.getLogger("hub.test").info("after longer-secret")
    lines = stream.getvalue().splitlines()
    assert lines[0].endswith(f"abc {MASK}")
    assert lines[1].endswith("after longer-secret")


def test_a_request_error_naming_the_url_is_masked(redactor: SecretRedactor, stream: io.StringIO) -> None:
    redactor.set("tg", [TOKEN])
    exc = httpx.ConnectError(f"cannot reach https://api.telegram.invalid/bot{TOKEN}/x")
    logging.getLogger("hub.outbox").warning("send failed: %s", exc)
    assert "planted" not in stream.getvalue()

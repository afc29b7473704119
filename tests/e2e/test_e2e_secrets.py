"""A channel secret never reaches the log of a real ``hub serve``, even at DEBUG.

A third-party channel (installed the way pip installs one: a ``*.dist-info`` with a ``hub`` entry
point on the path) puts its bot token in the URL path of its provider calls, as Telegram does, and
calls through the HTTP client the hub lends it. httpx logs each request's full URL; the hub must
mask the token in that line and in every other one, for the token the channel was created with and
for the one an admin changes it to.
"""

from __future__ import annotations

import secrets
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from e2e_support import Api, HubFactory, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

PLUGIN = textwrap.dedent(
    '''
    """A channel whose provider takes its token in the URL path (as Telegram's Bot API does)."""
    from typing import ClassVar

    from pydantic import SecretStr

    from hub import hookimpl
    from hub.channel import Capabilities, Channel, ChannelSettings, Health, HealthState


    class PathTokenSettings(ChannelSettings):
        bot_token: SecretStr
        api_base: str


    class PathTokenChannel(Channel):
        type_name: ClassVar[str] = "pathtoken"
        display_name: ClassVar[str] = "Token in the path"
        Settings: ClassVar[type[ChannelSettings]] = PathTokenSettings
        capabilities: ClassVar[Capabilities] = Capabilities(text=True)

        def authenticate(self, body, headers):
            return None

        def parse(self, raw):
            return []

        async def health_check(self):
            token = self.settings.bot_token.get_secret_value()
            resp = await self.context.http.get(f"{self.settings.api_base}/bot{token}/getMe")
            self.context.log.debug("getMe answered %s for bot%s", resp.status_code, token)
            return Health(state=HealthState.OK if resp.status_code == 200 else HealthState.AUTH_FAILED)


    @hookimpl
    def hub_register_channels(register):
        register(PathTokenChannel)
    '''
)


def install_plugin(site: Path) -> Path:
    """What ``pip install`` leaves behind: the module and a dist-info naming its entry point."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "pathtoken_plugin.py").write_text(PLUGIN, encoding="utf-8")
    info = site / "pathtoken_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: pathtoken-plugin\nVersion: 0.1\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text("[hub]\npathtoken = pathtoken_plugin\n", encoding="utf-8")
    return site


@pytest_asyncio.fixture(loop_scope="module")
async def provider() -> AsyncIterator[tuple[str, list[str]]]:
    """A provider on loopback answering ``GET /bot<token>/getMe``; records the paths it saw."""
    seen: list[str] = []

    async def get_me(request: web.Request) -> web.Response:
        seen.append(request.path)
        return web.json_response({"ok": True, "result": {"id": 1, "is_bot": True}})

    app = web.Application()
    app.router.add_get("/{bot}/getMe", get_me)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}", seen
    finally:
        await runner.cleanup()


async def test_a_token_in_the_url_path_never_reaches_the_log_at_debug(
    hub_factory: HubFactory,
    http: aiohttp.ClientSession,
    provider: tuple[str, list[str]],
    tmp_path: Path,
) -> None:
    base, seen = provider
    site = install_plugin(tmp_path / "site")
    hub = await hub_factory(env={"PYTHONPATH": str(site), "HUB_LOG_LEVEL": "DEBUG"})
    api = Api(http, hub.base_url, hub.token)
    first = f"{secrets.randbelow(10**9)}:FIRST{secrets.token_hex(12)}"
    second = f"{secrets.randbelow(10**9)}:SECOND{secrets.token_hex(12)}"

    created = await api.ok(
        "POST",
        "/api/v1/admin/channels",
        expect=201,
        json_body={"type": "pathtoken", "name": "Bot", "settings": {"bot_token": first, "api_base": base}},
    )
    cid = created["id"]
    await api.ok("POST", f"/api/v1/admin/channels/{cid}/check")
    # The admin rotates the token: the new one is masked too, from its first request on.
    await api.ok("PATCH", f"/api/v1/admin/channels/{cid}", json_body={"settings": {"bot_token": second}})
    await api.ok("POST", f"/api/v1/admin/channels/{cid}/check")
    assert (await api.request("DELETE", f"/api/v1/admin/channels/{cid}")).status == 204
    await hub.stop()

    # The provider did get both tokens in the path: the requests really carried them.
    assert any(first in p for p in seen) and any(second in p for p in seen), seen
    log = hub.log_text()
    assert "HTTP Request: GET" in log, "httpx's request line is not in the log: DEBUG logging is off?"
    assert "getMe answered 200" in log, "the plugin's own debug line is not in the log"
    for token in (first, second):
        for form in (token, token.replace(":", "%3A")):
            assert form not in log, f"a channel secret is in the hub's log:\n{hub.log_tail()}"
    assert "[redacted]" in log

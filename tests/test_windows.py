"""A closing reply window is published once, when it closes."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from hub.appkeys import CHANNELS, STORE
from hub.channel import Capabilities, ReplyWindowPolicy
from hub.config import HubConfig, HubSection
from hub.models import utcnow
from hub.testing.fake_channel import FakeChannel, FakePlugin, sign, webhook_body
from hub.users import create_token, create_user
from hub.web.app import create_app
from hub.windows import WindowWatcher
from tests.conftest import eventually


class WindowedFake(FakeChannel):
    capabilities = Capabilities(
        text=True, templates=True, reply_window=ReplyWindowPolicy(hours=24, outside="template")
    )


async def test_window_close_is_published_once(aiohttp_client: Any, tmp_path: Path) -> None:
    cls = WindowedFake.isolated()
    cfg = HubConfig(
        hub=HubSection(
            database_url=f"sqlite:///{tmp_path}/h.db",
            data_dir=str(tmp_path),
            secret_key="k" * 20,
            public_url="http://hub.test",
        )
    )
    client = await aiohttp_client(create_app(cfg, extra_plugins=[("fake", FakePlugin(cls))]))
    db = client.app[STORE].db
    admin = await create_user(db, "a@example.com", "administrator", None)
    headers = {"Authorization": f"Bearer {await create_token(db, admin['id'])}"}
    resp = await client.post(
        "/api/v1/admin/channels",
        headers=headers,
        json={"id": "w", "type": "fake", "name": "W", "settings": {"secret": "s" * 10, "verify_token": "v"}},
    )
    assert resp.status == 201
    sent_at = int(time.time()) - 24 * 3600 + 60  # the window closes in one minute
    body = webhook_body({"type": "message", "id": "old", "from": "carol", "text": "hi", "ts": sent_at})
    assert (await client.post("/webhooks/w", data=body, headers=sign("s" * 10, body))).status == 200

    async def conversations() -> list[dict[str, Any]]:
        return (await (await client.get("/api/v1/conversations", headers=headers)).json())["conversations"]

    conv = (await eventually(conversations))[0]
    detail = await (await client.get(f"/api/v1/conversations/{conv['id']}", headers=headers)).json()
    assert detail["reply_window"]["open"] is True

    watcher = WindowWatcher(client.app[STORE], client.app[CHANNELS])
    now = utcnow()
    watcher.checked_until = now
    assert await watcher.check(now + timedelta(seconds=30)) == 0  # not closed yet
    assert await watcher.check(now + timedelta(minutes=2)) == 1
    assert await watcher.check(now + timedelta(minutes=4)) == 0  # published once
    events = (await (await client.get("/api/v1/events?after=0", headers=headers)).json())["events"]
    closing = [e for e in events if e["type"] == "conversation.updated" and "reply_window" in e["data"]]
    assert len(closing) == 1
    assert closing[0]["data"]["reply_window"] == {"open": False, "closes_at": None, "outside": "template"}

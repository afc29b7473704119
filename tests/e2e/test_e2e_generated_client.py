"""A client generated from a running hub's ``/openapi.json`` (openapi-python-client, as an app
developer would make one) runs the app's main flows with no hand-written call: login, channels,
the conversation list, a conversation, its messages, a send, a replayed send, an upload, a
download and the events. Every answer also validates against the schema the document declares for
its status code.

Only the set-up that is not the app's is done by hand: the admin creates a channel and the
provider delivers a customer's message (a signed webhook).
"""

from __future__ import annotations

import asyncio
import importlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from io import BytesIO
from pathlib import Path
from types import ModuleType
from typing import Any

import jsonschema_rs
import pytest
import pytest_asyncio
from e2e_support import (
    ADMIN_EMAIL,
    ADMIN_PASSWORD,
    Api,
    HubProcess,
    ThreadedFakeGraph,
    create_wa_channel,
    inbound_conversation,
    phone,
    unique,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

GENERATOR = Path(sys.executable).with_name("openapi-python-client")
PACKAGE = "hub_app_client"
# A PNG's first bytes, then some more: what an app uploads.
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("generated")
    sys.path.insert(0, str(path))
    try:
        yield path
    finally:
        sys.path.remove(str(path))
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def document(api: Api) -> dict[str, Any]:
    doc: dict[str, Any] = await api.ok("GET", "/openapi.json")
    return doc


@pytest.fixture(scope="module")
def client_pkg(document: dict[str, Any], workdir: Path) -> ModuleType:
    if not GENERATOR.exists():
        pytest.fail(f"{GENERATOR} is missing: `make install-test` installs openapi-python-client")
    spec = workdir / "openapi.json"
    spec.write_text(json.dumps(document))
    done = subprocess.run(
        [
            str(GENERATOR),
            "generate",
            "--path",
            str(spec),
            "--output-path",
            str(workdir / PACKAGE),
            "--meta",
            "none",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=workdir,
        # Its post-generation step formats with ruff, installed beside it.
        env={**os.environ, "PATH": f"{GENERATOR.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # The generator warns for what it had to leave out; nothing may be left out.
    assert "Warning" not in done.stdout + done.stderr, done.stdout + done.stderr
    return importlib.import_module(PACKAGE)


def op(pkg: ModuleType, tag: str, name: str) -> Any:
    return importlib.import_module(f"{pkg.__name__}.api.{tag}.{name}")


def model(pkg: ModuleType, name: str) -> Any:
    return getattr(importlib.import_module(f"{pkg.__name__}.models"), name)


class Checker:
    """Validates an answer's body against the schema the document declares for its status."""

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.checked = 0

    def __call__(self, method: str, path: str, resp: Any, status: int) -> Any:
        assert resp.status_code == status, (method, path, resp.status_code, resp.content[:500])
        declared = self.doc["paths"][path][method]["responses"].get(str(status))
        assert declared is not None, f"{method.upper()} {path} answered {status}, which it does not declare"
        content = declared.get("content", {})
        ctype = resp.headers.get("content-type", "").split(";")[0]
        if "application/json" in content:
            assert ctype == "application/json", (path, ctype)
            schema = {"components": self.doc["components"], **content["application/json"]["schema"]}
            errors = [
                f"{e.instance_path}: {e.message}"[:300]
                for e in jsonschema_rs.Draft202012Validator(schema).iter_errors(json.loads(resp.content))
            ]
            assert errors == [], (method, path, errors)
        else:
            assert content, f"{method.upper()} {path} declares no content for {status}"
            assert not any(t == "application/json" for t in content), path
        self.checked += 1
        return resp.parsed


async def test_a_generated_client_runs_the_app_flows(
    api: Api,
    shared_hub: HubProcess,
    graph: ThreadedFakeGraph,
    document: dict[str, Any],
    client_pkg: ModuleType,
) -> None:
    check = Checker(document)
    pkg = client_pkg
    # Set-up that is not the app's: an admin's channel and a customer's message.
    ch = await create_wa_channel(api, graph.base_url, name="Generated client")
    wa_id = phone()
    conv_id = await inbound_conversation(api, ch, wa_id)

    anonymous = pkg.Client(base_url=shared_hub.base_url, raise_on_unexpected_status=True)
    login = op(pkg, "auth", "login")
    answer = await login.asyncio_detailed(
        client=anonymous, body=model(pkg, "LoginRequest")(email=ADMIN_EMAIL, password=ADMIN_PASSWORD)
    )
    session = check("post", "/api/v1/auth/login", answer, 200)
    assert session.token and session.user.email == ADMIN_EMAIL
    app = pkg.AuthenticatedClient(
        base_url=shared_hub.base_url, token=session.token, raise_on_unexpected_status=True
    )

    channels = check(
        "get",
        "/api/v1/channels",
        await op(pkg, "channels", "list_channels").asyncio_detailed(client=app),
        200,
    )
    mine = next(c for c in channels.channels if c.id == ch.id)
    assert mine.capabilities.text is True

    listing = await op(pkg, "conversations", "list_conversations").asyncio_detailed(
        client=app, limit=200, channel_id=ch.id
    )
    page = check("get", "/api/v1/conversations", listing, 200)
    assert [c.id for c in page.conversations] == [conv_id]
    seq = int(listing.headers["X-Hub-Seq"])

    conv = check(
        "get",
        "/api/v1/conversations/{conversation_id}",
        await op(pkg, "conversations", "get_conversation").asyncio_detailed(
            conversation_id=conv_id, client=app
        ),
        200,
    )
    assert conv.reply_window.open_ is True  # the generator renames a builtin

    history = check(
        "get",
        "/api/v1/conversations/{conversation_id}/messages",
        await op(pkg, "messages", "list_messages").asyncio_detailed(
            conversation_id=conv_id, client=app, limit=50
        ),
        200,
    )
    assert [m.direction.value for m in history.messages] == ["inbound"]
    assert history.messages[0].sender.type_ == "contact"

    uploaded = check("post", "/api/v1/uploads", await _upload(pkg, app), 201)
    assert uploaded.size == len(PNG)

    send = op(pkg, "messages", "send_message")
    key = unique("gen-")
    body = model(pkg, "SendRequest").from_dict(
        {
            "text": "from a generated client",
            "attachments": [{"kind": "image", "upload_id": uploaded.upload_id}],
        }
    )
    first = check(
        "post",
        "/api/v1/conversations/{conversation_id}/messages",
        await send.asyncio_detailed(conversation_id=conv_id, client=app, body=body, idempotency_key=key),
        202,
    )
    replay = await send.asyncio_detailed(conversation_id=conv_id, client=app, body=body, idempotency_key=key)
    again = check("post", "/api/v1/conversations/{conversation_id}/messages", replay, 200)
    assert again.id == first.id and replay.headers["Idempotent-Replayed"] == "true"
    assert first.sender.type_ == "user" and first.attachments[0].url

    index = 0
    got = await op(pkg, "messages", "download").asyncio_detailed(
        message_id=first.id, index=str(index), client=app
    )
    file = check("get", "/api/v1/attachments/{message_id}/{index}", got, 200)
    assert file.payload.read() == PNG

    events = op(pkg, "events", "list_events")

    async def sent_events() -> Any:
        answer = await events.asyncio_detailed(client=app, after=seq, limit=500)
        page = check("get", "/api/v1/events", answer, 200)
        found = [e for e in page.events if e.conversation_id == conv_id]
        kinds = {type(e).__name__ for e in found}
        return found if {"MessageCreatedEvent", "ConversationUpdatedEvent"} <= kinds else None

    found = await wait_until(sent_events, what="the send's events, typed")
    created = next(e for e in found if type(e).__name__ == "MessageCreatedEvent")
    # The union is resolved by type: the event's data is a Message, not a loose dict.
    assert created.data.id == first.id and created.data.text == "from a generated client"
    assert check.checked >= 10


async def _upload(pkg: ModuleType, app: Any) -> Any:
    upload = op(pkg, "messages", "upload")
    File = importlib.import_module(f"{pkg.__name__}.types").File
    file = File(payload=BytesIO(PNG), file_name="pixel.png", mime_type="image/png")
    try:
        form = model(pkg, "UploadBody")
    except AttributeError:
        form = None
    if form is not None:  # multipart/form-data, what a browser's FormData sends
        return await upload.asyncio_detailed(client=app, body=form(file=file))
    # A raw body: the generated async function hands httpx a file object, which only its sync
    # client can stream, so the generated sync function runs (in a thread).
    return await asyncio.to_thread(upload.sync_detailed, client=app, body=file, filename="pixel.png")

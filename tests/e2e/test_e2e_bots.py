"""Issue 19 item 6 (bots) through a real ``hub serve``: an external bot on a loopback webhook
server (aiohttp, checking every signature) answers through the app API with its bot token; a
human agent's reply takes the conversation over and the bot receives nothing of it after that; a
bot that times out hands over with a private note that says why; the built-in bot sends its menu
as WhatsApp buttons and hands over when the customer picks the option that asks for it."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from e2e_support import (
    Api,
    ThreadedFakeGraph,
    WaChannel,
    assert_error,
    create_wa_channel,
    deliver_text,
    phone,
    unique,
    wait_message_event,
    wait_until,
)

from hub.bots.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


class BotServer:
    """An external bot on loopback. ``/answer`` replies to each customer message through the
    hub's API with its bot token; ``/slow`` never answers in time. Every delivery's signature is
    checked: a bad one is refused (401) and counted."""

    def __init__(self, session: aiohttp.ClientSession, hub_url: str) -> None:
        self.session = session
        self.hub_url = hub_url
        self.secrets: dict[str, str] = {}  # bot id -> signing secret
        self.tokens: dict[str, str] = {}  # bot id -> API token
        self.received: list[dict[str, Any]] = []
        self.refused = 0
        self.replies: list[tuple[int, str]] = []
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/answer", self.answer)
        app.router.add_post("/slow", self.slow)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        if self.runner is not None:
            await self.runner.cleanup()

    async def _verified(self, request: web.Request) -> dict[str, Any] | None:
        body = await request.read()
        payload = json.loads(body)
        secret = self.secrets.get(payload.get("bot_id", ""))
        ok = secret is not None and verify(
            secret, body, request.headers.get(TIMESTAMP_HEADER), request.headers.get(SIGNATURE_HEADER)
        )
        if not ok:
            self.refused += 1
            return None
        self.received.append(payload)
        return dict(payload)

    async def answer(self, request: web.Request) -> web.StreamResponse:
        payload = await self._verified(request)
        if payload is None:
            return web.Response(status=401)
        event = payload["event"]
        data = event["data"]
        if event["type"] == "message.created" and data["direction"] == "inbound":
            task = asyncio.create_task(self._reply(payload["bot_id"], event["conversation_id"], data["text"]))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        return web.Response(status=204)

    async def _reply(self, bot_id: str, conversation_id: str, text: str) -> None:
        async with self.session.post(
            f"{self.hub_url}/api/v1/conversations/{conversation_id}/messages",
            json={"text": f"Bot here: you said {text!r}"},
            headers={"Authorization": f"Bearer {self.tokens[bot_id]}", "Idempotency-Key": unique("bot-")},
        ) as resp:
            self.replies.append((resp.status, await resp.text()))

    async def slow(self, request: web.Request) -> web.StreamResponse:
        if await self._verified(request) is None:
            return web.Response(status=401)
        await asyncio.sleep(5)
        return web.Response(status=204)

    def for_conversation(self, conversation_id: str) -> list[dict[str, Any]]:
        return [p for p in self.received if p["event"]["conversation_id"] == conversation_id]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def bot_server(http: aiohttp.ClientSession, api: Api) -> AsyncIterator[BotServer]:
    server = BotServer(http, api.base_url)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


async def make_bot(api: Api, server: BotServer, ch: WaChannel, path: str, **extra: Any) -> dict[str, Any]:
    bot: dict[str, Any] = await api.ok(
        "POST",
        "/api/v1/admin/bots",
        expect=201,
        json_body={"name": unique("Bot "), "webhook_url": server.url + path, "channel_ids": [ch.id], **extra},
    )
    assert bot["token"].startswith("hubbot_") and bot["signing_secret"]
    server.secrets[bot["id"]] = bot["signing_secret"]
    server.tokens[bot["id"]] = bot["token"]
    return bot


async def conversation_of(api: Api, after: int, external_id: str) -> str:
    ev = await wait_message_event(api, after, external_id)
    return str(ev["conversation_id"])


async def handed_over(api: Api, after: int, conversation_id: str) -> dict[str, Any]:
    async def find() -> dict[str, Any] | None:
        for ev in await api.events(after):
            if ev["type"] == "conversation.handed_over" and ev["conversation_id"] == conversation_id:
                return ev
        return None

    return await wait_until(find, within=30, what=f"conversation.handed_over of {conversation_id}")


async def test_external_bot_answers_then_a_human_reply_takes_over(
    api: Api, graph: ThreadedFakeGraph, bot_server: BotServer
) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Bots e2e")
    bot = await make_bot(api, bot_server, ch, "/answer")
    listed = await api.ok("GET", "/api/v1/admin/bots")
    mine = next(b for b in listed["bots"] if b["id"] == bot["id"])
    assert mine["channel_ids"] == [ch.id] and "token" not in mine and "signing_secret" not in mine
    # The bot's secrets never show in the log of events.
    start = await api.last_seq()
    wa = phone()
    first = await deliver_text(api, ch, wa, "hello bot")
    cid = await conversation_of(api, start, first)
    conv = await api.ok("GET", f"/api/v1/conversations/{cid}")
    assert conv["status"] == "pending", conv

    # The bot got the customer's message, signed, and answered through the API as itself.
    async def bot_reply() -> dict[str, Any] | None:
        for m in await api.messages(cid):
            if (m["sender"] or {}).get("type") == "bot":
                return m
        return None

    reply = await wait_until(bot_reply, within=20, what="the bot's reply")
    assert reply["sender"] == {"type": "bot", "id": bot["id"], "name": bot["name"]}
    assert reply["text"] == "Bot here: you said 'hello bot'"
    assert all(status == 202 for status, _ in bot_server.replies), bot_server.replies
    got = bot_server.for_conversation(cid)
    kinds = [(p["event"]["type"], p["event"]["data"].get("direction")) for p in got]
    assert ("message.created", "inbound") in kinds
    own = [
        p
        for p in got
        if p["event"]["type"] == "message.created" and p["event"]["data"]["sender"]["type"] == "bot"
    ]
    assert own == [], "a bot is never fed its own message"
    seqs = [p["event"]["seq"] for p in got]
    assert seqs == sorted(seqs), "a conversation's events reach the bot in the log's order"
    created = [
        e
        for e in await api.events(start)
        if e["type"] == "message.created" and e["data"]["id"] == reply["id"]
    ]
    assert created and created[0]["data"]["sender"]["type"] == "bot"
    assert bot["token"] not in json.dumps(await api.events(start))
    assert bot["signing_secret"] not in json.dumps(await api.events(start))

    # A human agent replies: the bot lets go at once, and the conversation opens.
    before_human = await api.last_seq()
    await api.ok(
        "POST",
        f"/api/v1/conversations/{cid}/messages",
        expect=202,
        json_body={"text": "Hi, a person here"},
        headers={"Idempotency-Key": unique("k-")},
    )
    ev = await handed_over(api, before_human, cid)
    assert ev["data"]["trigger"] == "human_reply" and ev["data"]["bot"]["id"] == bot["id"]
    assert (await api.ok("GET", f"/api/v1/conversations/{cid}"))["status"] == "open"
    handoff_seq = ev["seq"]

    # The customer writes again; another customer writes after. The bot gets the other one (so
    # the consumer has passed the first) and nothing more of the handed-over conversation.
    await deliver_text(api, ch, wa, "are you still there?")
    other = await deliver_text(api, ch, phone(), "a second customer")
    other_cid = await conversation_of(api, before_human, other)
    await wait_until(
        lambda: bot_server.for_conversation(other_cid), within=20, what="the other conversation's event"
    )
    late = [p for p in bot_server.for_conversation(cid) if p["event"]["seq"] > handoff_seq]
    assert late == [], late
    # Nor may the bot write in it any more.
    resp = await api.post(
        f"/api/v1/conversations/{cid}/messages",
        {"text": "still me"},
        headers={"Authorization": f"Bearer {bot['token']}", "Idempotency-Key": unique("k-")},
    )
    assert_error(resp, 409, "conflict")
    assert bot_server.refused == 0


async def test_bot_that_times_out_hands_over_with_a_note(
    api: Api, graph: ThreadedFakeGraph, bot_server: BotServer
) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Slow bot e2e")
    bot = await make_bot(api, bot_server, ch, "/slow", timeout_seconds=0.5, max_attempts=2)
    start = await api.last_seq()
    msg = await deliver_text(api, ch, phone(), "anyone?")
    cid = await conversation_of(api, start, msg)
    ev = await handed_over(api, start, cid)
    assert ev["data"]["trigger"] == "failure", ev
    assert "no answer within 0.5 s" in ev["data"]["reason"] and "2 attempts" in ev["data"]["reason"]
    assert (await api.ok("GET", f"/api/v1/conversations/{cid}"))["status"] == "open"
    notes = (await api.ok("GET", f"/api/v1/conversations/{cid}/notes"))["notes"]
    assert len(notes) == 1, notes
    assert notes[0]["author"]["type"] == "bot" and notes[0]["author"]["id"] == bot["id"]
    assert "no answer within 0.5 s" in notes[0]["text"] and "2 attempts" in notes[0]["text"]
    assert len(bot_server.for_conversation(cid)) == 2, "two attempts of the one event, then nothing"


async def test_builtin_bot_menu_buttons_and_handoff(api: Api, graph: ThreadedFakeGraph) -> None:
    ch = await create_wa_channel(api, graph.base_url, name="Built-in bot e2e")
    flow = {
        "greeting": "Welcome! What do you need?",
        "options": [
            {"title": "Opening hours", "reply": "We are open 9-17."},
            {"title": "Talk to a person", "reply": "Connecting you.", "handoff": True},
        ],
        "keywords": [{"words": ["price", "prices"], "reply": "See example.com/prices"}],
    }
    bot = await api.ok(
        "POST",
        "/api/v1/admin/bots",
        expect=201,
        json_body={"name": "Menu bot", "kind": "builtin", "flow": flow, "channel_ids": [ch.id]},
    )
    assert bot["signing_secret"] is None
    start = await api.last_seq()
    wa = phone()
    cid = await conversation_of(api, start, await deliver_text(api, ch, wa, "hi"))

    async def bot_messages(n: int) -> list[dict[str, Any]] | None:
        found = [m for m in await api.messages(cid) if (m["sender"] or {}).get("type") == "bot"]
        return found if len(found) >= n else None

    menu = (await wait_until(lambda: bot_messages(1), within=20, what="the menu"))[0]
    assert menu["kind"] == "interactive", menu  # WhatsApp carries buttons
    assert [(c["id"], c["title"]) for c in menu["choices"]] == [
        ("1", "Opening hours"),
        ("2", "Talk to a person"),
    ]
    await deliver_text(api, ch, wa, "what are your prices?")
    replies = await wait_until(lambda: bot_messages(2), within=20, what="the keyword's answer")
    assert replies[1]["text"] == "See example.com/prices"
    await deliver_text(api, ch, wa, "2")
    ev = await handed_over(api, start, cid)
    assert ev["data"]["trigger"] == "bot" and "Talk to a person" in ev["data"]["reason"]
    replies = await wait_until(lambda: bot_messages(3), within=20, what="the option's reply")
    assert replies[2]["text"] == "Connecting you."
    notes = (await api.ok("GET", f"/api/v1/conversations/{cid}/notes"))["notes"]
    assert notes and "Talk to a person" in notes[0]["text"]


async def test_managing_bots_needs_the_permission(api: Api, graph: ThreadedFakeGraph) -> None:
    email = unique("bot-agent-") + "@example.com"
    made = await api.ok(
        "POST", "/api/v1/admin/users", expect=201, json_body={"email": email, "role": "agent"}
    )
    password = "pw-" + unique()
    await api.ok(
        "POST",
        "/api/v1/auth/set-password",
        json_body={"token": made["invitation"]["token"], "password": password},
        auth=False,
    )
    login = await api.ok(
        "POST", "/api/v1/auth/login", json_body={"email": email, "password": password}, auth=False
    )
    agent = Api(api.session, api.base_url, login["token"])
    assert_error(await agent.get("/api/v1/admin/bots"), 403, "forbidden")
    body = {"name": "nope", "webhook_url": "http://127.0.0.1:9/x"}
    assert_error(await agent.post("/api/v1/admin/bots", body), 403, "forbidden")
    # Bad input: a clear 422, nothing stored.
    ch = await create_wa_channel(api, graph.base_url, name="Bots validation")
    assert_error(await api.post("/api/v1/admin/bots", {"name": "x", "kind": "webhook"}), 422)
    assert_error(await api.post("/api/v1/admin/bots", {**body, "channel_ids": ["ch_missing"]}), 404)
    first = await api.ok("POST", "/api/v1/admin/bots", expect=201, json_body={**body, "channel_ids": [ch.id]})
    assert_error(await api.post("/api/v1/admin/bots", {**body, "channel_ids": [ch.id]}), 409)
    names = [b["name"] for b in (await api.ok("GET", "/api/v1/admin/bots"))["bots"]]
    assert names.count("nope") == 1
    # A rotated token replaces the old one; a deleted bot's token stops working.
    rotated = await api.ok(
        "PATCH", f"/api/v1/admin/bots/{first['id']}", json_body={"rotate_credentials": True}
    )
    assert rotated["token"] and rotated["token"] != first["token"]
    old = Api(api.session, api.base_url, first["token"])
    assert_error(await old.get("/api/v1/conversations"), 401)
    fresh = Api(api.session, api.base_url, rotated["token"])
    assert (await fresh.get("/api/v1/conversations")).status == 200
    assert (await api.request("DELETE", f"/api/v1/admin/bots/{first['id']}")).status == 204
    assert_error(await fresh.get("/api/v1/conversations"), 401)
    assert_error(await api.get(f"/api/v1/admin/bots/{first['id']}"), 404)


async def test_a_bot_token_sees_only_its_own_channels(
    api: Api, graph: ThreadedFakeGraph, bot_server: BotServer
) -> None:
    ours = await create_wa_channel(api, graph.base_url, name="Bot scope: attached")
    theirs = await create_wa_channel(api, graph.base_url, name="Bot scope: not attached")
    bot = await make_bot(api, bot_server, ours, "/answer")
    start = await api.last_seq()
    outside = await conversation_of(api, start, await deliver_text(api, theirs, phone(), "not for the bot"))
    as_bot = {"Authorization": f"Bearer {bot['token']}"}
    assert_error(await api.get(f"/api/v1/conversations/{outside}", headers=as_bot), 404)
    assert_error(await api.get(f"/api/v1/conversations/{outside}/messages", headers=as_bot), 404)
    listed = await api.get(f"/api/v1/conversations?channel_id={theirs.id}", headers=as_bot)
    ids = [c["id"] for c in listed.json.get("conversations", [])] if listed.status == 200 else []
    assert outside not in ids, "a bot listed a conversation of a channel it is not attached to"
    resp = await api.post(
        f"/api/v1/conversations/{outside}/messages",
        {"text": "not mine"},
        headers={**as_bot, "Idempotency-Key": unique("k-")},
    )
    assert resp.status in (403, 404), resp.status

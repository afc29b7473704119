"""Agent bots below the HTTP edge: the webhook signature, the built-in bot's flows (interactive and
numbered), its guard, and the delivery worker's retries and failover, against an in-process hub
with the fake channel (no interactive messages) and a loopback webhook server."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from hub.appkeys import BOT_CONSUMER, BOT_DELIVERY
from hub.bots.flows import Flow, respond
from hub.bots.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signed_headers, verify
from hub.channel import Capabilities
from tests.conftest import Hub, eventually, fake_message

# ---- signing --------------------------------------------------------------------------------------


def test_signature_verifies_only_the_exact_body_with_the_secret_and_a_fresh_timestamp() -> None:
    body = json.dumps({"event": {"type": "message.created", "data": {"text": "héllo"}}}).encode()
    headers = signed_headers("s3cret", 7, body, now=1_000_000)
    ts, sig = headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER]
    assert sig == sign("s3cret", 1_000_000, body) and sig.startswith("v1=")
    assert verify("s3cret", body, ts, sig, now=1_000_010)
    assert not verify("other", body, ts, sig, now=1_000_010)
    assert not verify("s3cret", body + b" ", ts, sig, now=1_000_010)
    reserialised = json.dumps(json.loads(body), indent=1).encode()
    assert not verify("s3cret", reserialised, ts, sig, now=1_000_010)
    assert not verify("s3cret", body, ts, sig, now=1_000_000 + 301), "a replay minutes later is refused"
    assert not verify("s3cret", body, str(1_000_001), sig, now=1_000_010), "the timestamp is signed too"
    assert not verify("s3cret", body, None, sig) and not verify("s3cret", body, ts, None)


# ---- flows ----------------------------------------------------------------------------------------

WHATSAPP = Capabilities(interactive=True, max_interactive_buttons=3, max_interactive_rows=10)
PLAIN = Capabilities()


def flow(options: int = 2, **extra: Any) -> Flow:
    opts = [{"title": f"Option {i}", "reply": f"You chose {i}"} for i in range(1, options + 1)]
    opts[-1]["handoff"] = True
    return Flow.model_validate({"greeting": "Hi! Pick one:", "options": opts, **extra})


def inbound(text: str | None = None, picked: str | None = None) -> dict[str, Any]:
    return {
        "direction": "inbound",
        "sender": {"type": "contact", "id": "ct_1"},
        "text": text,
        "interactive": {"id": picked, "title": "x"} if picked else None,
    }


def test_first_message_gets_buttons_where_the_channel_carries_them() -> None:
    step = respond(flow(2), {}, inbound("hello"), WHATSAPP)
    [menu] = step.drafts
    assert menu.interactive is not None and menu.interactive.button is None
    assert [(c.id, c.title) for c in menu.interactive.choices] == [("1", "Option 1"), ("2", "Option 2")]
    assert step.state["menu_sent"] and step.handoff is None


def test_more_options_than_buttons_make_a_list() -> None:
    [menu] = respond(flow(5), {}, inbound("hello"), WHATSAPP).drafts
    assert menu.interactive is not None and menu.interactive.button == "Options"
    assert len(menu.interactive.choices) == 5


def test_numbered_text_elsewhere_and_the_number_picks() -> None:
    first = respond(flow(3), {}, inbound("hello"), PLAIN)
    [menu] = first.drafts
    assert menu.interactive is None
    assert (
        menu.text
        == "Hi! Pick one:\n\n1. Option 1\n2. Option 2\n3. Option 3\n\nReply with the number of your choice."
    )
    second = respond(flow(3), first.state, inbound(" 2 "), PLAIN)
    assert [d.text for d in second.drafts] == ["You chose 2"] and second.handoff is None
    by_title = respond(flow(3), first.state, inbound("option 1"), PLAIN)
    assert [d.text for d in by_title.drafts] == ["You chose 1"]
    last = respond(flow(3), first.state, inbound("3"), PLAIN)
    assert last.handoff == "the customer chose 'Option 3'" and [d.text for d in last.drafts] == [
        "You chose 3"
    ]


def test_a_button_pick_and_a_keyword() -> None:
    f = flow(
        2,
        keywords=[
            {"words": ["refund"], "reply": "Refunds take 5 days."},
            {"words": ["agent"], "handoff": True},
        ],
    )
    state = respond(f, {}, inbound("hi"), WHATSAPP).state
    assert [d.text for d in respond(f, state, inbound(picked="1"), WHATSAPP).drafts] == ["You chose 1"]
    kw = respond(f, state, inbound("I want a REFUND please"), WHATSAPP)
    assert [d.text for d in kw.drafts] == ["Refunds take 5 days."] and kw.handoff is None
    assert respond(f, state, inbound("refunds?"), WHATSAPP).drafts[0].text != "Refunds take 5 days.", (
        "whole words"
    )
    assert respond(f, state, inbound("an agent now"), WHATSAPP).handoff == "the customer asked for a person"


def test_answers_that_match_nothing_hand_over_after_max_fallbacks() -> None:
    f = flow(2, max_fallbacks=1)
    state = respond(f, {}, inbound("hi"), PLAIN).state
    miss = respond(f, state, inbound("banana"), PLAIN)
    assert miss.drafts[0].text == f.fallback and len(miss.drafts) == 2 and miss.handoff is None
    again = respond(f, miss.state, inbound("kiwi"), PLAIN)
    assert again.drafts == [] and again.handoff == "the customer's answers matched no option 2 times in a row"


# ---- the delivery worker against a loopback webhook ------------------------------------------------


class Webhook:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.bodies: list[dict[str, Any]] = []
        self.valid: list[bool] = []
        self.secret = ""

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.valid.append(
            verify(
                self.secret,
                body,
                request.headers.get(TIMESTAMP_HEADER),
                request.headers.get(SIGNATURE_HEADER),
            )
        )
        self.bodies.append(json.loads(body))
        status = self.statuses.pop(0) if self.statuses else 204
        return web.Response(status=status)


async def bot_with_webhook(
    hub: Hub, aiohttp_server: Callable[..., Awaitable[Any]], statuses: list[int], **extra: Any
) -> tuple[Webhook, dict[str, Any]]:
    hook = Webhook(statuses)
    app = web.Application()
    app.router.add_post("/bot", hook.handle)
    server = await aiohttp_server(app)
    resp = await hub.client.post(
        "/api/v1/admin/bots",
        json={
            "name": "Test bot",
            "webhook_url": str(server.make_url("/bot")),
            "channel_ids": ["fk"],
            **extra,
        },
        headers=hub.admin,
    )
    assert resp.status == 201, await resp.text()
    bot: dict[str, Any] = await resp.json()
    hook.secret = bot["signing_secret"]
    return hook, bot


async def drained(hub: Hub, external_id: str) -> None:
    """Wait until the message is stored, then run the bot consumer and deliveries past it."""

    async def stored() -> bool:
        return any(
            e["type"] == "message.created" and e["data"]["external_id"] == external_id
            for e in await hub.events(headers=hub.admin)
        )

    await eventually(stored)
    while await hub.client.app[BOT_CONSUMER].step():
        pass
    while await hub.client.app[BOT_DELIVERY].step():
        pass


async def handed_over(hub: Hub) -> list[dict[str, Any]]:
    return [e for e in await hub.events(headers=hub.admin) if e["type"] == "conversation.handed_over"]


async def test_a_5xx_is_retried_and_then_delivered_once_without_handoff(
    lite_hub: Hub, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    hook, _ = await bot_with_webhook(lite_hub, aiohttp_server, [503], max_attempts=3)
    resp = await lite_hub.webhook(fake_message("m1", "alice", "hello"))
    assert resp.status == 200
    await eventually(lambda: _seen(hook, 3), within=15)
    first, retry, then = hook.bodies[:3]
    assert first["event"]["type"] == "conversation.created" and first["attempt"] == 1
    assert retry["delivery_id"] == first["delivery_id"] and retry["attempt"] == 2, (
        "a retry is the same delivery"
    )
    # The conversation's next event waited for the first: in order per conversation.
    assert then["event"]["type"] == "message.created" and then["event"]["seq"] > first["event"]["seq"]
    assert all(hook.valid)
    assert await handed_over(lite_hub) == []
    [conv] = await lite_hub.conversations()
    assert conv["status"] == "pending"


async def _seen(hook: Webhook, n: int) -> bool:
    return len(hook.bodies) >= n


async def test_a_4xx_is_not_retried_and_hands_over_with_a_note(
    lite_hub: Hub, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    hook, bot = await bot_with_webhook(lite_hub, aiohttp_server, [410, 410, 410, 410], max_attempts=5)
    await lite_hub.webhook(fake_message("m1", "bob", "hello"))
    [ev] = await eventually(lambda: handed_over(lite_hub))
    assert ev["data"]["trigger"] == "failure" and "HTTP 410" in ev["data"]["reason"]
    assert "1 attempt)" in ev["data"]["reason"]
    cid = ev["conversation_id"]
    resp = await lite_hub.client.get(f"/api/v1/conversations/{cid}/notes", headers=lite_hub.admin)
    [note] = (await resp.json())["notes"]
    assert "HTTP 410" in note["text"] and note["author"]["id"] == bot["id"]
    # Nothing more reaches it, even though the customer writes again.
    sent = len(hook.bodies)
    await lite_hub.webhook(fake_message("m2", "bob", "hello?"))
    await drained(lite_hub, "m2")
    assert len(hook.bodies) == sent


async def test_builtin_bot_answers_in_numbered_text_on_a_channel_without_buttons(lite_hub: Hub) -> None:
    f = {"greeting": "Hello!", "options": [{"title": "Hours", "reply": "9 to 5"}]}
    resp = await lite_hub.client.post(
        "/api/v1/admin/bots",
        json={"name": "Menu", "kind": "builtin", "flow": f, "channel_ids": ["fk"]},
        headers=lite_hub.admin,
    )
    assert resp.status == 201, await resp.text()
    await lite_hub.webhook(fake_message("m1", "carol", "hi"))

    async def bot_texts(n: int) -> list[str] | None:
        convs = await lite_hub.conversations()
        if not convs:
            return None
        msgs = await lite_hub.messages(convs[0]["id"])
        found = [m["text"] for m in msgs if (m["sender"] or {}).get("type") == "bot"]
        return found if len(found) >= n else None

    [menu] = await eventually(lambda: bot_texts(1))
    assert menu == "Hello!\n\n1. Hours\n\nReply with the number of your choice."
    await lite_hub.webhook(fake_message("m2", "carol", "1"))
    texts = await eventually(lambda: bot_texts(2))
    assert texts[1] == "9 to 5"


async def test_a_macro_action_takes_the_conversation_from_the_bot(
    lite_hub: Hub, aiohttp_server: Callable[..., Awaitable[Any]]
) -> None:
    hook, bot = await bot_with_webhook(lite_hub, aiohttp_server, [])
    await lite_hub.webhook(fake_message("m1", "dave", "hello"))
    await eventually(lambda: _seen(hook, 2))
    [conv] = await lite_hub.conversations()
    assert conv["status"] == "pending"
    resp = await lite_hub.client.post(
        "/api/v1/macros",
        json={"name": "Take over", "actions": [{"type": "hand_over", "reason": "VIP customer"}]},
        headers=lite_hub.admin,
    )
    assert resp.status == 201, await resp.text()
    macro = await resp.json()
    run = await lite_hub.client.post(
        f"/api/v1/macros/{macro['id']}/run", json={"conversation_ids": [conv["id"]]}, headers=lite_hub.admin
    )
    result = await run.json()
    assert run.status == 200 and result["results"][0]["status"] == "done", result
    [ev] = await handed_over(lite_hub)
    assert ev["data"]["trigger"] == "agent" and ev["data"]["reason"] == "VIP customer"
    assert ev["data"]["bot"]["id"] == bot["id"] and ev["data"]["status"] == "open"
    # Running it again: no bot holds the conversation any more, so the action fails and says so.
    again = await lite_hub.client.post(
        f"/api/v1/macros/{macro['id']}/run", json={"conversation_ids": [conv["id"]]}, headers=lite_hub.admin
    )
    failed = (await again.json())["results"][0]
    assert failed["status"] == "failed" and "no bot holds" in failed["actions"][0]["detail"]
    seen = len(hook.bodies)
    await lite_hub.webhook(fake_message("m2", "dave", "still there?"))
    await drained(lite_hub, "m2")
    assert len(hook.bodies) == seen


async def test_builtin_bot_answers_customers_only_and_hands_over_at_its_rate_limit(lite_hub: Hub) -> None:
    """The built-in bot shares the automations' loop guard: it never answers a machine (here an
    auto-reply), and a flow that would pass the per-conversation budget of automatic messages
    (6 a minute) hands over to a person instead of sending."""
    f = {"greeting": "Hello!", "options": [{"title": "Hours", "reply": "9 to 5"}], "max_fallbacks": 10}
    resp = await lite_hub.client.post(
        "/api/v1/admin/bots",
        json={"name": "Menu", "kind": "builtin", "flow": f, "channel_ids": ["fk"]},
        headers=lite_hub.admin,
    )
    assert resp.status == 201, await resp.text()

    async def bot_messages() -> list[dict[str, Any]]:
        convs = await lite_hub.conversations()
        msgs = await lite_hub.messages(convs[0]["id"]) if convs else []
        return [m for m in msgs if (m["sender"] or {}).get("type") == "bot"]

    await lite_hub.webhook(fake_message("m1", "dora", "hi"))
    await drained(lite_hub, "m1")
    assert len(await bot_messages()) == 1  # the menu
    # An auto-reply gets no answer at all, not even a fallback.
    await lite_hub.webhook(fake_message("m2", "dora", "Automatic reply: I am out of the office"))
    await drained(lite_hub, "m2")
    assert len(await bot_messages()) == 1
    # Each unmatched answer costs two messages (the fallback and the menu): 1 + 2 + 2 = 5 sent,
    # and the next two would make 7.
    for n, text in ((3, "banana"), (4, "kiwi"), (5, "mango")):
        await lite_hub.webhook(fake_message(f"m{n}", "dora", text))
        await drained(lite_hub, f"m{n}")
    assert len(await bot_messages()) == 5
    [ev] = await handed_over(lite_hub)
    assert "limit of automatic messages" in ev["data"]["reason"], ev

"""Bounds on a real ``hub serve``: an overloaded hub answers 503 with ``Retry-After`` and loses
nothing it answered 200 to; stored deliveries go once their retention has passed."""

from __future__ import annotations

import aiohttp
import pytest
from e2e_support import (
    Api,
    HubFactory,
    ThreadedFakeGraph,
    create_wa_channel,
    phone,
    wa_text_webhook,
    wait_message_event,
    wait_until,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]


async def test_past_the_pending_bound_webhooks_get_503_and_every_200_is_processed(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    # A web-only node stores but never processes: the backlog reaches the bound.
    hub = await hub_factory(workers=False, extra_hub_settings={"max_pending_deliveries": 3})
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Bounded")
    webhooks = [wa_text_webhook(ch.phone_number_id, phone(), f"n{i}") for i in range(5)]
    answers = [await api.webhook(ch.id, payload, ch.app_secret) for payload, _ in webhooks]
    assert [a.status for a in answers] == [200, 200, 200, 503, 503], answers
    assert answers[3].json["error"]["code"] == "overloaded"
    assert int(answers[3].headers["Retry-After"]) > 0

    await hub.restart(workers=True)
    for _, wamid in webhooks[:3]:
        await wait_message_event(api, 0, wamid)

    # The provider retries the two refused deliveries; once the backlog drained they are taken.
    for payload, wamid in webhooks[3:]:

        async def accepted(body: dict[str, object] = payload) -> bool:
            return (await api.webhook(ch.id, body, ch.app_secret)).status == 200

        await wait_until(accepted, within=20, interval=0.5, what="a retried webhook accepted")
        await wait_message_event(api, 0, wamid)
    created = [e for e in await api.events(0) if e["type"] == "message.created"]
    assert sorted(e["data"]["external_id"] for e in created) == sorted(w for _, w in webhooks)


async def test_stored_deliveries_go_once_their_retention_passed(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory(
        # Fifteen seconds (long enough to see it stored), with a pass every half second.
        extra_hub_settings={"raw_delivery_retention_days": 15 / 86_400, "retention_interval": 0.5}
    )
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Retention")
    payload, wamid = wa_text_webhook(ch.phone_number_id, phone(), "kept for a moment")
    assert (await api.webhook(ch.id, payload, ch.app_secret)).status == 200
    await wait_message_event(api, 0, wamid)
    assert "replaying 1 raw event(s)" in await hub.cli("replay", "--all")

    async def gone() -> bool:
        return "replaying 0 raw event(s)" in await hub.cli("replay", "--all")

    await wait_until(gone, within=60, interval=1.0, what="the stored delivery deleted")
    # The message it made stays.
    assert [m["external_id"] for m in await api.messages(
        (await wait_message_event(api, 0, wamid))["conversation_id"]
    )] == [wamid]  # fmt: skip

"""The outbox keeps one send per message whatever happens around a send in flight, through a real
``hub serve``: a provider slower than the lease, a channel deleted mid-send, and a provider that
answers with an id the hub already holds."""

from __future__ import annotations

import asyncio

import aiohttp
import pytest
from e2e_support import (
    Api,
    HubFactory,
    ThreadedFakeGraph,
    create_wa_channel,
    inbound_conversation,
    phone,
    send_text,
    wait_status,
    wait_until,
    wamid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

LEASE = 1.5  # seconds: far shorter than the provider's answer below


async def queued_id(api: Api, conv_id: str, text: str) -> str:
    return str((await send_text(api, conv_id, text))["id"])


def answer(external_id: str) -> dict[str, object]:
    return {"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": external_id}]}


async def test_a_provider_slower_than_the_lease_gets_exactly_one_send(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory(extra_hub_settings={"outbox_lease": LEASE})
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Slow provider")
    conv_id = await inbound_conversation(api, ch, phone())
    external_id = wamid()
    # Three leases long: an unrenewed lease runs out twice while this call is in flight.
    graph.call(
        graph.graph.script, f"{ch.phone_number_id}/messages", 200, answer(external_id), delay=3 * LEASE
    )

    mid = await queued_id(api, conv_id, "slower than the lease")
    sent = await wait_status(api, mid, "sent", within=30)
    await asyncio.sleep(2 * LEASE)  # a second claim would have called by now
    assert len(graph.sends(ch.phone_number_id)) == 1
    assert sent["external_id"] == external_id


async def test_a_channel_deleted_mid_send_leaves_the_message_failed(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory(extra_hub_settings={"outbox_lease": LEASE})
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Deleted mid-send")
    conv_id = await inbound_conversation(api, ch, phone())
    graph.call(graph.graph.script, f"{ch.phone_number_id}/messages", 200, answer(wamid()), delay=2.0)

    mid = await queued_id(api, conv_id, "in flight while the channel goes")
    await wait_until(lambda: graph.sends(ch.phone_number_id), within=15, what="the send call")
    resp = await api.request("DELETE", f"/api/v1/admin/channels/{ch.id}")
    assert resp.status == 204, resp
    failed = await wait_status(api, mid, "failed")
    await asyncio.sleep(3.0)  # the provider has answered and the worker has tried to record it
    after = await api.message(mid)
    assert after["status"] == "failed", after
    assert after["error"]["class"] == "cancelled", after
    assert after["external_id"] is None
    assert failed["error"] == after["error"]
    assert "lost its claim" in hub.log_text()


async def test_a_provider_id_the_hub_already_holds_gives_one_send(
    hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory(extra_hub_settings={"outbox_lease": LEASE})
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Repeated provider id")
    conv_id = await inbound_conversation(api, ch, phone())
    repeated = wamid()
    graph.call(graph.graph.script, f"{ch.phone_number_id}/messages", 200, answer(repeated), times=2)

    first = await queued_id(api, conv_id, "first")
    assert (await wait_status(api, first, "sent"))["external_id"] == repeated
    second = await queued_id(api, conv_id, "second")
    recorded = await wait_status(api, second, "sent")
    await asyncio.sleep(3 * LEASE)  # a crashed job would be claimed again and resent by now
    calls = graph.sends(ch.phone_number_id)
    assert [c.json["text"]["body"] for c in calls] == ["first", "second"]
    assert recorded["external_id"] is None
    assert (await api.message(first))["external_id"] == repeated
    assert "already holds" in hub.log_text()

"""kill -9 while sends are in flight at the provider: how many reach it twice.

The provider has accepted every message, but the hub dies before it hears the answers. Delivery is
at least once: without a reference the provider echoes back, the next process sends each of them
again once the dead process's lease runs out. WhatsApp's statuses carry the hub's message id back
(``biz_opaque_callback_data``): the next process waits ``outbox_grace`` for a status naming each
message and records the send from it instead. The test plays Meta: after the restart it posts a
``sent`` status for every request the provider received, echoing the reference when asked to.
"""

from __future__ import annotations

import asyncio
from collections import Counter

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
    unique,
    wa_status,
    wa_status_webhook,
    wait_until,
    wamid,
)

pytestmark = [pytest.mark.e2e, pytest.mark.asyncio(loop_scope="module")]

IN_FLIGHT = 20
LEASE = 2.0
GRACE = 10.0


@pytest.mark.parametrize("echoed", [False, True], ids=["no-reference", "reference-echoed"])
async def test_sends_in_flight_at_a_crash(
    echoed: bool, hub_factory: HubFactory, http: aiohttp.ClientSession, graph: ThreadedFakeGraph
) -> None:
    hub = await hub_factory(extra_hub_settings={"outbox_lease": LEASE, "outbox_grace": GRACE})
    api = Api(http, hub.base_url, hub.token)
    ch = await create_wa_channel(api, graph.base_url, name="Crash mid-send")
    # One send per conversation: a conversation's sends go out one at a time, so only different
    # conversations' sends are in flight together.
    conv_ids = [await inbound_conversation(api, ch, phone()) for _ in range(IN_FLIGHT)]
    path = f"{ch.phone_number_id}/messages"
    # The provider accepts each message and takes 30 s to answer: the hub dies before it hears.
    accepted = {"messaging_product": "whatsapp", "contacts": [], "messages": [{"id": wamid()}]}
    graph.call(graph.graph.script, path, 200, accepted, delay=30.0, times=IN_FLIGHT)

    texts = [f"in flight at the crash #{i:02d} {unique()}" for i in range(IN_FLIGHT)]
    ids = [
        str((await send_text(api, conv_id, text))["id"])
        for conv_id, text in zip(conv_ids, texts, strict=True)
    ]
    await wait_until(
        lambda: len(graph.sends(ch.phone_number_id)) == IN_FLIGHT, within=20, what="every send in flight"
    )
    await hub.kill()
    first_calls = graph.sends(ch.phone_number_id)
    assert all(c.json.get("biz_opaque_callback_data") in ids for c in first_calls), "the send names it"

    await hub.restart()
    await asyncio.sleep(1.0)  # Meta's retried webhooks come back a little after the hub
    statuses = []
    for call in first_calls:
        st = wa_status(wamid(), "sent", call.json["to"])
        if echoed:
            st["biz_opaque_callback_data"] = call.json["biz_opaque_callback_data"]
        statuses.append(st)
    resp = await api.webhook(ch.id, wa_status_webhook(ch.phone_number_id, *statuses), ch.app_secret)
    assert resp.status == 200, resp

    async def all_sent() -> list[dict[str, object]] | None:
        out = [await api.message(mid) for mid in ids]
        return out if all(m["status"] == "sent" for m in out) else None

    await wait_until(all_sent, within=LEASE + GRACE + 30, interval=0.25, what="every message sent")
    await asyncio.sleep(2.0)  # no late duplicate
    calls = Counter(c.json["text"]["body"] for c in graph.sends(ch.phone_number_id))
    assert set(calls) == set(texts), "no reply lost"
    duplicates = sum(n - 1 for n in calls.values())
    print(f"\ncrash mid-send, reference echoed={echoed}: {duplicates}/{IN_FLIGHT} sent twice")
    if echoed:
        assert duplicates == 0, calls
    else:
        # At least once: nothing names these sends, so each goes again after the lease.
        assert duplicates == IN_FLIGHT, calls

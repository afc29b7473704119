"""The PostgreSQL server drops every connection (a restart, a failover): the hub carries on.

The pool does not ping a connection before each checkout (that round trip halved the send API's
rate), so the first statement on a dropped connection fails. What a user must see: a webhook
answered 200 is never lost; one the hub could not store is answered with an error (the provider
delivers it again); and within moments webhooks are stored, applied and published as before,
without restarting the hub.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from tests.conftest import Hub, drop_every_connection, eventually
from tests.test_pipeline import msg


async def test_the_hub_recovers_when_postgresql_drops_every_connection(
    make_hub: Callable[..., Awaitable[Hub]], pg_session_url: str | None
) -> None:
    if pg_session_url is None:
        pytest.skip("PostgreSQL not reachable (set HUB_TEST_POSTGRES_URL): this is about PostgreSQL")
    from tests.conftest import _reset_postgres

    await _reset_postgres(pg_session_url)
    hub = await make_hub(pg_session_url)
    await hub.create_channel()
    assert (await hub.webhook(msg("before", who="alice"))).status == 200
    await eventually(lambda: _created(hub, {"before"}))

    assert await drop_every_connection(pg_session_url) > 0

    answered: dict[str, int] = {}
    for i in range(20):
        mid = f"after-{i}"
        resp = await hub.webhook(msg(mid, who=f"p{i % 4}"))
        answered[mid] = resp.status
        if resp.status != 200:  # refused in the one error shape, for the provider to retry
            assert set((await resp.json())["error"]) >= {"code", "message"}
    assert set(answered.values()) <= {200, 500, 503}, answered
    # Nothing lingers broken: the last ones went through, without a restart of the hub.
    assert [answered[f"after-{i}"] for i in range(15, 20)] == [200] * 5, answered
    stored = {mid for mid, status in answered.items() if status == 200}
    # Every delivery answered 200 is applied and published; a refused one is the provider's to
    # send again, and is then stored like any other.
    for mid, status in answered.items():
        if status != 200:
            assert (await hub.webhook(msg(mid, who="again"))).status == 200
            stored.add(mid)
    await eventually(lambda: _created(hub, stored), within=15)


async def _created(hub: Hub, wanted: set[str]) -> bool:
    try:
        events = await hub.events(0, headers=hub.admin)
    except AssertionError:
        return False  # this read met a dropped connection itself: ask again
    seen = {e["data"].get("external_id") for e in events if e["type"] == "message.created"}
    return wanted <= seen

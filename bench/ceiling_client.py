"""The outbound ceiling: the hub's own provider client (``hub.http.provider_client``: httpx on the
aiohttp transport, no cookie jar) driving a (fake) Graph API directly, so the hub is compared with
the same client minus everything the hub does around each send.

Run as ``python -m bench.ceiling_client URL TOKEN COUNT CONCURRENCY``. It POSTs COUNT WhatsApp text
sends (a distinct recipient each), CONCURRENCY at a time, with the hub's own client limits, and
prints one JSON line: ``{"ok", "failed", "elapsed"}``.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

import httpx

from hub.http import provider_client


async def run(url: str, token: str, count: int, concurrency: int) -> dict[str, float | int]:
    headers = {"Authorization": f"Bearer {token}", "User-Agent": "bench-ceiling"}
    counter = iter(range(count))
    ok = failed = 0

    async def worker(client: httpx.AsyncClient) -> None:
        nonlocal ok, failed
        for i in counter:
            body = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": f"1666{i:07d}",
                "type": "text",
                "text": {"body": f"bench reply {i}", "preview_url": False},
            }
            try:
                resp = await client.post(url, json=body, headers=headers)
                resp.json()
                if resp.is_success:
                    ok += 1
                else:
                    failed += 1
            except httpx.HTTPError:
                failed += 1

    async with provider_client("bench-ceiling") as client:
        start = time.perf_counter()
        await asyncio.wait_for(asyncio.gather(*(worker(client) for _ in range(concurrency))), 300)
        elapsed = time.perf_counter() - start
    return {"ok": ok, "failed": failed, "elapsed": elapsed}


def main() -> None:
    url, token, count, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    print(json.dumps(asyncio.run(run(url, token, count, concurrency))), flush=True)


if __name__ == "__main__":
    main()

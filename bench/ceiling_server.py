"""The ingest ceiling: a bare aiohttp server whose handler only reads the body and answers 200.

Run as ``python -m bench.ceiling_server PORT``; it prints ``ready`` once it listens.
"""

from __future__ import annotations

import sys

from aiohttp import web

from hub.cli import new_event_loop


async def _handle(request: web.Request) -> web.StreamResponse:
    await request.read()
    return web.json_response({"status": "ok"})


def main() -> None:
    port = int(sys.argv[1])
    app = web.Application()
    app.router.add_post("/webhooks/{channel_id}", _handle)
    app.router.add_get("/healthz", lambda _r: _handle_get())
    # On the loop `hub serve` runs on (uvloop where installed): the ceiling is bare aiohttp at its
    # best, not a handicapped one.
    web.run_app(
        app,
        host="127.0.0.1",
        port=port,
        access_log=None,
        print=lambda _m: print("ready", flush=True),
        loop=new_event_loop("auto"),
    )


async def _handle_get() -> web.StreamResponse:
    return web.json_response({"status": "ok"})


if __name__ == "__main__":
    main()

"""A counting reverse proxy in front of the Prefect server (``python -m bench.proxy``).

Both workers under test talk to Prefect through it, so their API calls are counted the same
way, on the wire, whatever client library they use. It runs as its own process so that its
CPU is not charged to the harness or to a subject. Websockets (the upstream worker's
``/events/in``) are relayed too; each client message counts as one call.

    GET  /__bench__/stats   -> {"requests": {"POST /flow_runs/{id}/set_state": 12, ...}}
    POST /__bench__/reset   -> zero the counters
"""

from __future__ import annotations

import argparse
import asyncio
import re
from collections import Counter

import aiohttp
from aiohttp import web

_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
    "host",
    "content-length",
}


def route_of(method: str, path: str) -> str:
    """``POST /api/flow_runs/<uuid>/set_state`` -> ``POST /flow_runs/{id}/set_state``."""
    path = path.removeprefix("/api")
    return f"{method} {_UUID.sub('{id}', path)}"


class CountingProxy:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.counts: Counter[str] = Counter()
        self.session: aiohttp.ClientSession | None = None

    async def start(self, app: web.Application) -> None:
        connector = aiohttp.TCPConnector(limit=0, keepalive_timeout=4)
        self.session = aiohttp.ClientSession(
            connector=connector, auto_decompress=False, timeout=aiohttp.ClientTimeout(total=600)
        )

    async def stop(self, app: web.Application) -> None:
        if self.session is not None:
            await self.session.close()

    async def stats(self, request: web.Request) -> web.Response:
        return web.json_response({"requests": dict(self.counts)})

    async def reset(self, request: web.Request) -> web.Response:
        self.counts.clear()
        return web.json_response({})

    async def handle(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._websocket(request)
        self.counts[route_of(request.method, request.path)] += 1
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        body = await request.read()
        url = f"{self.upstream}{request.rel_url}"
        async with self.session.request(
            request.method, url, headers=headers, data=body or None, allow_redirects=False
        ) as upstream:
            payload = await upstream.read()
            out_headers = {
                k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP
            }
            return web.Response(status=upstream.status, headers=out_headers, body=payload)

    async def _websocket(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        route = route_of("WS", request.path)
        self.counts[f"{route} (connect)"] += 1
        protocols = [
            p.strip()
            for header in request.headers.getall("Sec-WebSocket-Protocol", [])
            for p in header.split(",")
            if p.strip()
        ]
        client_ws = web.WebSocketResponse(autoping=True, protocols=protocols)
        await client_ws.prepare(request)
        url = f"{self.upstream.replace('http', 'ws', 1)}{request.rel_url}"
        headers = {
            k: v
            for k, v in request.headers.items()
            if k.lower() not in _HOP_BY_HOP and not k.lower().startswith("sec-websocket")
        }
        async with self.session.ws_connect(
            url, headers=headers, autoping=True, protocols=protocols
        ) as server_ws:

            async def to_server() -> None:
                async for msg in client_ws:
                    self.counts[f"{route} (message)"] += 1
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await server_ws.send_str(msg.data)
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        await server_ws.send_bytes(msg.data)
                await server_ws.close()

            async def to_client() -> None:
                async for msg in server_ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        await client_ws.send_str(msg.data)
                    elif msg.type == aiohttp.WSMsgType.BINARY:
                        await client_ws.send_bytes(msg.data)
                await client_ws.close()

            tasks = [asyncio.ensure_future(to_server()), asyncio.ensure_future(to_client())]
            _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
        return client_ws


def build_app(upstream: str) -> web.Application:
    proxy = CountingProxy(upstream)
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app.on_startup.append(proxy.start)
    app.on_cleanup.append(proxy.stop)
    app.router.add_get("/__bench__/stats", proxy.stats)
    app.router.add_post("/__bench__/reset", proxy.reset)
    app.router.add_route("*", "/{tail:.*}", proxy.handle)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--upstream", required=True, help="e.g. http://127.0.0.1:4200")
    args = parser.parse_args()
    web.run_app(
        build_app(args.upstream), host="127.0.0.1", port=args.port, access_log=None, print=None
    )


if __name__ == "__main__":
    main()

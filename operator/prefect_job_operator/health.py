"""``/healthz`` (liveness: the operator's own health), ``/readyz`` and ``/metrics``, over aiohttp.

Liveness never depends on an external API: a pool whose Prefect API is down says so in its
conditions, an Event and the ``prefect_job_operator_prefect_api_up`` metric, and the process
(with every other pool) keeps running. See ARCHITECTURE.md, "Health".
"""

from __future__ import annotations

import time

from aiohttp import web

from prefect_job_operator import clock
from prefect_job_operator.metrics import CONTENT_TYPE
from prefect_job_operator.registry import OperatorContext


def build_app(ctx: OperatorContext) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ok, detail = ctx.alive(time.monotonic())
        body = {"message": "OK" if ok else "The operator is stuck", **detail}
        return web.json_response(body, status=200 if ok else 503)

    async def readyz(_: web.Request) -> web.Response:
        alive, detail = ctx.alive(time.monotonic())
        ok = alive and ctx.kopf_started
        body = {
            "message": "OK" if ok else ("Starting" if alive else "The operator is stuck"),
            **detail,
            # BaseWorker's 30-poll-interval rule, per pool: information, not readiness
            # (a pool's Prefect outage must not take /metrics out of the Service).
            "pools": ctx.polls(clock.now()),
        }
        return web.json_response(body, status=200 if ok else 503)

    async def metrics(_: web.Request) -> web.Response:
        return web.Response(
            body=ctx.metrics.render().encode(),
            headers={"Content-Type": CONTENT_TYPE, "X-Content-Type-Options": "nosniff"},
        )

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/health", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    return app


async def start_server(ctx: OperatorContext, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

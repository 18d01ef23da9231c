"""``/healthz`` (BaseWorker's liveness rule) and ``/metrics`` (Prometheus), over aiohttp."""

from __future__ import annotations

from datetime import UTC, datetime

from aiohttp import web

from prefect_job_operator.metrics import CONTENT_TYPE
from prefect_job_operator.registry import OperatorContext


def build_app(ctx: OperatorContext) -> web.Application:
    async def healthz(_: web.Request) -> web.Response:
        ok, detail = ctx.healthy(datetime.now(UTC))
        body = {
            "message": "OK" if ok else "Worker may be unresponsive at this time",
            "pools": detail,
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
    app.router.add_get("/metrics", metrics)
    return app


async def start_server(ctx: OperatorContext, host: str, port: int) -> web.AppRunner:
    runner = web.AppRunner(build_app(ctx), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    return runner

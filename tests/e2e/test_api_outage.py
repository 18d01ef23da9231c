"""The Prefect API goes away for 60 s: the operator stays up, says so, and loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready
from tests.infra import prefect_setup as ps
from tests.infra.cluster import LocalCluster, free_port
from tests.infra.prefect_server import start_prefect_server

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect, pytest.mark.slow]

OUTAGE_SECONDS = 60


async def test_api_outage_of_60s(
    workpool_crd: LocalCluster, k8s_namespace: str, tmp_path: Path
) -> None:
    home = tmp_path / "prefect-home"
    port = free_port()
    server = start_prefect_server(home=home, port=port)
    srv = server.__enter__()
    world = E2E(workpool_crd, k8s_namespace, srv.api_url, tmp_path, ps.unique("pool"))
    try:
        world.apply_workpool({"worker": fast_worker()})
        world.operator.start()
        await wait_ready(world)
        dep = await world.deployment()
        before = await world.run(dep)
        await world.wait_pid(before)
        queued = await world.run(dep, scheduled_in_seconds=20)  # due during the outage

        server.__exit__(None, None, None)
        outage_started = time.monotonic()

        async def unreachable() -> dict[str, str] | None:
            cond = world.condition("APIReachable")
            return cond if cond.get("status") == "False" else None

        cond = await eventually("APIReachable=False", unreachable, 45, interval=1.0)
        assert cond["reason"] in ("Unreachable", "APIUnreachable"), cond
        assert cond["message"]
        assert world.operator.proc is not None and world.operator.proc.poll() is None
        await asyncio.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - outage_started)))
        assert world.operator.proc.poll() is None, "the operator died during the outage"

        server = start_prefect_server(home=home, port=port)
        server.__enter__()
        await world.http.aclose()
        world.http = ps.setup_client(world.api_url)
        await wait_ready(world, timeout=90)
        assert await world.wait_pid(queued, timeout=60)
        after = await world.run(dep)
        assert await world.wait_pid(after, timeout=30)
        assert len(world.jobs_by_run()[before]) == 1
    finally:
        await world.close()
        server.__exit__(None, None, None)

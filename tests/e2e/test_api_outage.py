"""The Prefect API goes away for 60 s: the operator stays up, says so, and loses nothing."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from tests.e2e.harness import E2E, eventually, fast_worker, httpx, wait_ready
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


POLL = 1  # seconds between polls of both pools
OUTAGE_INTERVALS = 40


async def test_one_pools_outage_never_fails_liveness_and_the_other_pool_dispatches(
    e2e: E2E, tmp_path: Path
) -> None:
    """Issue #10 item 4: stop pool B's Prefect server for 40 poll intervals. /healthz stays
    200 throughout (it used to fail after 30), pool A keeps dispatching, pool B's conditions,
    an Event and a metric say why, and pool B recovers when its server returns."""
    home, port = tmp_path / "prefect-b", free_port()
    server_b = start_prefect_server(home=home, port=port)
    srv_b = server_b.__enter__()
    http_b = ps.setup_client(srv_b.api_url)
    pool_b = ps.unique("pool-b")
    try:
        e2e.apply_workpool({"worker": fast_worker(pollIntervalSeconds=POLL)}, name="pool")
        e2e.apply_workpool(
            {
                "poolName": pool_b,
                "api": {"url": srv_b.api_url},
                "worker": fast_worker(pollIntervalSeconds=POLL),
            },
            name="pool-b",
        )
        # pool B's server is not the operator's own URL: the admin must allow it (docs/security.md)
        e2e.operator.extra_env["PJO_ALLOWED_API_URLS"] = srv_b.api_url
        e2e.operator.start()
        await wait_ready(e2e)

        async def b_ready() -> bool:
            return e2e.condition("Ready", name="pool-b").get("status") == "True"

        await eventually("pool-b Ready", b_ready, 60, 1.0)
        dep_a = await e2e.deployment()
        flow_b = await ps.create_flow(http_b, ps.unique("flow"))
        dep_b = await ps.create_deployment(
            http_b,
            flow_id=flow_b["id"],
            name=ps.unique("dep"),
            work_pool_name=pool_b,
            job_variables={"namespace": e2e.ns},
        )

        server_b.__exit__(None, None, None)
        stopped = time.monotonic()
        statuses: list[int] = []
        failures: list[str] = []

        async def watch_liveness() -> None:
            async with httpx.AsyncClient(timeout=5) as probe:
                while True:
                    try:
                        r = await probe.get(f"{e2e.operator.url}/healthz")
                        statuses.append(r.status_code)
                        if r.status_code != 200:
                            failures.append(f"{time.monotonic() - stopped:.1f}s: {r.text}")
                    except httpx.HTTPError as exc:
                        failures.append(f"{time.monotonic() - stopped:.1f}s: {exc!r}")
                    await asyncio.sleep(0.5)

        watcher = asyncio.create_task(watch_liveness())
        try:
            # pool A dispatches runs created during the outage
            during = [await e2e.run(dep_a) for _ in range(3)]
            for run_id in during:
                assert await e2e.wait_pid(run_id, timeout=30)

            async def b_unreachable() -> dict[str, str] | None:
                cond = e2e.condition("APIReachable", name="pool-b")
                return cond if cond.get("status") == "False" else None

            cond = await eventually("pool-b APIReachable=False", b_unreachable, 60, 1.0)
            assert cond["reason"] == "Unreachable", cond
            assert cond["message"], cond
            assert e2e.condition("Ready", name="pool-b")["status"] == "False"
            assert e2e.condition("Ready")["status"] == "True"
            events = e2e.kubectl(
                "get",
                "events",
                "-n",
                e2e.ns,
                "--field-selector",
                "involvedObject.name=pool-b,reason=APIUnreachable",
                "-o",
                "name",
            ).stdout
            assert events.strip(), "no APIUnreachable Event on pool-b"
            metrics = e2e.operator.metrics()
            assert (
                f'prefect_job_operator_prefect_api_up{{namespace="{e2e.ns}",workpool="pool-b"}} 0.0'
                in metrics
            ), [m for m in metrics.splitlines() if "api_up" in m]

            await asyncio.sleep(max(0.0, OUTAGE_INTERVALS * POLL - (time.monotonic() - stopped)))
            after = await e2e.run(dep_a)  # still dispatching after 40 intervals
            assert await e2e.wait_pid(after, timeout=30)
        finally:
            watcher.cancel()
        outage = time.monotonic() - stopped
        assert outage >= OUTAGE_INTERVALS * POLL
        assert not failures, failures
        assert len(statuses) >= outage, f"/healthz answered only {len(statuses)} times"
        assert e2e.operator.proc is not None and e2e.operator.proc.poll() is None
        assert e2e.operator.starts == 1

        server_b = start_prefect_server(home=home, port=port)
        server_b.__enter__()
        await http_b.aclose()
        http_b = ps.setup_client(srv_b.api_url)
        await eventually("pool-b Ready again", b_ready, 90, 1.0)
        run_b = str((await ps.create_flow_run(http_b, dep_b["id"]))["id"])

        async def b_pid() -> str | None:
            return (await ps.read_flow_run(http_b, run_b)).get("infrastructure_pid")

        assert await eventually("pool-b dispatches again", b_pid, 60)
    finally:
        await http_b.aclose()
        server_b.__exit__(None, None, None)

"""Real execution, cancellation, and the restart/outage guarantees, end to end."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from tests.conftest import Measure
from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready
from tests.infra import prefect_setup as ps

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]


async def test_cancelling_pending_and_running_runs_deletes_their_jobs(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment({"annotations": {"pjo.test/outcome": "hang"}})
    pending = await e2e.run(dep, job_variables={"cpu_request": "100000"})  # never scheduled
    running = await e2e.run(dep)
    await e2e.wait_pid(pending)
    await e2e.wait_pid(running)
    # the flow process would do this; kwok pods run nothing
    await ps.set_state(e2e.http, running, "RUNNING")

    async def pod_running() -> bool:
        pods = e2e.get_json("pods", "-l", f"prefect.io/flow-run-id={running}")["items"]
        return any(p["status"].get("phase") == "Running" for p in pods)

    await eventually("the running run's pod to run", pod_running, 20)
    for run_id in (pending, running):
        await ps.set_state(e2e.http, run_id, "CANCELLING")
    for run_id in (pending, running):
        run = await e2e.wait_state(run_id, "CANCELLED", timeout=30)
        assert "prefect-job-operator" in (run["state"]["message"] or "")

    async def jobs_gone() -> bool:
        by_run = e2e.jobs_by_run()
        live = [
            j
            for r in (pending, running)
            for j in by_run.get(r, [])
            if not j["metadata"].get("deletionTimestamp")
        ]
        return not live

    await eventually("both Jobs deleted", jobs_gone, 30)


async def test_sigkill_during_a_200_run_burst_leaves_exactly_one_job_per_run(
    e2e: E2E, measure: Measure
) -> None:
    e2e.apply_workpool(
        {"worker": fast_worker(submitConcurrency=8), "recovery": {"pendingGraceSeconds": 5}}
    )
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment({"annotations": {"pjo.test/outcome": "hang"}})
    runs: list[str] = []
    for _ in range(200):
        runs.append(await e2e.run(dep))
    started = time.monotonic()
    rng = random.Random(1234)
    for _ in range(4):
        await asyncio.sleep(rng.uniform(0.5, 3.0))
        e2e.operator.kill()
        await asyncio.sleep(rng.uniform(0.0, 1.0))
        e2e.operator.start()

    async def all_dispatched() -> bool:
        by_run = e2e.jobs_by_run()
        return all(r in by_run for r in runs)

    await eventually("a Job for every run", all_dispatched, 180, interval=1.0)

    async def pids_recorded() -> bool:
        missing = 0
        for r in runs:
            run = await e2e.flow_run(r)
            if not run.get("infrastructure_pid"):
                missing += 1
        return missing == 0

    await eventually("every pid recorded", pids_recorded, 60, interval=2.0)
    elapsed = time.monotonic() - started
    by_run = e2e.jobs_by_run()
    duplicates = {
        r: [j["metadata"]["name"] for j in by_run[r]] for r in runs if len(by_run[r]) != 1
    }
    assert not duplicates, duplicates
    for r in runs:
        run = await e2e.flow_run(r)
        job = by_run[r][0]
        assert run["infrastructure_pid"] == f"{e2e.ns}:{job['metadata']['name']}"
        assert run["state"]["type"] == "PENDING"
    measure("e2e: 200-run burst with 4 SIGKILLs, all Jobs + pids (s)", f"{elapsed:.1f}")
    measure("e2e: operator RSS after the 200-run burst (MiB)", e2e.operator.rss() // 2**20)

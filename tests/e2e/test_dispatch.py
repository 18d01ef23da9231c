"""WorkPool → Prefect pool → flow runs dispatched as Jobs, through the real operator."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Measure
from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]

UPSTREAM_LABELS = {
    "prefect.io/flow-run-id",
    "prefect.io/flow-run-name",
    "prefect.io/work-pool-name",
    "prefect.io/work-pool-id",
    "prefect.io/worker-name",
    "prefect.io/deployment-id",
    "prefect.io/deployment-name",
    "prefect.io/flow-id",
    "prefect.io/flow-name",
    "app.kubernetes.io/managed-by",
}


async def test_workpool_ready_and_three_runs_become_jobs(e2e: E2E, measure: Measure) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)

    pool = await e2e.pool_json()
    assert pool["status"] == "READY"
    assert pool["base_job_template"]["job_configuration"]["job_manifest"]["kind"] == "Job"
    status = e2e.workpool_status()
    assert status["poolId"] == pool["id"]
    assert status["lastPollTime"]
    printed = e2e.kubectl("get", "wp", "-n", e2e.ns).stdout
    assert e2e.pool in printed and "True" in printed

    dep = await e2e.deployment()
    runs = [await e2e.run(dep) for _ in range(3)]
    started = time.monotonic()
    pids = [await e2e.wait_pid(r) for r in runs]
    elapsed = time.monotonic() - started
    by_run = e2e.jobs_by_run()
    for run_id, pid in zip(runs, pids, strict=True):
        assert len(by_run[run_id]) == 1, by_run[run_id]
        job = by_run[run_id][0]
        assert pid == f"{e2e.ns}:{job['metadata']['name']}"
        labels = job["metadata"]["labels"]
        assert set(labels) >= UPSTREAM_LABELS, set(labels) ^ UPSTREAM_LABELS
        assert labels["prefect.io/work-pool-id"] == pool["id"]
        run = await e2e.flow_run(run_id)
        assert run["state"]["type"] == "PENDING"

        async def labelled(run_id: str = run_id) -> str | None:
            labels = (await e2e.flow_run(run_id)).get("labels") or {}
            return labels.get("prefect.worker.name")

        # the worker labels trail the Job (written beside the pid, off the dispatch path)
        assert await eventually("worker labels", labelled, 10) == status["workerName"]
    assert elapsed < 20, f"three runs took {elapsed:.1f}s to dispatch"
    measure("e2e: 3 runs dispatched (s)", f"{elapsed:.1f}")

    async def counted() -> dict[str, int] | None:
        counts = e2e.workpool_status().get("counts") or {}
        return counts if counts.get("submitted", 0) >= 3 else None

    await eventually("status counts", counted, 15)
    metrics = e2e.operator.metrics()
    assert "prefect_job_operator_runs_dispatched_total" in metrics
    code, health = e2e.operator.health()
    assert code == 200, health
    measure("e2e: operator RSS with one pool (MiB)", e2e.operator.rss() // 2**20)


async def test_crash_with_exit_code_is_reported_fast(e2e: E2E, measure: Measure) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment(
        {
            "annotations": {
                "pjo.test/outcome": "fail",
                "pjo.test/exit-code": "3",
                "pjo.test/after": "1s",
            }
        }
    )
    good_dep = await e2e.deployment()
    bad = await e2e.run(dep)
    good = await e2e.run(good_dep)
    await e2e.wait_pid(bad)
    job_created = time.monotonic()
    run = await e2e.wait_state(bad, "CRASHED", timeout=20)
    latency = time.monotonic() - job_created
    assert "3" in run["state"]["message"], run["state"]["message"]
    assert latency < 10, latency
    measure("e2e: pod fails 1 s after start -> Crashed, from Job creation (s)", f"{latency:.1f}")
    assert (await e2e.flow_run(good))["infrastructure_pid"]


async def test_invalid_job_crashes_only_that_run(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment()
    bad = await e2e.run(dep, job_variables={"cpu_request": "a lot"})
    good = await e2e.run(dep)
    run = await e2e.wait_state(bad, "CRASHED")
    assert "Failed to submit flow run to infrastructure" in run["state"]["message"]
    assert "cpu" in run["state"]["message"] or "quantit" in run["state"]["message"]
    assert await e2e.wait_pid(good)
    assert e2e.condition("Ready")["status"] == "True"


async def test_pending_pod_times_out_with_diagnosis(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment({"pod_watch_timeout_seconds": 10})
    unschedulable = await e2e.run(dep, job_variables={"cpu_request": "100000"})
    evicted = await e2e.run(
        dep, job_variables={"annotations": {"pjo.test/outcome": "evict", "pjo.test/after": "1s"}}
    )

    async def infrastructure_pending() -> bool:
        state = (await e2e.flow_run(unschedulable))["state"]
        return bool(state["name"] == "InfrastructurePending")

    await eventually("InfrastructurePending while the pod waits", infrastructure_pending, 15)
    run = await e2e.wait_state(unschedulable, "CRASHED", timeout=30)
    assert "nschedulable" in run["state"]["message"], run["state"]["message"]
    assert "pod_watch_timeout" in run["state"]["message"]
    run = await e2e.wait_state(evicted, "CRASHED", timeout=30)
    assert "vict" in run["state"]["message"], run["state"]["message"]

    async def job_deleted() -> bool:
        return unschedulable not in e2e.jobs_by_run()

    await eventually("the timed-out Job to be deleted", job_deleted, 20)

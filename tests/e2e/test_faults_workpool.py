"""Bad inputs and blind spots that used to lose runs (issue #11 items 3, 4, 5, 8, 9), end to
end: the operator as a subprocess, the real control plane, a real Prefect server."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.conftest import Measure
from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]


def _job_complete(job: dict) -> bool:  # type: ignore[type-arg]
    conds = (job.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Complete" and c["status"] == "True" for c in conds)


async def test_job_variables_that_set_the_routing_labels_do_not_blind_the_operator(
    e2e: E2E,
) -> None:
    """Job variables overriding the watch selector and work-pool-id labels made the Job
    invisible: at pod_watch_timeout its healthy pod was killed ("no pod was created")."""
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment(
        {
            "labels": {
                "prefect-job-operator.dev/operator": "someone-else",
                "prefect.io/work-pool-id": "00000000-0000-0000-0000-000000000000",
            },
            "annotations": {"pjo.test/outcome": "succeed", "pjo.test/after": "12s"},
            "pod_watch_timeout_seconds": 4,
        }
    )
    run = await e2e.run(dep)
    await e2e.wait_pid(run)

    async def completed() -> bool:
        jobs = e2e.jobs_by_run().get(run, [])
        return len(jobs) == 1 and _job_complete(jobs[0])

    await eventually("the Job to complete (not be killed)", completed, 60, interval=1.0)
    [job] = e2e.jobs_by_run()[run]
    assert job["metadata"]["labels"]["prefect-job-operator.dev/operator"] == e2e.operator.instance
    state = (await e2e.flow_run(run))["state"]
    assert state["type"] != "CRASHED", state


async def test_missing_service_account_is_named_in_the_crash_message(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment(
        {"service_account_name": "no-such-sa", "pod_watch_timeout_seconds": 5}
    )
    run = await e2e.run(dep)
    crashed = await e2e.wait_state(run, "CRASHED", timeout=60)
    message = crashed["state"]["message"]
    assert "FailedCreate" in message and "no-such-sa" in message, message


async def test_a_64_character_workpool_name_dispatches(e2e: E2E) -> None:
    """metadata.name[:63] ended in '-', which Kubernetes refused for every Job."""
    name = "p" * 62 + "-x"
    assert len(name) == 64 and name[:63].endswith("-")
    e2e.apply_workpool({"worker": fast_worker()}, name=name)
    e2e.operator.start()

    async def ready() -> bool:
        cond = e2e.condition("Ready", name=name)
        return cond.get("status") == "True"

    await eventually("Ready", ready, 60)
    dep = await e2e.deployment()
    runs = [await e2e.run(dep) for _ in range(2)]
    for r in runs:
        await e2e.wait_pid(r)
    by_run = e2e.jobs_by_run()
    for r in runs:
        [job] = by_run[r]
        value = job["metadata"]["labels"]["prefect-job-operator.dev/workpool"]
        assert len(value) <= 63 and value[-1].isalnum()
        assert (await e2e.flow_run(r))["state"]["type"] != "CRASHED"


async def test_two_workpools_on_one_prefect_pool(e2e: E2E) -> None:
    """The second WorkPool reports the first and does not dispatch; nothing crashes and the
    pool description stays the first one's."""
    e2e.apply_workpool({"worker": fast_worker(), "description": "first"}, name="pool")
    e2e.operator.start()
    await wait_ready(e2e)
    e2e.apply_workpool({"worker": fast_worker(), "description": "second"}, name="pool2")

    async def claimed() -> dict | None:  # type: ignore[type-arg]
        cond = e2e.condition("PoolSynced", name="pool2")
        return cond if cond.get("reason") == "PoolClaimedByOtherWorkPool" else None

    cond = await eventually("pool2 to report the collision", claimed, 60, interval=1.0)
    assert f"{e2e.ns}/pool" in cond["message"]
    assert e2e.condition("Ready", name="pool2")["status"] == "False"
    events = [
        e
        for e in e2e.get_json("events")["items"]
        if e.get("reason") == "PoolClaimedByOtherWorkPool"
        and e["involvedObject"]["name"] == "pool2"
    ]
    assert events and f"{e2e.ns}/pool" in events[0]["message"]
    dep = await e2e.deployment()
    runs = [await e2e.run(dep) for _ in range(10)]
    for r in runs:
        await e2e.wait_pid(r)
    await asyncio.sleep(6)  # a heartbeat of each: the description must not flip
    by_run = e2e.jobs_by_run()
    assert all(len(by_run[r]) == 1 for r in runs)
    for r in runs:
        assert (await e2e.flow_run(r))["state"]["type"] != "CRASHED"
    assert (await e2e.pool_json())["description"] == "first"
    assert e2e.condition("Ready", name="pool")["status"] == "True"


async def test_workpool_deleted_and_recreated_with_runs_in_flight(
    e2e: E2E, measure: Measure
) -> None:
    """Deletion is fast; the re-created WorkPool adopts the Jobs in flight and reports a
    crash that happened meanwhile with the pod's exit code."""
    e2e.apply_workpool({"worker": fast_worker(), "recovery": {"pendingGraceSeconds": 5}})
    e2e.operator.start()
    await wait_ready(e2e)
    hang = await e2e.deployment({"annotations": {"pjo.test/outcome": "hang"}})
    fail = await e2e.deployment(
        {
            "annotations": {
                "pjo.test/outcome": "fail",
                "pjo.test/after": "8s",
                "pjo.test/exit-code": "4",
            }
        }
    )
    live = [await e2e.run(hang) for _ in range(5)]
    doomed = await e2e.run(fail)
    for r in [*live, doomed]:
        await e2e.wait_pid(r)
    started = time.monotonic()
    e2e.kubectl("delete", "workpool", "pool", "-n", e2e.ns, "--timeout=60s")
    deleted = time.monotonic() - started
    await asyncio.sleep(10)  # the doomed pod fails while no WorkPool exists
    e2e.apply_workpool({"worker": fast_worker(), "recovery": {"pendingGraceSeconds": 5}})
    await wait_ready(e2e, timeout=60)
    crashed = await e2e.wait_state(doomed, "CRASHED", timeout=60)
    assert "exited with code 4" in crashed["state"]["message"], crashed["state"]["message"]
    by_run = e2e.jobs_by_run()
    for r in live:
        assert len(by_run[r]) == 1
        assert (await e2e.flow_run(r))["state"]["type"] == "PENDING"
    assert (await e2e.flow_run(doomed))["infrastructure_pid"]
    measure("e2e: WorkPool deletion with 6 Jobs in flight (s)", f"{deleted:.1f}")
    assert deleted < 10, deleted

"""Two replicas of the operator: one Lease per WorkPool, so no run is dispatched twice."""

from __future__ import annotations

import time

import pytest

from tests.conftest import Measure
from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready
from tests.infra.operator_process import OperatorProcess

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]


async def test_two_replicas_dispatch_each_run_once_and_fail_over(
    e2e: E2E, measure: Measure
) -> None:
    e2e.apply_workpool({"worker": fast_worker(submitConcurrency=8)})
    first = e2e.operator.start()
    second = OperatorProcess(
        kube_env=e2e.cluster.env,
        api_url=e2e.api_url,
        log_path=e2e.operator.log_path.with_name("operator-b.log"),
        namespaces=[e2e.ns],
        instance=first.instance,
        identity=f"{first.identity}-b",
    ).start()
    try:
        await wait_ready(e2e)
        leader = e2e.workpool_status()["leaseHolder"]
        assert leader in (first.identity, second.identity)
        dep = await e2e.deployment({"annotations": {"pjo.test/outcome": "hang"}})
        runs = [await e2e.run(dep) for _ in range(30)]
        for r in runs:
            await e2e.wait_pid(r)
        by_run = e2e.jobs_by_run()
        assert all(len(by_run[r]) == 1 for r in runs), {r: len(by_run[r]) for r in runs}

        # kill the leader without a chance to release its Lease: the standby takes over
        standby = second if leader == first.identity else first
        (first if standby is second else second).kill()
        killed_at = time.monotonic()

        async def took_over() -> bool:
            return e2e.workpool_status().get("leaseHolder") == standby.identity

        await eventually("the standby to take the Lease", took_over, 40)
        more = [await e2e.run(dep) for _ in range(5)]
        for r in more:
            await e2e.wait_pid(r, timeout=40)
        failover = time.monotonic() - killed_at
        by_run = e2e.jobs_by_run()
        assert all(len(by_run[r]) == 1 for r in runs + more)
        measure(
            "e2e: leader SIGKILLed -> 5 new runs dispatched by the standby (s)", f"{failover:.1f}"
        )
    finally:
        second.stop()

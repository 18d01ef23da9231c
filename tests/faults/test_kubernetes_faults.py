"""Kubernetes API faults in the middle of a burst: no run lost, no duplicate Job.

Each test breaks the operator's path to the API server while runs are being claimed (a
partition through a TCP proxy, the apiserver or etcd killed), restores it, and asserts that
every run ends with exactly one Job and its pid, none Crashed, and that the operator
recovered by itself.
"""

from __future__ import annotations

import asyncio
import re
import time

import pytest

from tests.conftest import Measure
from tests.e2e.harness import eventually, fast_worker, wait_ready
from tests.faults.conftest import FaultWorld

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect, pytest.mark.slow]

BURST = 15
POOL_SPEC = {
    "worker": fast_worker(submitConcurrency=4),
    "recovery": {"pendingGraceSeconds": 5},
}


async def burst(world: FaultWorld, dep: str, n: int = BURST) -> list[str]:
    return [await world.run(dep) for _ in range(n)]


async def every_run_has_one_job(world: FaultWorld, runs: list[str], timeout: float) -> None:
    missing: list[str] = []

    async def probe() -> bool:
        by_run = world.jobs_by_run()
        missing.clear()
        for r in runs:
            run = await world.flow_run(r)
            if len(by_run.get(r, [])) != 1 or not run.get("infrastructure_pid"):
                missing.append(f"{r}: {run['state']['type']} {len(by_run.get(r, []))} Jobs")
        return not missing

    try:
        await eventually("one Job and a pid for every run", probe, timeout, interval=1.0)
    except AssertionError:
        raise AssertionError(f"runs without exactly one Job and a pid: {missing}") from None


async def start_pool(world: FaultWorld) -> str:
    world.apply_workpool(POOL_SPEC)
    world.operator.start()
    await wait_ready(world, timeout=90)
    return await world.deployment()


async def test_partition_from_the_api_server_mid_burst(world: FaultWorld, measure: Measure) -> None:
    """Operator ↔ API server cut for 25 s while a burst is being claimed (issue #11 item 1:
    5/5 runs claimed during such a partition used to end Crashed)."""
    dep = await start_pool(world)
    runs = await burst(world, dep)
    await asyncio.sleep(1.0)
    world.proxy.cut()
    cut_at = time.monotonic()
    late = await burst(world, dep, 5)  # due while the operator cannot reach Kubernetes
    await asyncio.sleep(max(0.0, 25 - (time.monotonic() - cut_at)))
    assert world.operator.proc is not None and world.operator.proc.poll() is None
    world.proxy.restore()
    restored = time.monotonic()
    await every_run_has_one_job(world, runs + late, 120)
    measure(
        "faults: 25 s API partition mid-burst -> all Jobs after restore (s)",
        f"{time.monotonic() - restored:.1f}",
    )
    await world.verdict(runs + late, "operator<->apiserver partition 25 s")
    await wait_ready(world, timeout=60)


async def test_apiserver_killed_and_restarted_mid_burst(
    world: FaultWorld, measure: Measure
) -> None:
    """The real kube-apiserver SIGKILLed for 25 s mid-burst (issue #11: 15/60 crashed)."""
    dep = await start_pool(world)
    runs = await burst(world, dep)
    await asyncio.sleep(1.0)
    world.cluster.kill_component("kube-apiserver")
    killed_at = time.monotonic()
    late = await burst(world, dep, 5)
    await asyncio.sleep(max(0.0, 25 - (time.monotonic() - killed_at)))
    await asyncio.to_thread(world.cluster.start_component, "kube-apiserver")
    restarted = time.monotonic()
    await every_run_has_one_job(world, runs + late, 150)
    measure(
        "faults: apiserver killed 25 s mid-burst -> all Jobs after restart (s)",
        f"{time.monotonic() - restarted:.1f}",
    )
    assert world.operator.proc is not None and world.operator.proc.poll() is None
    await world.verdict(runs + late, "kube-apiserver SIGKILL 25 s")
    await wait_ready(world, timeout=60)


async def test_etcd_killed_mid_burst(world: FaultWorld) -> None:
    """etcd SIGKILLed for 15 s: the API server answers, but with 5xx and timeouts."""
    dep = await start_pool(world)
    runs = await burst(world, dep)
    await asyncio.sleep(1.0)
    world.cluster.kill_component("etcd")
    killed_at = time.monotonic()
    late = await burst(world, dep, 5)
    await asyncio.sleep(max(0.0, 15 - (time.monotonic() - killed_at)))
    await asyncio.to_thread(world.cluster.start_component, "etcd")
    await every_run_has_one_job(world, runs + late, 150)
    assert world.operator.proc is not None and world.operator.proc.poll() is None
    await world.verdict(runs + late, "etcd SIGKILL 15 s")
    await wait_ready(world, timeout=90)


def _leader_gauge(metrics: str) -> float:
    m = re.search(r"^prefect_job_operator_pool_leader\{[^}]*\} (\S+)$", metrics, re.M)
    return float(m.group(1)) if m else 0.0


async def test_partitioned_leader_steps_down_and_the_standby_takes_over(
    world: FaultWorld, measure: Measure
) -> None:
    """Two replicas; the leader loses the API server (Prefect stays reachable) for 30 s:
    it stops claiming within its renew deadline, the standby dispatches the rest
    (issue #11 item 2: the old leader went on claiming and crashed 8/18)."""
    world.apply_workpool(POOL_SPEC)
    a = world.operator
    b, _ = world.replica("b")
    a.start()
    await wait_ready(world, timeout=90)
    b.start()
    assert world.workpool_status()["leaseHolder"] == a.identity
    dep = await world.deployment()
    runs = await burst(world, dep, 10)
    await asyncio.sleep(1.0)
    world.proxy.cut()  # a's proxy: a is partitioned, b is not
    cut_at = time.monotonic()

    async def a_stepped_down() -> bool:
        return _leader_gauge(await asyncio.to_thread(a.metrics)) == 0.0

    await eventually("the partitioned leader to step down", a_stepped_down, 15, interval=0.2)
    step_down = time.monotonic() - cut_at
    renew_deadline = 6 * 2 / 3  # PJO_LEASE_DURATION_SECONDS=6 in tests
    assert step_down <= renew_deadline + 2.0, step_down

    async def b_leads() -> bool:
        return world.workpool_status().get("leaseHolder") == b.identity

    await eventually("the standby to take the Lease", b_leads, 30, interval=0.5)
    took_over = time.monotonic() - cut_at
    assert took_over >= 6 - 0.5  # never before the old lease could have expired
    late = await burst(world, dep, 8)
    await asyncio.sleep(max(0.0, 30 - (time.monotonic() - cut_at)))
    world.proxy.restore()
    await every_run_has_one_job(world, runs + late, 120)
    assert _leader_gauge(await asyncio.to_thread(a.metrics)) == 0.0  # b still leads
    measure("faults: partitioned leader stepped down after (s)", f"{step_down:.1f}")
    measure("faults: standby took over after (s)", f"{took_over:.1f}")
    await world.verdict(runs + late, "leader partitioned 30 s, standby healthy")

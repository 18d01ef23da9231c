"""What `kubectl describe wp` and Prometheus see of a running operator: aggregated Events,
prometheus-client metrics with namespace/workpool labels, and a deleted pool's series gone."""

from __future__ import annotations

import asyncio
import json

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]

CRASHES = 5


def pool_series(text: str, workpool: str) -> list[tuple[str, dict[str, str]]]:
    return [
        (s.name, dict(s.labels))
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("workpool") == workpool
    ]


async def test_five_crashes_are_one_event_with_count_five(e2e: E2E) -> None:
    """Issue #10: repeated Events of one reason on one WorkPool are aggregated."""
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
    runs = [await e2e.run(dep) for _ in range(CRASHES)]
    for run_id in runs:
        await e2e.wait_state(run_id, "CRASHED", timeout=60)

    def crash_events() -> list[dict[str, object]]:
        out = e2e.kubectl(
            "get",
            "events",
            "-n",
            e2e.ns,
            "--field-selector",
            "involvedObject.kind=WorkPool,involvedObject.name=pool,reason=FlowRunCrashed",
            "-o",
            "json",
        ).stdout
        items: list[dict[str, object]] = json.loads(out)["items"]
        return items

    async def counted() -> list[dict[str, object]] | None:
        items = crash_events()
        return items if items and items[0].get("count") == CRASHES else None

    [event] = await eventually(f"one FlowRunCrashed Event with count {CRASHES}", counted, 20)
    assert event["type"] == "Warning"
    assert event["firstTimestamp"] and event["lastTimestamp"]
    described = e2e.kubectl("describe", "wp", "pool", "-n", e2e.ns).stdout
    lines = [line for line in described.splitlines() if "FlowRunCrashed" in line]
    assert len(lines) == 1 and f"(x{CRASHES} over" in lines[0], described


async def test_metrics_are_prometheus_client_labelled_and_removed_with_the_pool(e2e: E2E) -> None:
    """Issue #10: process metrics, namespace/workpool labels, a deleted pool's series gone."""
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    dep = await e2e.deployment()
    await e2e.wait_pid(await e2e.run(dep))

    text = e2e.operator.metrics()
    families = {f.name for f in text_string_to_metric_families(text)}
    assert {"process_resident_memory_bytes", "python_gc_objects_collected"} <= families
    series = pool_series(text, "pool")
    names = {name for name, _ in series}
    assert {
        "prefect_job_operator_pool_ready",
        "prefect_job_operator_pool_leader",
        "prefect_job_operator_runs_dispatched_total",
        "prefect_job_operator_prefect_api_up",
    } <= names, names
    assert all(labels["namespace"] == e2e.ns for _, labels in series)

    e2e.kubectl("delete", "workpool", "pool", "-n", e2e.ns, "--timeout=60s")

    async def gone() -> bool:
        return not pool_series(e2e.operator.metrics(), "pool")

    await eventually("the deleted WorkPool's series to be removed", gone, 30, 1.0)
    assert "process_resident_memory_bytes" in e2e.operator.metrics()


async def test_ready_keeps_its_transition_time_while_the_status_is_rewritten(e2e: E2E) -> None:
    """`kubectl describe wp` says since when a pool is Ready: each status write used to stamp
    the conditions anew (they were compared with the body the pool started with)."""
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    ready = await wait_ready(e2e)
    first_poll = e2e.workpool_status()["lastPollTime"]

    async def rewritten() -> dict[str, object] | None:
        status = e2e.workpool_status()
        return status if status["lastPollTime"] > first_poll else None  # RFC 3339, UTC

    await eventually("a later status write", rewritten, 30)
    await asyncio.sleep(3)  # a few more writes (polls every second)
    assert e2e.condition("Ready")["lastTransitionTime"] == ready["lastTransitionTime"]
    assert e2e.condition("Ready")["status"] == "True"

"""Pool reconcile: drift correction, rejected templates, unknown queues, deletion policy."""

from __future__ import annotations

import asyncio
import time

import pytest

from prefect_job_operator.rendering import default_base_job_template
from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready
from tests.infra import prefect_setup as ps

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]


def events(e2e: E2E) -> str:
    return str(
        e2e.kubectl(
            "get",
            "events",
            "-n",
            e2e.ns,
            "--field-selector",
            "involvedObject.kind=WorkPool",
            "-o",
            "custom-columns=REASON:.reason,MESSAGE:.message",
        ).stdout
    )


async def test_spec_changes_and_drift_are_applied_to_the_prefect_pool(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker(), "concurrencyLimit": 7, "description": "v1"})
    e2e.operator.start()
    await wait_ready(e2e)
    pool = await e2e.pool_json()
    assert (pool["concurrency_limit"], pool["description"]) == (7, "v1")

    # someone edits the pool in the Prefect UI: the operator puts the spec back
    await ps.call(e2e.http, "PATCH", f"/work_pools/{e2e.pool}", {"concurrency_limit": 1})

    async def restored() -> bool:
        return bool((await e2e.pool_json())["concurrency_limit"] == 7)

    await eventually("drift corrected", restored, 30, interval=1.0)

    # the user edits the CR: the change reaches Prefect
    e2e.apply_workpool(
        {"worker": fast_worker(), "concurrencyLimit": 3, "description": "v2", "paused": True}
    )

    async def updated() -> bool:
        pool = await e2e.pool_json()
        return (pool["concurrency_limit"], pool["description"], pool["is_paused"]) == (
            3,
            "v2",
            True,
        )

    await eventually("spec change applied", updated, 30, interval=1.0)
    assert "PoolSynced" in events(e2e)


async def test_template_rejected_by_prefect_is_a_condition_and_an_event(e2e: E2E) -> None:
    template = default_base_job_template()
    template["job_configuration"]["labels"] = "{{ undeclared_variable }}"
    e2e.apply_workpool({"worker": fast_worker(), "baseJobTemplate": template})
    e2e.operator.start()

    async def rejected() -> dict[str, str] | None:
        cond = e2e.condition("PoolSynced")
        return cond if cond.get("status") == "False" else None

    cond = await eventually("PoolSynced=False", rejected, 40)
    assert cond["reason"] == "TemplateRejected", cond
    assert "undeclared_variable" in cond["message"], cond["message"]
    assert e2e.condition("Ready")["status"] == "False"
    assert "TemplateRejected" in events(e2e)


async def test_unknown_queue_is_reported_not_silently_polled(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker(), "workQueues": ["no-such-queue"]})
    e2e.operator.start()

    async def reported() -> dict[str, str] | None:
        cond = e2e.condition("Polling")
        return cond if cond.get("reason") == "QueueNotFound" else None

    cond = await eventually("Polling=False QueueNotFound", reported, 40)
    assert cond["status"] == "False"
    assert "no-such-queue" in cond["message"]


async def test_deletion_policy_delete_removes_the_prefect_pool(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker(), "deletionPolicy": "Delete"})
    e2e.operator.start()
    await wait_ready(e2e)
    e2e.kubectl("delete", "workpool", "pool", "-n", e2e.ns, "--timeout=60s")

    async def gone() -> bool:
        r = await e2e.http.get(f"/work_pools/{e2e.pool}")
        return r.status_code == 404

    await eventually("the Prefect pool to be deleted", gone, 30)


async def test_retain_keeps_the_prefect_pool(e2e: E2E) -> None:
    e2e.apply_workpool({"worker": fast_worker()})
    e2e.operator.start()
    await wait_ready(e2e)
    e2e.kubectl("delete", "workpool", "pool", "-n", e2e.ns, "--timeout=60s")
    r = await e2e.http.get(f"/work_pools/{e2e.pool}")
    assert r.status_code == 200


HEARTBEAT = 5  # the smallest heartbeat interval the CRD allows


async def _holds(what: str, probe, seconds: float) -> None:  # type: ignore[no-untyped-def]
    """`probe` stays truthy for `seconds` (checked every second)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = await probe()
        assert value, f"{what} was undone after {seconds - (deadline - time.monotonic()):.1f}s"
        await asyncio.sleep(1.0)


async def test_pause_and_limit_set_in_prefect_stay_unless_the_spec_sets_them(e2e: E2E) -> None:
    """Issue #10 item 3: unset spec fields are not managed; set ones are enforced."""
    worker = fast_worker(heartbeatIntervalSeconds=HEARTBEAT)
    e2e.apply_workpool({"worker": worker})
    e2e.operator.start()
    await wait_ready(e2e)

    # The user pauses the pool and sets a limit in the Prefect UI (the UI's PATCH).
    await ps.call(
        e2e.http, "PATCH", f"/work_pools/{e2e.pool}", {"is_paused": True, "concurrency_limit": 3}
    )

    async def as_set_in_prefect() -> bool:
        pool = await e2e.pool_json()
        return bool(pool["is_paused"] is True and pool["concurrency_limit"] == 3)

    await _holds("the pause and limit set in Prefect", as_set_in_prefect, 3 * HEARTBEAT + 2)

    async def status_shows_live() -> dict[str, object] | None:
        st = e2e.workpool_status()
        return st if (st.get("paused"), st.get("concurrencyLimit")) == (True, 3) else None

    await eventually("status.paused/concurrencyLimit = live values", status_shows_live, 15)
    printed = e2e.kubectl("get", "wp", "pool", "-n", e2e.ns).stdout
    assert "PAUSED" in printed.splitlines()[0] and "true" in printed.splitlines()[1], printed

    async def pool_is(paused: bool, limit: int | None) -> bool:
        pool = await e2e.pool_json()
        return bool((pool["is_paused"], pool["concurrency_limit"]) == (paused, limit))

    # spec.paused: false and a limit: enforced at once, and drift is put back.
    e2e.apply_workpool({"worker": worker, "paused": False, "concurrencyLimit": 2})
    await eventually("spec.paused=false, limit 2 enforced", lambda: pool_is(False, 2), 30, 1.0)
    await ps.call(
        e2e.http, "PATCH", f"/work_pools/{e2e.pool}", {"is_paused": True, "concurrency_limit": 9}
    )
    await eventually("drift put back", lambda: pool_is(False, 2), 3 * HEARTBEAT, 1.0)

    # spec.paused: true is enforced; 'Unlimited' enforces no limit.
    e2e.apply_workpool({"worker": worker, "paused": True, "concurrencyLimit": "Unlimited"})
    await eventually("paused, no limit", lambda: pool_is(True, None), 30, 1.0)
    await ps.call(
        e2e.http, "PATCH", f"/work_pools/{e2e.pool}", {"is_paused": False, "concurrency_limit": 1}
    )
    await eventually("drift put back", lambda: pool_is(True, None), 3 * HEARTBEAT, 1.0)

    async def status_unlimited() -> bool:
        st = e2e.workpool_status()
        return (st.get("paused"), st.get("concurrencyLimit")) == (True, "Unlimited")

    await eventually("status shows Unlimited", status_unlimited, 15)

    # Unset again: no longer managed, the Prefect side wins again.
    e2e.apply_workpool({"worker": worker})
    generation = e2e.get_json("workpool", "pool")["metadata"]["generation"]

    async def acted_on() -> bool:
        return bool(e2e.workpool_status().get("observedGeneration") == generation)

    await eventually("the operator to act on the new spec", acted_on, 30)
    await ps.call(
        e2e.http, "PATCH", f"/work_pools/{e2e.pool}", {"is_paused": False, "concurrency_limit": 4}
    )
    await _holds("unmanaged again", lambda: pool_is(False, 4), 3 * HEARTBEAT + 2)

"""The namespace rule where it is applied: submission, the first listing, sync of the default
template, and the JobNamespaces condition (fakes; the e2e tests are the evidence)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import anyio
import pytest

from prefect_job_operator.api import job_namespaces as jn
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.submit import poll_once
from prefect_job_operator.dispatch.sync import sync_pool
from prefect_job_operator.dispatch.worker import check_namespaces, report, seed_table
from prefect_job_operator.kube.client import Kube, KubeError
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.rendering import (
    default_base_job_template,
    default_job_namespace,
    is_stock_template,
)
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.writeback.cr_status import status_patch
from tests.unit.fakes import FakeKube, job_json, make_runtime, now

API = {"url": "http://prefect-server:4200/api"}


def runtime(
    spec: dict[str, Any], *, namespace: str = "data", kube: FakeKube | None = None, **env: Any
) -> tuple[Pool, Any, FakeKube]:
    settings = OperatorSettings(**env)
    rt, client, kube = make_runtime(
        spec={"api": API, **spec}, namespace=namespace, kube=kube, settings=settings
    )
    return rt, client, kube


async def poll(rt: Pool) -> None:
    limiter = anyio.CapacityLimiter(4)
    async with anyio.create_task_group() as tg:
        await poll_once(rt.submitter, tg, limiter)


class ForbiddenIn(FakeKube):
    """A FakeKube whose RBAC refuses listing in some namespaces (403)."""

    def __init__(self, *forbidden: str) -> None:
        super().__init__()
        self.forbidden = set(forbidden)

    async def list_jobs(self, namespaces: Sequence[str] | None, label_selector: str) -> list[Any]:
        for ns in namespaces or ["*"]:
            if ns in self.forbidden:
                raise KubeError(403, "Forbidden", f'jobs.batch is forbidden in "{ns}"')
        return await super().list_jobs(namespaces, label_selector)


# ---- the default template ------------------------------------------------------------


def test_default_template_defaults_to_the_workpool_namespace() -> None:
    template = default_base_job_template("datatrap")
    assert template["variables"]["properties"]["namespace"]["default"] == "datatrap"
    assert default_job_namespace(template) == "datatrap"
    assert default_job_namespace(default_base_job_template()) == "default"
    assert is_stock_template(template) and is_stock_template(default_base_job_template())
    custom = default_base_job_template("datatrap")
    custom["job_configuration"]["labels"] = {"team": "x"}
    assert not is_stock_template(custom)


async def test_sync_writes_the_namespaced_default_and_fixes_a_stock_one() -> None:
    rt, client, _ = runtime({}, namespace="datatrap")
    await sync_pool(rt.cfg, rt.ports, rt.synced)
    stored = client.pools[rt.cfg.pool_name]["base_job_template"]
    assert stored == default_base_job_template("datatrap")
    assert default_job_namespace(rt.synced.template) == "datatrap"
    # a pool holding upstream's stock template (namespace default 'default') is corrected
    client.pools[rt.cfg.pool_name]["base_job_template"] = default_base_job_template()
    await sync_pool(rt.cfg, rt.ports, rt.synced)
    assert client.pools[rt.cfg.pool_name]["base_job_template"] == default_base_job_template(
        "datatrap"
    )


async def test_sync_leaves_a_users_prefect_side_template_alone() -> None:
    rt, client, _ = runtime({}, namespace="datatrap")
    custom = default_base_job_template()
    custom["job_configuration"]["labels"] = {"team": "x"}
    await client.create_work_pool(rt.cfg.pool_name, base_job_template=custom)
    await sync_pool(rt.cfg, rt.ports, rt.synced)
    assert client.pools[rt.cfg.pool_name]["base_job_template"] == custom
    await check_namespaces(rt)  # ... but its 'default' namespace is reported
    assert rt.health.namespaces is not None and not rt.health.namespaces.ok
    assert "variables.properties.namespace.default" in rt.health.namespaces.message


async def test_run_without_job_variables_goes_to_the_workpool_namespace() -> None:
    rt, client, kube = runtime({}, namespace="datatrap")
    await sync_pool(rt.cfg, rt.ports, rt.synced)
    run_id = client.add_run(deployment_id=client.add_deployment())
    await poll(rt)
    assert client.state_of(run_id) == ("PENDING", "Pending")
    assert [ns for ns, _ in kube.jobs] == ["datatrap"]


# ---- submission: the policy ------------------------------------------------------------


async def test_run_to_a_namespace_outside_the_policy_crashes_naming_the_policy() -> None:
    rt, client, kube = runtime({"jobNamespaces": ["data", "etl"]})
    run_id = client.add_run(deployment_id=client.add_deployment(namespace="etl"))
    await poll(rt)
    assert kube.calls["create_job"] == 0
    assert client.state_of(run_id) == ("CRASHED", "Crashed")
    message = client.runs[run_id]["state"]["message"]
    assert "PJO_JOB_NAMESPACE_POLICY" in message and "'etl'" in message


async def test_the_policy_opens_a_namespace() -> None:
    rt, client, kube = runtime({"jobNamespaces": ["data", "etl"]}, job_namespace_policy="data=etl")
    run_id = client.add_run(deployment_id=client.add_deployment(namespace="etl"))
    await poll(rt)
    assert client.state_of(run_id) == ("PENDING", "Pending")
    assert [ns for ns, _ in kube.jobs] == ["etl"]


async def test_run_to_an_unwatched_namespace_is_refused() -> None:
    rt, client, kube = runtime(
        {"jobNamespaces": ["data", "etl"]}, job_namespace_policy="data=etl", namespaces=["data"]
    )
    run_id = client.add_run(deployment_id=client.add_deployment(namespace="etl"))
    await poll(rt)
    assert kube.calls["create_job"] == 0
    assert "PJO_NAMESPACES" in client.runs[run_id]["state"]["message"]


# ---- the first listing and RBAC ----------------------------------------------------------


async def test_a_forbidden_namespace_does_not_block_the_others() -> None:
    kube = ForbiddenIn("locked")
    rt, client, _ = runtime(
        {"jobNamespaces": ["data", "locked"]}, kube=kube, job_namespace_policy="data=locked"
    )
    rt.ports.events = EventSink(cast(Kube, kube), "test")
    kube.jobs[("data", "old")] = job_json(
        "11111111-1111-1111-1111-111111111111", "old", namespace="data"
    )
    await seed_table(rt)
    assert rt.table.get("11111111-1111-1111-1111-111111111111") is not None
    assert (
        "locked" in rt.access.forbidden
        and "cannot list jobs.batch" in rt.access.forbidden["locked"]
    )
    await check_namespaces(rt)
    ns = rt.health.namespaces
    assert ns is not None and not ns.ok and not ns.blocking
    assert ns.reason == jn.REASON_FORBIDDEN and "'locked'" in ns.message
    assert any(e["reason"] == jn.REASON_FORBIDDEN for e in kube.events)
    patch = status_patch(report(rt), previous={}, generation=1, now=now())
    cond = next(x for x in patch["conditions"] if x["type"] == "JobNamespaces")
    assert cond["status"] == "False" and "Role" in cond["message"]

    run_locked = client.add_run(deployment_id=client.add_deployment(namespace="locked"))
    run_ok = client.add_run(deployment_id=client.add_deployment(namespace="data"))
    await poll(rt)
    assert client.state_of(run_ok) == ("PENDING", "Pending")
    assert "cannot list jobs.batch" in client.runs[run_locked]["state"]["message"]

    kube.forbidden.clear()  # the admin grants a Role: the next check clears it
    await seed_table(rt, ["locked"])
    await check_namespaces(rt)
    assert rt.access.forbidden == {} and rt.health.namespaces is not None
    assert rt.health.namespaces.ok


async def test_other_list_errors_still_retry_the_whole_seed() -> None:
    class Down(FakeKube):
        async def list_jobs(self, namespaces: Sequence[str] | None, selector: str) -> list[Any]:
            raise KubeError(0, "", "connection refused")

    rt, _, _ = runtime({}, kube=Down())
    with pytest.raises(KubeError):
        await seed_table(rt)
    assert rt.access.forbidden == {}

"""Which namespace a Job goes to, on the real components (#10 item 1, #11 items 4 and 7, #15).

The operator runs as a subprocess against the local control plane and a real Prefect server:
- a WorkPool outside `default` with the default template runs a deployment that has no job
  variables in its own namespace (it used to crash every run);
- a namespace outside the admin's policy, or outside the operator's watch, gets no Job and the
  CR says why; the policy opens it;
- in namespaced RBAC mode, a job namespace without a Role does not block the pool.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import E2E, eventually, fast_worker, wait_ready
from tests.infra import prefect_setup as ps
from tests.infra.cluster import LocalCluster
from tests.infra.operator_process import OperatorProcess
from tests.infra.prefect_server import PrefectServer
from tests.integration.test_chart import CHART, service_account_kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]


@pytest.fixture
def other_namespace(workpool_crd: LocalCluster) -> Iterator[str]:
    name = f"t-etl-{uuid.uuid4().hex[:6]}"
    workpool_crd.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        workpool_crd.kubectl("delete", "namespace", name, "--wait=false", check=False)


def jobs_in(e2e: E2E, namespace: str) -> list[dict[str, Any]]:
    out = e2e.kubectl("get", "jobs", "-n", namespace, "-o", "json").stdout

    items: list[dict[str, Any]] = json.loads(out)["items"]
    return items


def workpool_events(e2e: E2E) -> str:
    return str(
        e2e.kubectl(
            "get", "events", "-n", e2e.ns, "--field-selector", "involvedObject.kind=WorkPool",
            "-o", "custom-columns=REASON:.reason,MESSAGE:.message",
        ).stdout
    )  # fmt: skip


async def bare_deployment(e2e: E2E, job_variables: dict[str, Any] | None = None) -> str:
    """A deployment with exactly these job variables (none by default), unlike E2E.deployment."""
    flow = await ps.create_flow(e2e.http, ps.unique("flow"))
    dep = await ps.create_deployment(
        e2e.http,
        flow_id=flow["id"],
        name=ps.unique("dep"),
        work_pool_name=e2e.pool,
        job_variables=job_variables or {},
    )
    return str(dep["id"])


async def wait_condition(
    e2e: E2E, reason: str, timeout: float = 40.0, status: str | None = None
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        cond = e2e.condition("JobNamespaces")
        ok = cond.get("reason") == reason and (status is None or cond.get("status") == status)
        return cond if ok else None

    try:
        return await eventually(f"JobNamespaces reason {reason}", probe, timeout, interval=0.5)
    except AssertionError:
        raise AssertionError(
            f"status: {e2e.workpool_status()}\nlog:\n{e2e.operator.log_tail(60)}"
        ) from None


async def test_datatrap_default_template_runs_in_the_workpool_namespace(e2e: E2E) -> None:
    """#10 item 1: no template, no job variables, WorkPool outside `default`."""
    assert e2e.ns != "default"
    e2e.apply_workpool({"worker": {"pollIntervalSeconds": 2}})
    e2e.operator.start()
    await wait_ready(e2e, timeout=60)

    run_id = await e2e.run(await bare_deployment(e2e))
    started = time.monotonic()

    async def placed_or_crashed() -> dict[str, Any] | None:
        run = await e2e.flow_run(run_id)
        return run if run.get("infrastructure_pid") or run["state"]["type"] == "CRASHED" else None

    run = await eventually("a Job or a crash", placed_or_crashed, 60, interval=0.5)
    elapsed = time.monotonic() - started
    assert run["state"]["type"] != "CRASHED", run["state"]["message"]
    assert run["infrastructure_pid"].startswith(f"{e2e.ns}:"), run["infrastructure_pid"]
    assert [j["metadata"]["labels"]["prefect.io/flow-run-id"] for j in e2e.jobs()] == [run_id]
    await _assert_not_crashed(e2e, run_id, seconds=6)
    print(f"Job created in {e2e.ns} {elapsed:.1f}s after the run was created")

    pool = await e2e.pool_json()
    props = pool["base_job_template"]["variables"]["properties"]
    assert props["namespace"]["default"] == e2e.ns  # what the Prefect UI shows
    assert e2e.condition("JobNamespaces")["status"] == "True"


async def _assert_not_crashed(e2e: E2E, run_id: str, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        state = (await e2e.flow_run(run_id))["state"]
        assert state["type"] != "CRASHED", state
        await asyncio.sleep(0.5)


async def test_policy_and_watch_decide_cross_namespace_jobs(e2e: E2E, other_namespace: str) -> None:
    """#15 and #11 item 4: jobNamespaces alone does not open a namespace; the admin's policy
    does, and only where the operator watches."""
    other = other_namespace
    e2e.apply_workpool({"worker": fast_worker(), "jobNamespaces": [e2e.ns, other]})

    # A: the default policy (own namespace only), both namespaces watched
    e2e.operator.namespaces = [e2e.ns, other]
    e2e.operator.start()
    await wait_ready(e2e, timeout=60)  # the own namespace still works: Ready
    cond = await wait_condition(e2e, "NamespaceNotPermitted", status="False")
    assert repr(other) in cond["message"] and "PJO_JOB_NAMESPACE_POLICY" in cond["message"]
    await eventually("the Event", lambda: _async(other in workpool_events(e2e)), 20)
    assert "NamespaceNotPermitted" in workpool_events(e2e)

    dep_other = await bare_deployment(e2e, {"namespace": other})
    refused = await e2e.run(dep_other)
    crashed = await e2e.wait_state(refused, "CRASHED", timeout=40)
    assert "job namespace policy" in crashed["state"]["message"], crashed["state"]
    assert "PJO_JOB_NAMESPACE_POLICY" in crashed["state"]["message"]
    own = await e2e.run(await bare_deployment(e2e))
    assert (await e2e.wait_pid(own)).startswith(f"{e2e.ns}:")
    assert jobs_in(e2e, other) == []

    # B: the policy allows it, but the operator does not watch it: still refused
    e2e.operator.stop()
    e2e.operator.namespaces = [e2e.ns]
    e2e.operator.extra_env["PJO_JOB_NAMESPACE_POLICY"] = f"{e2e.ns}={other}"
    e2e.operator.start()
    cond = await wait_condition(e2e, "NamespaceNotWatched", status="False")
    assert "PJO_NAMESPACES" in cond["message"] and repr(other) in cond["message"]
    unwatched = await e2e.run(dep_other)
    crashed = await e2e.wait_state(unwatched, "CRASHED", timeout=40)
    assert "does not watch" in crashed["state"]["message"], crashed["state"]
    assert jobs_in(e2e, other) == []

    # C: policy (JSON form, as the chart renders it) and watch: the Job is created there
    e2e.operator.stop()
    e2e.operator.namespaces = [e2e.ns, other]
    e2e.operator.extra_env["PJO_JOB_NAMESPACE_POLICY"] = f'{{"{e2e.ns}": ["{other}"]}}'
    e2e.operator.start()
    await wait_condition(e2e, "Allowed", status="True")
    allowed = await e2e.run(dep_other)
    assert (await e2e.wait_pid(allowed, timeout=40)).startswith(f"{other}:")
    assert [j["metadata"]["labels"]["prefect.io/flow-run-id"] for j in jobs_in(e2e, other)] == [
        allowed
    ]


async def _async(value: bool) -> bool:
    return value


async def test_custom_template_defaulting_outside_is_reported_at_reconcile(e2e: E2E) -> None:
    """#10 item 1: a custom template whose default namespace is not allowed is a condition and
    an Event naming the fix before any run, not one crashed run at a time."""
    from prefect_job_operator.rendering import default_base_job_template

    template = default_base_job_template()  # namespace default: 'default'
    template["job_configuration"]["labels"] = {"team": "data"}
    e2e.apply_workpool({"worker": fast_worker(), "baseJobTemplate": template})
    e2e.operator.start()
    cond = await wait_condition(e2e, "NamespaceNotListed", status="False")
    assert "variables.properties.namespace.default" in cond["message"], cond
    assert repr(e2e.ns) in cond["message"]
    await eventually("the Event", lambda: _async("namespace.default" in workpool_events(e2e)), 20)


@pytest.fixture
def operator_namespace(workpool_crd: LocalCluster) -> Iterator[str]:
    name = f"pjo-system-{uuid.uuid4().hex[:6]}"
    workpool_crd.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        workpool_crd.kubectl("delete", "namespace", name, "--wait=false", check=False)


async def test_forbidden_job_namespace_does_not_block_the_pool(
    workpool_crd: LocalCluster,
    operator_namespace: str,
    k8s_namespace: str,
    other_namespace: str,
    prefect_server: PrefectServer,
    tmp_path: Path,
) -> None:
    """#11 item 7: namespaced RBAC with a Role in the WorkPool's namespace only; jobNamespaces
    also names a namespace without one. The pool dispatches where it can and says what is
    missing where it cannot."""
    cluster = workpool_crd
    ok_ns, forbidden_ns = k8s_namespace, other_namespace
    release = f"pjo-fb-{uuid.uuid4().hex[:4]}"
    # The harness applied the CRD (the release must not own it). No webhook: this cluster's
    # Services have no route, and the API server must not dial out of the machine (loopback
    # only). The webhook itself: tests/e2e/test_security.py and the real-node tests.
    cluster.helm(
        "install", release, str(CHART), "-n", operator_namespace, "--set", "crds.enabled=false",
        "--set", "rbac.mode=namespaced", "--set", f"watchNamespaces={{{ok_ns}}}",
        "--set", "webhook.enabled=false",
    )  # fmt: skip
    sa = f"{release}-prefect-job-operator"
    kubeconfig = service_account_kubeconfig(cluster, operator_namespace, sa, tmp_path / "sa.yaml")
    instance = f"pjo-{ok_ns}"[:63]
    world = E2E(cluster, ok_ns, prefect_server.api_url, tmp_path, ps.unique("pool"))
    world.operator = OperatorProcess(
        kube_env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
        api_url=prefect_server.api_url,
        log_path=tmp_path / "operator.log",
        namespaces=[ok_ns, forbidden_ns],
        instance=instance,
        identity="rbac-forbidden",
        extra_env={
            "PJO_WORKPOOL_SELECTOR": f"pjo.test/instance={instance}",
            "PJO_JOB_NAMESPACE_POLICY": f"{ok_ns}={forbidden_ns}",
        },
    )
    try:
        world.apply_workpool({"worker": fast_worker(), "jobNamespaces": [ok_ns, forbidden_ns]})
        world.kubectl("label", "workpool", "pool", "-n", ok_ns, f"pjo.test/instance={instance}")
        world.operator.start()
        await wait_ready(world, timeout=90)
        cond = await wait_condition(world, "NamespaceForbidden", status="False")
        assert repr(forbidden_ns) in cond["message"], cond
        assert "cannot list jobs.batch" in cond["message"] and "Role" in cond["message"]

        run_ok = await world.run(await bare_deployment(world))
        assert (await world.wait_pid(run_ok, timeout=40)).startswith(f"{ok_ns}:")
        run_locked = await world.run(await bare_deployment(world, {"namespace": forbidden_ns}))
        crashed = await world.wait_state(run_locked, "CRASHED", timeout=40)
        assert "cannot list jobs.batch" in crashed["state"]["message"], crashed["state"]
        assert "NamespaceForbidden" in workpool_events(world)
    finally:
        await world.close()
        cluster.helm("uninstall", release, "-n", operator_namespace, check=False)

"""The chart's RBAC is enough: the real operator, logged in as the chart's ServiceAccount,
dispatches, detects a crash and cancels, in both RBAC modes, without a single 403."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.harness import E2E, fast_worker, wait_ready
from tests.infra import prefect_setup as ps
from tests.infra.cluster import LocalCluster
from tests.infra.operator_process import OperatorProcess
from tests.infra.prefect_server import PrefectServer
from tests.integration.test_chart import CHART, service_account_kubeconfig

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect]


@pytest.fixture
def operator_namespace(workpool_crd: LocalCluster) -> Iterator[str]:
    name = f"pjo-system-{uuid.uuid4().hex[:6]}"
    workpool_crd.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        workpool_crd.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.mark.parametrize("mode", ["namespaced", "cluster"])
async def test_operator_under_the_chart_service_account(
    mode: str,
    workpool_crd: LocalCluster,
    operator_namespace: str,
    k8s_namespace: str,
    prefect_server: PrefectServer,
    tmp_path: Path,
) -> None:
    cluster = workpool_crd
    release = f"pjo-{mode[:2]}-{uuid.uuid4().hex[:4]}"
    # The harness applied the CRD: as with GitOps, this release must not own it. No webhook:
    # its Service's pods are kwok fakes, and the API server must not dial pod IPs (loopback
    # only). The webhook under the chart's RBAC: tests/e2e/test_security.py.
    args = ["install", release, str(CHART), "-n", operator_namespace, "--set", "crds.enabled=false",
            "--set", f"rbac.mode={mode}", "--set", "webhook.enabled=false"]  # fmt: skip
    if mode == "namespaced":
        args += ["--set", f"watchNamespaces={{{k8s_namespace}}}"]
    cluster.helm(*args)
    sa = f"{release}-prefect-job-operator"
    kubeconfig = service_account_kubeconfig(cluster, operator_namespace, sa, tmp_path / "sa.yaml")
    instance = f"pjo-{k8s_namespace}"[:63]
    world = E2E(cluster, k8s_namespace, prefect_server.api_url, tmp_path, ps.unique("pool"))
    world.operator = OperatorProcess(
        kube_env={**cluster.env, "KUBECONFIG": str(kubeconfig)},
        api_url=prefect_server.api_url,
        log_path=tmp_path / "operator.log",
        namespaces=[k8s_namespace] if mode == "namespaced" else [],
        instance=instance,
        identity=f"chart-{mode}",
        extra_env={"PJO_WORKPOOL_SELECTOR": f"pjo.test/instance={instance}"},
    )
    try:
        world.apply_workpool({"worker": fast_worker()})
        world.kubectl(
            "label", "workpool", "pool", "-n", k8s_namespace, f"pjo.test/instance={instance}"
        )
        world.operator.start()
        await wait_ready(world, timeout=60)

        ok = await world.deployment()
        failing = await world.deployment(
            {"annotations": {"pjo.test/outcome": "fail", "pjo.test/exit-code": "3"}}
        )
        hanging = await world.deployment({"cpu_request": "100000"})  # stays Pending
        # No pod can be created: the crash message comes from the Job's FailedCreate Events,
        # read with the chart's `list events` before the Job is deleted.
        no_pod = await world.deployment(
            {"service_account_name": "no-such-sa", "pod_watch_timeout_seconds": 5}
        )
        run_ok = await world.run(ok)
        run_fail = await world.run(failing)
        run_cancel = await world.run(hanging)
        run_no_pod = await world.run(no_pod)
        assert (await world.wait_pid(run_ok)).startswith(f"{k8s_namespace}:")
        crashed = await world.wait_state(run_fail, "CRASHED", timeout=30)
        assert "3" in crashed["state"]["message"]
        await world.wait_pid(run_cancel)
        await ps.set_state(world.http, run_cancel, "CANCELLING")
        await world.wait_state(run_cancel, "CANCELLED", timeout=30)
        await world.wait_state(run_fail, "CRASHED")
        no_pod_message = (await world.wait_state(run_no_pod, "CRASHED", timeout=60))["state"][
            "message"
        ]
        assert "FailedCreate" in no_pod_message and "no-such-sa" in no_pod_message, no_pod_message

        log = world.operator.log_tail(2000).lower()
        assert "forbidden" not in log and " 403" not in log, world.operator.log_tail(80)
    finally:
        await world.close()
        cluster.helm("uninstall", release, "-n", operator_namespace, check=False)

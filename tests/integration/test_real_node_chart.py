"""The user's path: `helm install` with the chart's defaults runs the operator as a Pod.

The operator image is the archive `tools/images/build.sh operator` builds from the
Dockerfile, imported into the real node's containerd under the chart's default
name (image.repository:appVersion); nothing is pulled. The pod runs with the chart's
ServiceAccount token and in-cluster configuration (no kubeconfig, no impersonation),
non-root on a read-only root filesystem as the chart's securityContext asks.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import Measure
from tests.infra import images
from tests.infra.cluster import REAL_NODE_NAME, LocalCluster, wait_for

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "prefect-job-operator"


def _chart_image() -> str:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    app_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["appVersion"]
    return f"{values['image']['repository']}:{app_version}"


@pytest.fixture(scope="module")
def chart_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    (archive,) = images.build("operator")
    cluster = LocalCluster(
        tmp_path_factory.mktemp("realchart"),
        kwok_nodes=0,
        real_node=True,
        node_images=(archive,),
    ).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.mark.parametrize("mode", ["cluster", "namespaced"])
def test_chart_defaults_run_the_operator_pod_in_cluster(
    chart_cluster: LocalCluster, mode: str, measure: Measure
) -> None:
    c = chart_cluster
    ns = f"operators-{mode}"
    c.kubectl("create", "namespace", ns)
    extra = ["--set", "rbac.mode=namespaced", "--set", f"watchNamespaces={{{ns}}}"]
    args = extra if mode == "namespaced" else []
    release = f"pjo-{mode}"
    # The first installation owns the CRD; a second one must not (docs/install.md).
    crd = c.kubectl("get", "crd", "workpools.prefect-job-operator.dev", check=False)
    if crd.returncode == 0:
        args = [*args, "--set", "crds.enabled=false"]
    c.helm("install", release, str(CHART), "-n", ns, "--wait", "--timeout", "300s", *args)

    def ready_pod() -> dict[str, object] | None:
        pods = json.loads(
            c.kubectl(
                "get", "pods", "-n", ns, "-o", "json",
                "-l", "app.kubernetes.io/name=prefect-job-operator",
            ).stdout
        )["items"]  # fmt: skip
        for pod in pods:
            conditions = pod.get("status", {}).get("conditions", [])
            if any(x["type"] == "Ready" and x["status"] == "True" for x in conditions):
                return dict(pod)
        return None

    pod: dict[str, object] = wait_for("the operator pod Ready", ready_pod, 300, 0.5)
    spec, status = pod["spec"], pod["status"]
    assert isinstance(spec, dict) and isinstance(status, dict)
    assert spec["nodeName"] == REAL_NODE_NAME
    container = spec["containers"][0]
    assert container["image"] == _chart_image()
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["runAsUser"] == 10001
    assert spec["serviceAccountName"] == f"{release}-prefect-job-operator"
    running = status["containerStatuses"][0]
    assert "running" in running["state"] and running["ready"] is True
    name = pod["metadata"]["name"]  # type: ignore[index]
    logs = c.kubectl("logs", "-n", ns, name).stdout
    # No kubeconfig in the pod: kopf's client logs in from the mounted ServiceAccount
    # token through $KUBERNETES_SERVICE_HOST (the `kubernetes` Service -> apiserver).
    env = {e["name"] for e in container.get("env", [])}
    assert "KUBECONFIG" not in env
    assert "Activity 'login_via_async_client' succeeded." in logs, logs
    assert "Traceback" not in logs, logs
    # ...and acts with the chart's RBAC: a WorkPool in a watched namespace gets a status.
    wp = {
        "apiVersion": "prefect-job-operator.dev/v1alpha1",
        "kind": "WorkPool",
        "metadata": {"name": "probe"},
        "spec": {"poolName": "probe"},
    }
    # The chart's admission webhook is on (failurePolicy Fail): the apply is admitted only
    # because the API server reaches it at the operator pod's IP on the node's bridge.
    hook = json.loads(
        c.kubectl("get", "validatingwebhookconfiguration", release + "-prefect-job-operator",
                  "-o", "json").stdout
    )["webhooks"][0]  # fmt: skip
    assert hook["failurePolicy"] == "Fail"
    assert hook["clientConfig"]["service"]["namespace"] == ns
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(wp))

    def wp_status() -> object:
        got = json.loads(c.kubectl("get", "wp", "probe", "-n", ns, "-o", "json").stdout)
        return got.get("status")

    assert wait_for("the operator pod to write the WorkPool status", wp_status, 120, 0.5)
    measure(f"real node chart ({mode}): operator logs head", logs.splitlines()[:3])
    c.helm("uninstall", release, "-n", ns, "--wait")

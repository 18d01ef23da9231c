"""The process node runs pods as real local processes: exit codes, output, env, deletion."""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

import pytest

from tests.infra.cluster import PROCESS_NODE_PLACEMENT, Cluster, LocalCluster, wait_for
from tests.integration.k8s_helpers import apply, get, job, job_condition, job_pod

pytestmark = pytest.mark.cluster


@pytest.fixture
def local(k8s_cluster: Cluster) -> LocalCluster:
    if not isinstance(k8s_cluster, LocalCluster) or not k8s_cluster.process_node:
        pytest.skip("the process node exists only on the local control plane")
    return k8s_cluster


def test_job_runs_a_real_command_with_secret_env(local: LocalCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "creds"},
        "data": {"token": base64.b64encode(b"s3cr3t").decode()},
    }
    apply(local, secret, ns)
    manifest = job(
        "real",
        command=["sh", "-c", 'echo hello; echo "token=$TOKEN plain=$PLAIN pod=$POD"; exit 3'],
        pod_spec=PROCESS_NODE_PLACEMENT,
    )
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
        {"name": "PLAIN", "value": "x-$(TOKEN)"},
        {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
    ]
    apply(local, manifest, ns)

    assert job_condition(local, "real", ns) == "Failed"
    pod = job_pod(local, "real", ns)
    name = pod["metadata"]["name"]
    assert pod["spec"]["nodeName"] == "process-node"
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["podIP"] == "127.0.0.1"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "Error")

    expected = f"hello\ntoken=s3cr3t plain=x-s3cr3t pod={name}\n"
    assert (local.pod_logs_dir / f"{ns}_{name}_main.log").read_text() == expected
    assert local.kubectl("logs", "-n", ns, name).stdout == expected
    assert local.kubectl("logs", "-n", ns, name, "--tail=1").stdout.startswith("token=")


def test_successful_command_completes_the_job(local: LocalCluster, k8s_namespace: str) -> None:
    manifest = job("fine", command=["true"], pod_spec=PROCESS_NODE_PLACEMENT)
    apply(local, manifest, k8s_namespace)
    assert job_condition(local, "fine", k8s_namespace) == "Complete"
    pod = job_pod(local, "fine", k8s_namespace)
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_prefect_style_args_without_command_and_missing_binary(
    local: LocalCluster, k8s_namespace: str
) -> None:
    """Prefect's template sets only ``args``; an unknown executable is a StartError (128)."""
    manifest = job("noexec", pod_spec=PROCESS_NODE_PLACEMENT)
    container = manifest["spec"]["template"]["spec"]["containers"][0]
    container["args"] = ["definitely-not-a-binary-pjo", "flow-run", "execute"]
    apply(local, manifest, k8s_namespace)
    assert job_condition(local, "noexec", k8s_namespace) == "Failed"
    state = job_pod(local, "noexec", k8s_namespace)["status"]["containerStatuses"][0]["state"]
    assert (state["terminated"]["exitCode"], state["terminated"]["reason"]) == (128, "StartError")


def test_missing_secret_is_a_config_error_until_it_appears(
    local: LocalCluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    manifest = job("waits", command=["sh", "-c", 'test "$V" = ok'], pod_spec=PROCESS_NODE_PLACEMENT)
    manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "V", "valueFrom": {"configMapKeyRef": {"name": "late", "key": "v"}}}
    ]
    apply(local, manifest, ns)

    def waiting_reason() -> str | None:
        statuses = job_pod(local, "waits", ns)["status"].get("containerStatuses", [])
        return statuses[0]["state"].get("waiting", {}).get("reason") if statuses else None

    wait_for(
        "CreateContainerConfigError", lambda: waiting_reason() == "CreateContainerConfigError", 30
    )
    local.kubectl("create", "configmap", "late", "--from-literal=v=ok", "-n", ns)
    assert job_condition(local, "waits", ns) == "Complete"


def test_deleting_a_pod_kills_its_process(local: LocalCluster, k8s_namespace: str) -> None:
    ns = k8s_namespace
    marker = local.workdir / f"sleep-{ns}.pid"
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "sleeper"},
        "spec": {
            **PROCESS_NODE_PLACEMENT,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "main",
                    "image": "ignored",
                    # `$$$$`: Kubernetes turns `$$` into `$`, the shell gets `$$`
                    "command": ["sh", "-c", f"echo $$$$ > {marker}; exec sleep 300"],
                }
            ],
        },
    }
    apply(local, pod, ns)
    wait_for("the process to start", lambda: marker.exists() and marker.read_text().strip(), 30)
    pid = int(marker.read_text())
    assert get(local, "pod", "sleeper", ns)["status"]["phase"] == "Running"

    started = time.monotonic()
    local.kubectl("delete", "pod", "sleeper", "-n", ns, "--timeout=30s")
    assert time.monotonic() - started < 15
    assert not _alive(pid)
    gone = local.kubectl("get", "pod", "sleeper", "-n", ns, check=False)
    assert "NotFound" in gone.stderr


def test_node_is_ready_and_reserved(local: LocalCluster) -> None:
    node = json.loads(local.kubectl("get", "node", "process-node", "-o", "json").stdout)
    assert node["metadata"]["labels"]["pjo.test/process-node"] == "true"
    assert "kwok.x-k8s.io/node" not in node["metadata"].get("annotations", {})
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready[0]["status"] == "True"
    assert [t["key"] for t in node["spec"]["taints"]] == ["pjo.test/process-node"]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "zombie" not in Path(f"/proc/{pid}/status").read_text()

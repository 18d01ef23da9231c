"""Small kubectl-based helpers shared by the control-plane integration tests."""

from __future__ import annotations

import json
from typing import Any

from tests.infra.cluster import Cluster, wait_for


def apply(cluster: Cluster, manifest: dict[str, Any], namespace: str | None = None) -> None:
    args = ["apply", "-f", "-"]
    if namespace:
        args += ["-n", namespace]
    cluster.kubectl(*args, input=json.dumps(manifest))


def get(cluster: Cluster, kind: str, name: str, namespace: str | None = None) -> Any:
    args = ["get", kind, name, "-o", "json"]
    if namespace:
        args += ["-n", namespace]
    return json.loads(cluster.kubectl(*args).stdout)


def job(
    name: str,
    command: list[str] | None = None,
    annotations: dict[str, str] | None = None,
    pod_spec: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A batch/v1 Job with one container, no retries (failure tests stay fast)."""
    container: dict[str, Any] = {"name": "main", "image": "busybox:1.36"}
    if command:
        container["command"] = command
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": {"restartPolicy": "Never", "containers": [container], **(pod_spec or {})},
            },
        },
    }


def job_condition(cluster: Cluster, name: str, namespace: str, timeout: float = 60) -> str:
    """Wait until the Job is Complete or Failed; return which."""

    def finished() -> str | None:
        conditions = get(cluster, "job", name, namespace).get("status", {}).get("conditions", [])
        for c in conditions:
            if c["type"] in ("Complete", "Failed") and c["status"] == "True":
                return str(c["type"])
        return None

    return wait_for(f"job {namespace}/{name} to finish", finished, timeout, 0.2)


def job_pod(cluster: Cluster, job_name: str, namespace: str) -> Any:
    pods = json.loads(
        cluster.kubectl(
            "get", "pods", "-n", namespace, "-l", f"job-name={job_name}", "-o", "json"
        ).stdout
    )["items"]
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]

"""The local control plane is a real Kubernetes: version, CEL, Jobs via kwok, scheduling, RBAC."""

from __future__ import annotations

import json
import time

import pytest

from tests.infra.cluster import Cluster, LocalCluster, wait_crd_established, wait_for
from tests.integration.k8s_helpers import apply, get, job, job_condition, job_pod

pytestmark = pytest.mark.cluster

KWOK_NODE = {"nodeSelector": {"type": "kwok"}}

CEL_CRD = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "celwidgets.test.pjo.dev"},
    "spec": {
        "group": "test.pjo.dev",
        "scope": "Namespaced",
        "names": {"plural": "celwidgets", "singular": "celwidget", "kind": "CelWidget"},
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "properties": {
                            "spec": {
                                "type": "object",
                                "properties": {
                                    "minReplicas": {"type": "integer"},
                                    "maxReplicas": {"type": "integer"},
                                },
                                "x-kubernetes-validations": [
                                    {
                                        "rule": "self.minReplicas <= self.maxReplicas",
                                        "message": "minReplicas must not exceed maxReplicas",
                                    }
                                ],
                            }
                        },
                    }
                },
            }
        ],
    },
}


def test_apiserver_reports_the_pinned_version(k8s_cluster: Cluster) -> None:
    version = json.loads(k8s_cluster.kubectl("get", "--raw", "/version").stdout)
    assert version["gitVersion"] == "v1.36.3"
    assert (version["major"], version["minor"]) == ("1", "36")


def test_crd_cel_rule_rejects_invalid_and_accepts_valid(
    k8s_cluster: Cluster, k8s_namespace: str
) -> None:
    apply(k8s_cluster, CEL_CRD)
    wait_crd_established(k8s_cluster, "celwidgets.test.pjo.dev", 30)

    def widget(name: str, lo: int, hi: int) -> str:
        obj = {
            "apiVersion": "test.pjo.dev/v1",
            "kind": "CelWidget",
            "metadata": {"name": name},
            "spec": {"minReplicas": lo, "maxReplicas": hi},
        }
        return json.dumps(obj)

    bad = k8s_cluster.kubectl(
        "apply", "-n", k8s_namespace, "-f", "-", input=widget("bad", 5, 1), check=False
    )
    assert bad.returncode != 0
    assert "minReplicas must not exceed maxReplicas" in bad.stderr

    k8s_cluster.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=widget("good", 1, 5))
    assert get(k8s_cluster, "celwidget", "good", k8s_namespace)["spec"]["maxReplicas"] == 5


def test_job_completes_through_kwok(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    apply(k8s_cluster, job("ok", pod_spec=KWOK_NODE), k8s_namespace)
    assert job_condition(k8s_cluster, "ok", k8s_namespace) == "Complete"
    pod = job_pod(k8s_cluster, "ok", k8s_namespace)
    assert pod["spec"]["nodeName"].startswith("kwok-node-")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_job_told_to_fail_reports_exit_code_and_reason(
    k8s_cluster: Cluster, k8s_namespace: str
) -> None:
    outcome = {
        "pjo.test/outcome": "fail",
        "pjo.test/exit-code": "3",
        "pjo.test/reason": "OOMKilled",
        "pjo.test/after": "200ms",
    }
    apply(k8s_cluster, job("boom", annotations=outcome, pod_spec=KWOK_NODE), k8s_namespace)
    assert job_condition(k8s_cluster, "boom", k8s_namespace) == "Failed"
    failed = [
        c
        for c in get(k8s_cluster, "job", "boom", k8s_namespace)["status"]["conditions"]
        if c["type"] == "Failed"
    ]
    assert failed[0]["reason"] == "BackoffLimitExceeded"
    pod = job_pod(k8s_cluster, "boom", k8s_namespace)
    assert pod["status"]["phase"] == "Failed"
    terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (3, "OOMKilled")


def test_delay_annotation_holds_the_pod_running(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    outcome = {"pjo.test/outcome": "succeed", "pjo.test/after": "3s"}
    started = time.monotonic()
    apply(k8s_cluster, job("slow", annotations=outcome, pod_spec=KWOK_NODE), k8s_namespace)
    wait_for(
        "pod Running",
        lambda: job_pod(k8s_cluster, "slow", k8s_namespace)["status"].get("phase") == "Running",
        30,
        0.2,
    )
    assert job_condition(k8s_cluster, "slow", k8s_namespace) == "Complete"
    assert time.monotonic() - started >= 3


def test_unschedulable_pod_stays_pending(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "nowhere"},
        "spec": {
            "nodeSelector": {"pjo.test/no-such-node": "true"},
            "containers": [{"name": "main", "image": "busybox:1.36"}],
        },
    }
    apply(k8s_cluster, pod, k8s_namespace)

    def unschedulable() -> bool:
        status = get(k8s_cluster, "pod", "nowhere", k8s_namespace)["status"]
        return any(
            c["type"] == "PodScheduled"
            and c["status"] == "False"
            and c["reason"] == "Unschedulable"
            for c in status.get("conditions", [])
        )

    wait_for("PodScheduled=False/Unschedulable", unschedulable, 30, 0.2)
    time.sleep(1)
    status = get(k8s_cluster, "pod", "nowhere", k8s_namespace)["status"]
    assert status["phase"] == "Pending"
    assert "nodeName" not in get(k8s_cluster, "pod", "nowhere", k8s_namespace)["spec"]


def test_evicted_pod_ends_failed_evicted(k8s_cluster: Cluster, k8s_namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "evictee",
            "annotations": {"pjo.test/outcome": "evict", "pjo.test/after": "100ms"},
        },
        "spec": {
            **KWOK_NODE,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "busybox:1.36"}],
        },
    }
    apply(k8s_cluster, pod, k8s_namespace)
    wait_for(
        "pod Failed",
        lambda: (
            get(k8s_cluster, "pod", "evictee", k8s_namespace)["status"].get("phase") == "Failed"
        ),
        30,
        0.2,
    )
    status = get(k8s_cluster, "pod", "evictee", k8s_namespace)["status"]
    assert status["reason"] == "Evicted"
    assert any(c["type"] == "DisruptionTarget" for c in status["conditions"])


def test_impersonated_service_account_gets_exactly_its_role(
    k8s_cluster: Cluster, k8s_namespace: str
) -> None:
    ns = k8s_namespace
    k8s_cluster.kubectl("create", "serviceaccount", "runner", "-n", ns)
    who = f"system:serviceaccount:{ns}:runner"

    def can_i(verb: str, resource: str) -> str:
        proc = k8s_cluster.kubectl(
            "auth", "can-i", verb, resource, "-n", ns, as_user=who, check=False
        )
        return proc.stdout.strip()

    denied = k8s_cluster.kubectl("get", "pods", "-n", ns, as_user=who, check=False)
    assert denied.returncode != 0
    assert "Forbidden" in denied.stderr
    assert can_i("list", "pods") == "no"

    k8s_cluster.kubectl(
        "create", "role", "pod-reader", "--verb=get,list,watch", "--resource=pods", "-n", ns
    )
    k8s_cluster.kubectl(
        "create", "rolebinding", "runner-reads-pods", "--role=pod-reader",
        f"--serviceaccount={ns}:runner", "-n", ns,
    )  # fmt: skip
    wait_for("the RoleBinding to take effect", lambda: can_i("list", "pods") == "yes", 15, 0.2)
    assert k8s_cluster.kubectl("get", "pods", "-n", ns, as_user=who).returncode == 0
    assert can_i("list", "secrets") == "no"
    assert can_i("create", "jobs.batch") == "no"
    assert can_i("delete", "pods") == "no"
    secrets = k8s_cluster.kubectl("get", "secrets", "-n", ns, as_user=who, check=False)
    assert secrets.returncode != 0 and "Forbidden" in secrets.stderr
    if isinstance(k8s_cluster, LocalCluster):  # the status codes themselves
        http, as_sa = k8s_cluster.http(), {"Impersonate-User": who}
        assert http.get(f"/api/v1/namespaces/{ns}/secrets", headers=as_sa).status_code == 403
        assert http.get(f"/api/v1/namespaces/{ns}/pods", headers=as_sa).status_code == 200


def test_helm_reaches_the_cluster(k8s_cluster: Cluster) -> None:
    assert k8s_cluster.helm("version", "--short").stdout.startswith("v3.")
    assert k8s_cluster.helm("list", "--all-namespaces", "-o", "json").stdout.strip() == "[]"

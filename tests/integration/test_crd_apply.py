"""The generated CRD on a real kube-apiserver: accepted, explained, defaulted, CEL enforced.

Every file in examples/ must apply; every file in examples/invalid/ must be rejected with the
message its ``# expect:`` comment names.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from prefect_job_operator.api import crdgen, v1alpha1
from prefect_job_operator.writeback.cr_status import status_patch
from prefect_job_operator.writeback.outcomes import Condition, PoolReport, RunCounts
from tests.infra.cluster import Cluster, wait_crd_established, wait_for

pytestmark = pytest.mark.cluster

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / crdgen.CRD_FILENAME
EXAMPLES = sorted((ROOT / "examples").glob("*.yaml"))
INVALID = sorted((ROOT / "examples" / "invalid").glob("*.yaml"))


@pytest.fixture(scope="module")
def crd(k8s_cluster: Cluster) -> Cluster:
    """The committed CRD applied and Established (idempotent if another test installed it)."""
    k8s_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD_FILE))
    wait_crd_established(k8s_cluster, v1alpha1.CRD_NAME)
    # Discovery and the published OpenAPI lag a moment behind Established.
    wait_for(
        "workpools in discovery",
        lambda: k8s_cluster.kubectl("get", "workpools", "-A", check=False).returncode == 0,
        30,
        0.2,
    )
    return k8s_cluster


def _get(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    out = cluster.kubectl("get", "workpool", name, "-n", namespace, "-o", "json").stdout
    result: dict[str, Any] = json.loads(out)
    return result


def test_crd_is_established_with_names(crd: Cluster) -> None:
    out = crd.kubectl("get", "crd", v1alpha1.CRD_NAME, "-o", "json").stdout
    names = json.loads(out)["status"]["acceptedNames"]
    assert names["kind"] == "WorkPool"
    assert names["shortNames"] == ["wp"]
    assert names["categories"] == ["prefect"]


def test_explain_shows_the_descriptions(crd: Cluster) -> None:
    def explained(path: str) -> str:
        holder: list[str] = []

        def ready() -> bool:
            proc = crd.kubectl("explain", path, check=False)
            holder.append(proc.stdout)
            return proc.returncode == 0

        wait_for(f"kubectl explain {path}", ready, 30, 0.5)
        return " ".join(holder[-1].split())  # explain wraps long lines

    spec = explained("workpool.spec")
    assert "poolName" in spec and "jobNamespaces" in spec and "baseJobTemplate" in spec
    assert "Name of the Prefect work pool. Default: the WorkPool's metadata.name." in spec
    poll = explained("workpool.spec.worker.pollIntervalSeconds")
    assert "Seconds between two polls for scheduled flow runs." in poll
    ref = explained("workpool.spec.api.apiKeySecretRef")
    assert "must exist in every Job namespace" in ref


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_valid_examples_are_accepted_and_defaulted(
    crd: Cluster, k8s_namespace: str, path: Path
) -> None:
    crd.kubectl("apply", "-n", k8s_namespace, "-f", str(path))
    name = yaml.safe_load(path.read_text())["metadata"]["name"]
    stored = _get(crd, k8s_namespace, name)
    spec = stored["spec"]
    # Defaults come from the schema, so `kubectl get -o yaml` shows the effective values.
    assert spec["worker"]["heartbeatIntervalSeconds"] == 30
    assert spec["worker"]["runLabels"] is True
    assert spec["recovery"]["pendingGraceSeconds"] == 60
    assert spec["deletionPolicy"] == "Retain"
    assert spec["type"] == "kubernetes"
    assert spec["api"] == {}
    # The operator reads the stored object exactly like the file.
    from_server = v1alpha1.WorkPoolSpec.from_cr(stored)
    from_file = v1alpha1.WorkPoolSpec.from_cr(
        {**yaml.safe_load(path.read_text()), "metadata": stored["metadata"]}
    )
    assert from_server == from_file


def test_minimal_example_gets_schema_defaults(crd: Cluster, k8s_namespace: str) -> None:
    crd.kubectl("apply", "-n", k8s_namespace, "-f", str(ROOT / "examples" / "workpool.yaml"))
    spec = _get(crd, k8s_namespace, "demo-pool")["spec"]
    assert spec["worker"]["pollIntervalSeconds"] == 10
    assert spec["worker"]["submitConcurrency"] == 4
    assert spec["createIfMissing"] is True
    # unset paused/concurrencyLimit are not managed, so the schema gives them no default
    assert "paused" not in spec and "concurrencyLimit" not in spec
    assert "poolName" not in spec  # defaulted by the operator from metadata.name


def test_nulls_are_pruned_and_defaulted(crd: Cluster, k8s_namespace: str) -> None:
    body = {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": "WorkPool",
        "metadata": {"name": "nulls"},
        "spec": {"limit": None, "worker": {"pollIntervalSeconds": None}, "poolName": None},
    }
    crd.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=json.dumps(body))
    spec = _get(crd, k8s_namespace, "nulls")["spec"]
    assert "limit" not in spec and "poolName" not in spec
    assert spec["worker"]["pollIntervalSeconds"] == 10


def _expected_message(path: Path) -> str:
    for line in path.read_text().splitlines():
        if line.startswith("# expect: "):
            return line.removeprefix("# expect: ").strip()
    raise AssertionError(f"{path} has no '# expect:' line")


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_examples_are_rejected_with_their_message(
    crd: Cluster, k8s_namespace: str, path: Path
) -> None:
    proc = crd.kubectl("apply", "-n", k8s_namespace, "-f", str(path), check=False)
    assert proc.returncode != 0, f"{path.name} was accepted"
    assert _expected_message(path) in proc.stderr, proc.stderr
    assert "compilation failed" not in proc.stderr and "no such key" not in proc.stderr


def test_status_keeps_kopf_fields_and_accepts_our_patch(crd: Cluster, k8s_namespace: str) -> None:
    crd.kubectl("apply", "-n", k8s_namespace, "-f", str(ROOT / "examples" / "workpool.yaml"))
    now = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
    report = PoolReport(
        pool_id="5f0c6ad2-4b9f-4a4b-9f0e-2b0d1f3c4e5a",
        pool_name="demo-pool",
        pool_type="kubernetes",
        worker_name="prefect-job-operator:x:demo-pool",
        lease_holder="pjo-0",
        pool_paused=True,
        pool_concurrency_limit="Unlimited",
        api=Condition(True),
        sync=Condition(True),
        poll=Condition(True),
        last_poll_time=now,
        last_heartbeat_time=now,
        counts=RunCounts(pending=1, running=2, submitted=3),
        oldest_pending_since=now,
    )
    patch = status_patch(report, previous={}, generation=1, now=now)
    patch["kopf"] = {"progress": {"workpool_create": {"started": "2026-11-28T12:00:00Z"}}}
    crd.kubectl(
        "patch",
        "workpool",
        "demo-pool",
        "-n",
        k8s_namespace,
        "--subresource=status",
        "--type=merge",
        "-p",
        json.dumps({"status": patch}),
    )
    status = _get(crd, k8s_namespace, "demo-pool")["status"]
    assert status["kopf"]["progress"]["workpool_create"]["started"] == "2026-11-28T12:00:00Z"
    assert status["counts"] == {
        "pending": 1,
        "running": 2,
        "submitted": 3,
        "crashed": 0,
        "cancelled": 0,
    }
    assert {c["type"]: c["status"] for c in status["conditions"]}["Ready"] == "True"

    table = crd.kubectl("get", "wp", "-n", k8s_namespace).stdout
    header, row = table.splitlines()[:2]
    assert (status["paused"], status["concurrencyLimit"]) == (True, "Unlimited")
    assert header.split()[:8] == [
        "NAME",
        "POOL",
        "TYPE",
        "READY",
        "PAUSED",
        "RUNNING",
        "PENDING",
        "LAST",
    ]
    assert row.split()[:7] == ["demo-pool", "demo-pool", "kubernetes", "True", "true", "2", "1"]
    assert "demo-pool" in crd.kubectl("get", "prefect", "-n", k8s_namespace).stdout


@pytest.mark.parametrize("limit", [0, 7, "Unlimited"])
def test_concurrency_limit_is_a_number_or_unlimited(
    crd: Cluster, k8s_namespace: str, limit: int | str
) -> None:
    body = {
        "apiVersion": v1alpha1.API_VERSION,
        "kind": "WorkPool",
        "metadata": {"name": "limited"},
        "spec": {"concurrencyLimit": limit, "paused": True},
    }
    crd.kubectl("apply", "-n", k8s_namespace, "-f", "-", input=json.dumps(body))
    stored = _get(crd, k8s_namespace, "limited")
    assert (stored["spec"]["concurrencyLimit"], stored["spec"]["paused"]) == (limit, True)
    spec = v1alpha1.WorkPoolSpec.from_cr(stored)
    assert spec.managed_concurrency_limit == (True, None if limit == "Unlimited" else limit)

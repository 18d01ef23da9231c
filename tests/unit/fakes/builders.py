"""Object builders: a WorkPool CR, a PoolRuntime wired to the fakes, Job and Pod JSON."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from prefect_job_operator.api.v1alpha1 import WorkPoolSpec
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.runtime import PoolConfig, Ports
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.rendering import WorkerContext
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.writeback.outcomes import Condition
from prefect_job_operator.writeback.prefect_states import StateWriter
from tests.unit.fakes.clock import iso, now
from tests.unit.fakes.kube import FakeKube
from tests.unit.fakes.prefect import FakePrefectClient

Json = dict[str, Any]


POOL_ID = "3d6e3c9a-5b8f-4c43-9d0e-8f1e2a7b6c50"


def workpool_body(
    name: str = "k8s", namespace: str = "default", spec: Mapping[str, Any] | None = None
) -> Json:
    """A WorkPool CR as the API server returns it."""
    return {
        "apiVersion": "prefect-job-operator.dev/v1alpha1",
        "kind": "WorkPool",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "generation": 1,
            "resourceVersion": "4711",
            "creationTimestamp": "2026-11-28T10:00:00Z",
        },
        "spec": dict(spec or {"api": {"url": "http://prefect-server:4200/api"}}),
    }


def make_runtime(
    *,
    spec: Mapping[str, Any] | None = None,
    name: str = "k8s",
    namespace: str = "default",
    pool_id: str = POOL_ID,
    kube: FakeKube | None = None,
    client: FakePrefectClient | None = None,
    leader: bool = True,
    settings: OperatorSettings | None = None,
) -> tuple[Pool, FakePrefectClient, FakeKube]:
    """A Pool wired to fakes, as the pool daemon builds it after a sync."""
    body = workpool_body(name, namespace, spec)
    kube = kube or FakeKube()
    client = client or FakePrefectClient()
    wp_spec = WorkPoolSpec.from_cr(body)
    settings = settings or OperatorSettings()
    cfg = PoolConfig(
        namespace=namespace,
        name=name,
        uid=body["metadata"]["uid"],
        body=body,
        spec=wp_spec,
        generation=1,
        settings=settings,
    )
    ports = Ports(
        cfg,
        client=client,
        writer=StateWriter(client),
        kube=kube,
        metrics=Metrics(),
    )
    worker_ctx = WorkerContext(
        worker_name=cfg.worker_name,
        work_pool_name=cfg.pool_name,
        work_pool_id=pool_id,
        prefect_env={"PREFECT_API_URL": "http://prefect-server:4200/api"},
        secret_env={},
    )
    rt = Pool.assemble(cfg, ports, worker_ctx)
    rt.synced.pool = {"id": pool_id, "name": cfg.pool_name, "type": "kubernetes"}
    rt.health.leader = leader
    rt.health.sync = Condition(True)
    return rt, client, kube


# --------------------------------------------------------------------------- Job / Pod JSON


def job_json(
    run_id: str,
    name: str = "crimson-fox-abcde12345",
    *,
    namespace: str = "default",
    created: datetime | None = None,
    pool_id: str = POOL_ID,
    backoff_limit: int = 0,
    pod_watch_timeout: int | None = None,
    job_watch_timeout: int | None = None,
    active: int = 0,
    failed: int = 0,
    succeeded: int = 0,
    conditions: list[Json] | None = None,
) -> Json:
    """A batch/v1 Job as a watch event carries it."""
    created = created or now()
    annotations: dict[str, str] = {
        "prefect-job-operator.dev/claim-id": str(uuid.uuid4()),
        "prefect-job-operator.dev/workpool-ref": "default/k8s",
    }
    if pod_watch_timeout is not None:
        annotations["prefect-job-operator.dev/pod-watch-timeout-seconds"] = str(pod_watch_timeout)
    if job_watch_timeout is not None:
        annotations["prefect-job-operator.dev/job-watch-timeout-seconds"] = str(job_watch_timeout)
    labels = {
        "prefect.io/flow-run-id": run_id,
        "prefect.io/flow-run-name": name.rsplit("-", 1)[0],
        "prefect.io/work-pool-id": pool_id,
        "prefect.io/work-pool-name": "k8s",
        "prefect-job-operator.dev/operator": "prefect-job-operator",
        "prefect-job-operator.dev/workpool": "k8s",
    }
    status: Json = {}
    if active:
        status["active"] = active
        status["ready"] = 0
    if failed:
        status["failed"] = failed
    if succeeded:
        status["succeeded"] = succeeded
    if active or failed or succeeded:
        status["startTime"] = iso(created)
        status["uncountedTerminatedPods"] = {}
    if conditions:
        status["conditions"] = conditions
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "uid": f"uid-{name}",
            "resourceVersion": "1001",
            "generation": 1,
            "creationTimestamp": iso(created),
            "labels": labels,
            "annotations": annotations,
        },
        "spec": {
            "backoffLimit": backoff_limit,
            "completions": 1,
            "parallelism": 1,
            "suspend": False,
            "completionMode": "NonIndexed",
            "template": {
                "metadata": {"labels": dict(labels)},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "prefect-job"}]},
            },
        },
        "status": status,
    }


def job_condition(
    kind: str, reason: str = "", message: str = "", at: datetime | None = None
) -> Json:
    stamp = iso(at or now())
    return {
        "type": kind,
        "status": "True",
        "reason": reason,
        "message": message,
        "lastProbeTime": stamp,
        "lastTransitionTime": stamp,
    }


def pod_json(
    run_id: str,
    job_name: str = "crimson-fox-abcde12345",
    *,
    phase: str = "Pending",
    suffix: str = "x7k2p",
    namespace: str = "default",
    created: datetime | None = None,
    pool_id: str = POOL_ID,
    unschedulable: str | None = None,
    waiting: str | None = None,
    exit_code: int | None = None,
    reason: str | None = None,
) -> Json:
    """A v1 Pod of a Job as the API returns it (labels the Job controller adds included)."""
    created = created or now()
    status: Json = {"phase": phase, "qosClass": "BestEffort"}
    conditions: list[Json] = []
    if unschedulable is not None:
        conditions.append(
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
                "lastProbeTime": None,
                "lastTransitionTime": iso(created),
            }
        )
    else:
        conditions.append(
            {"type": "PodScheduled", "status": "True", "lastTransitionTime": iso(created)}
        )
    status["conditions"] = conditions
    container: Json | None = None
    if waiting is not None:
        container = {
            "name": "prefect-job",
            "ready": False,
            "restartCount": 0,
            "image": "prefecthq/prefect:3.9.1-python3.11",
            "state": {"waiting": {"reason": waiting, "message": f"{waiting} detail"}},
        }
    elif phase == "Running":
        container = {
            "name": "prefect-job",
            "ready": True,
            "restartCount": 0,
            "started": True,
            "state": {"running": {"startedAt": iso(created)}},
        }
    elif exit_code is not None:
        container = {
            "name": "prefect-job",
            "ready": False,
            "restartCount": 0,
            "started": False,
            "state": {
                "terminated": {
                    "exitCode": exit_code,
                    "reason": reason or ("Completed" if exit_code == 0 else "Error"),
                    "startedAt": iso(created),
                    "finishedAt": iso(created + timedelta(seconds=5)),
                    "containerID": "containerd://0f3a",
                }
            },
        }
    if container is not None:
        status["containerStatuses"] = [container]
    if phase != "Pending" or unschedulable is None:
        status["hostIP"] = "10.0.0.12"
        status["startTime"] = iso(created)
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": f"{job_name}-{suffix}",
            "generateName": f"{job_name}-",
            "namespace": namespace,
            "uid": str(uuid.uuid4()),
            "resourceVersion": "2002",
            "creationTimestamp": iso(created),
            "labels": {
                "batch.kubernetes.io/controller-uid": f"uid-{job_name}",
                "batch.kubernetes.io/job-name": job_name,
                "controller-uid": f"uid-{job_name}",
                "job-name": job_name,
                "prefect.io/flow-run-id": run_id,
                "prefect.io/work-pool-id": pool_id,
                "prefect-job-operator.dev/operator": "prefect-job-operator",
            },
            "ownerReferences": [
                {
                    "apiVersion": "batch/v1",
                    "kind": "Job",
                    "name": job_name,
                    "uid": f"uid-{job_name}",
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "prefect-job", "image": "prefecthq/prefect:3.9.1-python3.11"}],
            **({"nodeName": "node-1"} if unschedulable is None else {}),
        },
        "status": status,
    }

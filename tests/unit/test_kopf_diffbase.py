"""kopf's change detection is kept for WorkPools and skipped for the watch-only Jobs/Pods."""

from __future__ import annotations

from typing import Any, cast

import kopf

from prefect_job_operator.handlers import WatchOnlyDiffBase, configure


def _job() -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "j", "namespace": "ns", "labels": {"a": "b"}},
        "spec": {"template": {"spec": {"containers": [{"name": "c", "image": "i"}]}}},
        "status": {"active": 1},
    }


def test_configure_installs_the_watch_only_diffbase() -> None:
    settings = kopf.OperatorSettings()
    configure(settings, "pjo")
    assert isinstance(settings.persistence.diffbase_storage, WatchOnlyDiffBase)


def test_jobs_and_pods_get_no_essence_workpools_keep_theirs() -> None:
    storage = WatchOnlyDiffBase()
    assert storage.build(body=kopf.Body(cast(kopf.RawBody, _job()))) == {}
    pod = {**_job(), "apiVersion": "v1", "kind": "Pod"}
    assert storage.build(body=kopf.Body(cast(kopf.RawBody, pod))) == {}
    workpool = {
        "apiVersion": "prefect-job-operator.dev/v1alpha1",
        "kind": "WorkPool",
        "metadata": {"name": "wp", "namespace": "ns"},
        "spec": {"poolName": "p"},
    }
    default = kopf.AnnotationsDiffBaseStorage()
    essence = storage.build(body=kopf.Body(cast(kopf.RawBody, workpool)))
    assert essence == default.build(body=kopf.Body(cast(kopf.RawBody, workpool)))
    assert essence["spec"] == {"poolName": "p"}

"""The objects the operator writes besides the rendered Job, as pure builders.

The Job's operator decorations (routing labels, bookkeeping annotations, default TTL), a
core/v1 Event and its repeat patch, and a coordination/v1 Lease: the I/O adapters
(dispatch/submit, kube/events, kube/leases) only send what these return.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from prefect_job_operator.api.labels import label_value
from prefect_job_operator.api.v1alpha1 import (
    ANNOTATION_CLAIM,
    ANNOTATION_JOB_WATCH_TIMEOUT,
    ANNOTATION_POD_WATCH_TIMEOUT,
    ANNOTATION_WORKPOOL,
    LABEL_FLOW_RUN_ID,
    LABEL_OPERATOR,
    LABEL_WORK_POOL_ID,
    LABEL_WORKPOOL,
)

MAX_EVENT_MESSAGE: Final = 1024

# ------------------------------------------------------------------------------ the Job


def routing_labels(
    instance: str, workpool: str, flow_run_id: str, pool_id: str | None
) -> dict[str, str]:
    """The labels the operator's watches and tables route by. They are applied after the
    template and the job variables and override them: a Job the operator cannot route is a
    Job it cannot see (docs/compatibility.md)."""
    labels = {
        LABEL_OPERATOR: label_value(instance),
        LABEL_WORKPOOL: label_value(workpool),
        LABEL_FLOW_RUN_ID: flow_run_id,
    }
    if pool_id:
        labels[LABEL_WORK_POOL_ID] = pool_id
    return labels


def decorate_job(
    manifest: dict[str, Any],
    *,
    routing: Mapping[str, str],
    workpool_key: str,
    claim_id: str | None,
    pod_watch_timeout: int | None,
    job_watch_timeout: int | None,
    finished_job_ttl: int | None,
) -> None:
    """Operator bookkeeping on a rendered manifest, in place: routing labels on the Job and
    its pod template, the WorkPool and claim annotations, the watch timeouts, a default TTL
    (a template's own ``ttlSecondsAfterFinished`` wins)."""
    meta = manifest.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    annotations[ANNOTATION_WORKPOOL] = workpool_key
    if claim_id:
        annotations[ANNOTATION_CLAIM] = claim_id
    if pod_watch_timeout is not None:
        annotations[ANNOTATION_POD_WATCH_TIMEOUT] = str(pod_watch_timeout)
    if job_watch_timeout is not None:
        annotations[ANNOTATION_JOB_WATCH_TIMEOUT] = str(job_watch_timeout)
    meta["labels"] = {**(meta.get("labels") or {}), **routing}
    spec = manifest.setdefault("spec", {})
    pod_meta = spec.setdefault("template", {}).setdefault("metadata", {})
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **routing}
    if finished_job_ttl is not None and spec.get("ttlSecondsAfterFinished") is None:
        spec["ttlSecondsAfterFinished"] = finished_job_ttl


# ------------------------------------------------------------------------------ Events


def event_name(involved: Mapping[str, Any], type_: str, reason: str) -> str:
    """``<object name>.<16 hex of sha256(uid, type, reason)>``: the same key, the same Event."""
    meta = involved.get("metadata") or {}
    digest = hashlib.sha256(f"{meta.get('uid')}\0{type_}\0{reason}".encode()).hexdigest()[:16]
    return f"{str(meta.get('name') or 'obj')[:200]}.{digest}"


def event_body(
    involved: Mapping[str, Any],
    *,
    name: str,
    type_: str,
    reason: str,
    message: str,
    component: str,
    now: str,
) -> dict[str, Any]:
    """A new core/v1 Event with count 1."""
    meta = involved.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": name, "namespace": ns},
        "involvedObject": {
            "apiVersion": involved.get("apiVersion"),
            "kind": involved.get("kind"),
            "name": meta.get("name"),
            "namespace": ns,
            "uid": meta.get("uid"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:MAX_EVENT_MESSAGE],
        "source": {"component": component},
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": component,
    }


def repeat_patch(count: int, message: str, now: str) -> dict[str, Any]:
    """The merge patch of an Event seen once more (what client-go's EventLogger sends)."""
    return {"count": count, "lastTimestamp": now, "message": message[:MAX_EVENT_MESSAGE]}


# ------------------------------------------------------------------------------ Leases


def lease_time(ts: datetime) -> str:
    """A Lease's MicroTime."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease_spec(
    identity: str, duration_seconds: int, now: datetime, acquired: str | None, transitions: int
) -> dict[str, Any]:
    """The spec a holder writes: renewed now, acquired now unless ``acquired`` is kept."""
    return {
        "holderIdentity": identity,
        "leaseDurationSeconds": duration_seconds,
        "acquireTime": acquired or lease_time(now),
        "renewTime": lease_time(now),
        "leaseTransitions": transitions,
    }


def new_lease(namespace: str, name: str, spec: Mapping[str, Any]) -> dict[str, Any]:
    """A coordination.k8s.io/v1 Lease to create."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name, "namespace": namespace},
        "spec": dict(spec),
    }


def takeover_spec(
    current: Mapping[str, Any], identity: str, duration_seconds: int, now: datetime
) -> dict[str, Any]:
    """The spec that renews our own lease (keeping acquireTime) or takes over another's
    (a new acquireTime, one more transition)."""
    transitions = int(current.get("leaseTransitions") or 0)
    mine = current.get("holderIdentity") == identity
    return lease_spec(
        identity,
        duration_seconds,
        now,
        current.get("acquireTime") if mine else None,
        transitions if mine else transitions + 1,
    )

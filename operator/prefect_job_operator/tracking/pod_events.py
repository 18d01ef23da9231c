"""The upstream observer's `prefect.kubernetes.pod.*` events, built from pod watch events (pure).

Same event names, ids, resource and related labels as prefect-kubernetes 0.8.0
(`observer.py:_replicate_pod_event`, `_related_resources_from_labels`), so automations
written for the kubernetes worker keep matching. The id is upstream's
`uuid5(URL, {uid, phase, restart_count, diagnosis})`: the Prefect server ignores an event
whose id it has stored, so a restart, a second replica or an upstream observer running
next to us never duplicates one. `kubernetes.diagnosis` is upstream's category
(`diagnostics.py:diagnose_k8s_pod`), which also takes part in the id.
"""

from __future__ import annotations

import json
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from slugify import slugify

from prefect_job_operator import clock
from prefect_job_operator.api.v1alpha1 import LABEL_FLOW_RUN_ID, LABEL_WORK_POOL_ID
from prefect_job_operator.rendering.contracts import DEFAULT_PREFECT_VERSION
from prefect_job_operator.tracking.diagnosis import parse_time

EVENT_PREFIX: Final = "prefect.kubernetes.pod."
FOLLOWS_WINDOW: Final = timedelta(minutes=5)
"""Upstream links an event to the pod's previous one only within 5 minutes."""
CACHE_SIZE: Final = 2000


def _container_times(
    status: Mapping[str, Any], state: str, key: str, status_keys: tuple[str, ...]
) -> list[datetime]:
    times = []
    for status_key in status_keys:
        for cs in status.get(status_key) or []:
            details = ((cs or {}).get("state") or {}).get(state) or {}
            moment = parse_time(details.get(key))
            if moment is not None:
                times.append(moment)
    return times


def phase_occurred(
    phase: str, status: Mapping[str, Any], created: datetime | None
) -> datetime | None:
    """When the pod entered `phase`, from its own timestamps (upstream's `_pod_phase_occurred`)."""
    if phase == "Pending":
        return created
    if phase == "Running":
        running = _container_times(status, "running", "startedAt", ("containerStatuses",))
        return max(running) if running else parse_time(status.get("startTime"))
    if phase in {"Succeeded", "Failed", "evicted"}:
        ended = _container_times(
            status, "terminated", "finishedAt", ("initContainerStatuses", "containerStatuses")
        )
        if ended:
            return max(ended)
    return None


def _container_statuses(status: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return [
        cs or {}
        for key in ("initContainerStatuses", "containerStatuses")
        for cs in status.get(key) or []
    ]


def _unschedulable_category(message: str) -> str:
    text = message.lower()
    if "taint" in text:
        return "Unschedulable.Taint"
    if "affinity" in text or "node selector" in text:
        return "Unschedulable.NodeAffinity"
    if "insufficient" in text:
        return "Unschedulable.InsufficientResources"
    return "Unschedulable"


def diagnosis_category(status: Mapping[str, Any]) -> str | None:
    """Upstream's `diagnose_k8s_pod(status).category`, or None for a healthy pod."""
    statuses = _container_statuses(status)
    for cs in statuses:
        reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason", "")
        if reason in ("ImagePullBackOff", "ErrImagePull"):
            return "ImagePullError"
        if reason == "CrashLoopBackOff":
            return "CrashLoopBackOff"
    for cs in statuses:
        reason = ((cs.get("state") or {}).get("terminated") or {}).get("reason", "")
        if reason in ("OOMKilled", "Evicted"):
            return str(reason)
    for condition in status.get("conditions") or []:
        if condition.get("type") == "PodScheduled" and condition.get("reason") == "Unschedulable":
            return _unschedulable_category(str(condition.get("message", "")))
    if status.get("reason") == "Evicted":
        return "Evicted"
    return None


def event_id(uid: str, phase: str, status: Mapping[str, Any]) -> str:
    """Upstream's deterministic id: one event per pod, phase, restart count and diagnosis."""
    statuses = status.get("containerStatuses") or []
    restarts = sum(int((cs or {}).get("restartCount") or 0) for cs in statuses)
    key = {
        "uid": uid,
        "phase": phase,
        "restart_count": restarts,
        "diagnosis": diagnosis_category(status),
    }
    return str(uuid.uuid5(uuid.NAMESPACE_URL, json.dumps(key, sort_keys=True)))


def related_from_labels(
    labels: Mapping[str, str], prefect_version: str = DEFAULT_PREFECT_VERSION
) -> list[dict[str, str]]:
    """Flow run, deployment, flow, work pool and worker, from the pod's Prefect labels."""
    related: list[dict[str, str]] = []

    def add(label: str, kind: str, role: str, name_label: str, **extra: str) -> None:
        value = labels.get(label)
        if value:
            entry = {
                "prefect.resource.id": f"prefect.{kind}.{value}",
                "prefect.resource.role": role,
            }
            if labels.get(name_label) is not None:
                entry["prefect.resource.name"] = labels[name_label]
            related.append({**entry, **extra})

    add(LABEL_FLOW_RUN_ID, "flow-run", "flow-run", "prefect.io/flow-run-name")
    add("prefect.io/deployment-id", "deployment", "deployment", "prefect.io/deployment-name")
    add("prefect.io/flow-id", "flow", "flow", "prefect.io/flow-name")
    add(LABEL_WORK_POOL_ID, "work-pool", "work-pool", "prefect.io/work-pool-name")
    worker = labels.get("prefect.io/worker-name")
    if worker:
        related.append(
            {
                "prefect.resource.id": f"prefect.worker.kubernetes.{slugify(worker)}",
                "prefect.resource.role": "worker",
                "prefect.resource.name": worker,
                "prefect.worker-type": "kubernetes",
                "prefect.version": prefect_version,
            }
        )
    return related


def build_pod_event(
    event_type: str | None, pod: Mapping[str, Any], prefect_version: str = DEFAULT_PREFECT_VERSION
) -> dict[str, Any] | None:
    """The event for one pod watch event, without `follows`; None if the pod has no phase."""
    meta = pod.get("metadata") or {}
    status = pod.get("status") or {}
    uid, phase = meta.get("uid"), status.get("phase")
    if not uid or not phase:
        return None
    the_id = event_id(str(uid), str(phase), status)
    resource = {
        "prefect.resource.id": f"{EVENT_PREFIX}{uid}",
        "prefect.resource.name": str(meta.get("name", "")),
        "kubernetes.namespace": str(meta.get("namespace", "")),
    }
    category = diagnosis_category(status)
    if category is not None:
        resource["kubernetes.diagnosis"] = category
    if event_type == "MODIFIED" and phase == "Failed":
        for cs in status.get("containerStatuses") or []:
            terminated = ((cs or {}).get("state") or {}).get("terminated") or {}
            if terminated.get("reason"):
                phase = "evicted"  # upstream's naming: any Failed pod with a terminated reason
                resource["kubernetes.reason"] = str(terminated["reason"])
                break
    occurred = phase_occurred(str(phase), status, parse_time(meta.get("creationTimestamp")))
    return {
        "id": the_id,
        "occurred": (occurred or clock.now()).isoformat(),
        "event": f"{EVENT_PREFIX}{str(phase).lower()}",
        "resource": resource,
        "related": related_from_labels(meta.get("labels") or {}, prefect_version),
        "payload": {},
    }


class PodEventLog:
    """Which pod events were already sent, and each pod's last one (for `follows`).

    Bounded like upstream's TTL cache; the server's id check covers what falls out.
    """

    def __init__(self, size: int = CACHE_SIZE) -> None:
        self._sent: OrderedDict[str, None] = OrderedDict()
        self._last: OrderedDict[str, tuple[str, datetime]] = OrderedDict()
        self._size = size
        self.prefect_version = DEFAULT_PREFECT_VERSION
        """The worker's ``prefect.version`` in related resources: the server's, once known."""

    def next_event(self, event_type: str | None, pod: Mapping[str, Any]) -> dict[str, Any] | None:
        """The event to send for this watch event, or None when it was sent already."""
        if event_type == "DELETED":
            return None
        event = build_pod_event(event_type, pod, self.prefect_version)
        if event is None or event["id"] in self._sent:
            return None
        uid = str((pod.get("metadata") or {}).get("uid"))
        occurred = datetime.fromisoformat(event["occurred"])
        previous = self._last.get(uid)
        if previous is not None and -FOLLOWS_WINDOW < occurred - previous[1] < FOLLOWS_WINDOW:
            event["follows"] = previous[0]
        self._remember(self._sent, event["id"], None)
        self._remember(self._last, uid, (event["id"], occurred))
        return event

    def _remember(self, cache: OrderedDict[str, Any], key: str, value: Any) -> None:
        cache[key] = value
        cache.move_to_end(key)
        while len(cache) > self._size:
            cache.popitem(last=False)

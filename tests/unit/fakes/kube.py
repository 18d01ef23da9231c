"""FakeKube: Jobs, Pods, Secrets, ConfigMaps, Leases and Events in dicts, typed as KubePort.

Every call is counted in ``calls``; ``fail[method] = exc`` makes that method raise ``exc``
until the key is removed; ``before[method]`` runs first, to play a concurrent peer.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from prefect_job_operator.kube.client import Availability, KubeError
from prefect_job_operator.kube.port import KubePort
from tests.unit.fakes.clock import iso, now

Json = dict[str, Any]


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeKube(KubePort):
    """Jobs, Pods, Secrets, ConfigMaps, Leases and Events in dicts, with API-like errors."""

    def __init__(self) -> None:
        self.jobs: dict[tuple[str, str], Json] = {}
        self.pods: dict[tuple[str, str], Json] = {}
        self.secrets: dict[tuple[str, str], Json] = {}
        self.configmaps: dict[tuple[str, str], dict[str, str]] = {}
        self.leases: dict[tuple[str, str], Json] = {}
        self.pod_logs: dict[tuple[str, str], str] = {}
        self.job_events: dict[tuple[str, str], list[Json]] = {}
        self.deleted_jobs: list[tuple[str, str, int]] = []
        self.status_patches: list[tuple[str, str, Json]] = []
        self.events: list[Json] = []
        """Every occurrence posted, as {type, reason, message} (aggregated or not)."""
        self.event_objects: dict[tuple[str, str], Json] = {}
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, BaseException] = {}
        self.before: dict[str, Callable[[], None]] = {}
        self.availability = Availability()
        self._rv = itertools.count(1)

    def _enter(self, method: str) -> None:
        """Count the call, run the test's ``before`` hook (a concurrent peer), fail if told."""
        self.calls[method] += 1
        if method in self.before:
            self.before[method]()
        if method in self.fail:
            exc = self.fail[method]
            if isinstance(exc, KubeError) and exc.transient:
                self.availability.failed(exc)
            raise exc
        self.availability.answered()

    def _stamp(self, obj: Json, namespace: str) -> Json:
        meta = obj.setdefault("metadata", {})
        meta["namespace"] = namespace
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", iso(now()))
        meta["resourceVersion"] = str(next(self._rv))
        return obj

    # Jobs
    async def create_job(self, namespace: str, body: Mapping[str, Any]) -> Json:
        self._enter("create_job")
        name = body["metadata"]["name"]
        if (namespace, name) in self.jobs:
            raise KubeError(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
        job = self._stamp(copy.deepcopy(dict(body)), namespace)
        job.setdefault("status", {})
        self.jobs[(namespace, name)] = job
        return copy.deepcopy(job)

    async def read_job(self, namespace: str, name: str) -> Json:
        self._enter("read_job")
        if (namespace, name) not in self.jobs:
            raise KubeError(404, "NotFound", f'jobs.batch "{name}" not found')
        return copy.deepcopy(self.jobs[(namespace, name)])

    async def delete_job(self, namespace: str, name: str, *, grace_seconds: int = 30) -> None:
        self._enter("delete_job")
        self.deleted_jobs.append((namespace, name, grace_seconds))
        self.jobs.pop((namespace, name), None)

    async def list_jobs(self, namespaces: Sequence[str] | None, label_selector: str) -> list[Json]:
        self._enter("list_jobs")
        return [
            copy.deepcopy(job)
            for (ns, _), job in self.jobs.items()
            if (namespaces is None or ns in namespaces)
            and _matches(job["metadata"].get("labels") or {}, label_selector)
        ]

    async def list_pods(self, namespace: str, label_selector: str) -> list[Json]:
        self._enter("list_pods")
        return [
            copy.deepcopy(pod)
            for (ns, _), pod in self.pods.items()
            if ns == namespace and _matches(pod["metadata"].get("labels") or {}, label_selector)
        ]

    async def list_job_events(self, namespace: str, job_name: str) -> list[Json]:
        self._enter("list_job_events")
        return [copy.deepcopy(e) for e in self.job_events.get((namespace, job_name), [])]

    async def pod_log_tail(self, namespace: str, pod: str, container: str, lines: int) -> str:
        self._enter("pod_log_tail")
        text = self.pod_logs.get((namespace, pod), "")
        return "\n".join(text.splitlines()[-lines:])

    # Secrets / ConfigMaps
    async def create_or_replace_secret(self, namespace: str, body: Mapping[str, Any]) -> None:
        self._enter("create_or_replace_secret")
        self.secrets[(namespace, body["metadata"]["name"])] = copy.deepcopy(dict(body))

    async def delete_secret(self, namespace: str, name: str) -> None:
        self._enter("delete_secret")
        self.secrets.pop((namespace, name), None)

    async def own_secret(self, namespace: str, name: str, owner: Mapping[str, Any]) -> None:
        self._enter("own_secret")
        meta = owner.get("metadata") or {}
        secret = self.secrets[(namespace, name)]
        secret["metadata"]["ownerReferences"] = [
            {
                "apiVersion": "batch/v1",
                "kind": "Job",
                "name": meta.get("name"),
                "uid": meta.get("uid"),
            }
        ]

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str:
        self._enter("read_secret_value")
        raise KubeError(404, "NotFound", f'secrets "{name}" not found')

    async def read_configmap_value(self, namespace: str, name: str, key: str) -> str:
        self._enter("read_configmap_value")
        data = self.configmaps.get((namespace, name))
        if data is None or key not in data:
            raise KubeError(404, "NotFound", f'configmaps "{name}" not found')
        return data[key]

    # Custom resources and Events
    async def patch_status(
        self, group: str, version: str, plural: str, namespace: str, name: str, status: Json
    ) -> None:
        self._enter("patch_status")
        self.status_patches.append((namespace, name, copy.deepcopy(status)))

    async def create_event(self, namespace: str, body: Json) -> Json:
        self._enter("create_event")
        name = body["metadata"]["name"]
        if (namespace, name) in self.event_objects:
            raise KubeError(409, "AlreadyExists", f'events "{name}" already exists')
        self.event_objects[(namespace, name)] = copy.deepcopy(body)
        self.events.append(
            {"type": body["type"], "reason": body["reason"], "message": body["message"]}
        )
        return copy.deepcopy(body)

    async def patch_event(self, namespace: str, name: str, patch: Json) -> Json:
        self._enter("patch_event")
        event = self.event_objects.get((namespace, name))
        if event is None:
            raise KubeError(404, "NotFound", f'events "{name}" not found')
        event.update(copy.deepcopy(patch))
        self.events.append(
            {"type": event["type"], "reason": event["reason"], "message": event["message"]}
        )
        return copy.deepcopy(event)

    async def read_event(self, namespace: str, name: str) -> Json | None:
        self._enter("read_event")
        event = self.event_objects.get((namespace, name))
        return copy.deepcopy(event) if event is not None else None

    # Leases (optimistic concurrency on metadata.resourceVersion, as the API server does)
    async def read_lease(self, namespace: str, name: str) -> Json | None:
        self._enter("read_lease")
        lease = self.leases.get((namespace, name))
        return copy.deepcopy(lease) if lease is not None else None

    async def create_lease(self, namespace: str, body: Mapping[str, Any]) -> Json:
        self._enter("create_lease")
        name = body["metadata"]["name"]
        if (namespace, name) in self.leases:
            raise KubeError(409, "AlreadyExists", f'leases "{name}" already exists')
        lease = self._stamp(copy.deepcopy(dict(body)), namespace)
        self.leases[(namespace, name)] = lease
        return copy.deepcopy(lease)

    async def replace_lease(self, namespace: str, name: str, body: Mapping[str, Any]) -> Json:
        self._enter("replace_lease")
        current = self.leases.get((namespace, name))
        if current is None:
            raise KubeError(404, "NotFound", f'leases "{name}" not found')
        sent = (body.get("metadata") or {}).get("resourceVersion")
        if sent != current["metadata"]["resourceVersion"]:
            raise KubeError(
                409,
                "Conflict",
                f'Operation cannot be fulfilled on leases "{name}": the object has been '
                "modified; please apply your changes to the latest version and try again",
            )
        lease = copy.deepcopy(dict(body))
        lease["metadata"]["resourceVersion"] = str(next(self._rv))
        self.leases[(namespace, name)] = lease
        return copy.deepcopy(lease)

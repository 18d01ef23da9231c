"""Kubernetes side of the harness: the subjects' identity, the audit log, and watches.

The workers under test authenticate as their own ServiceAccount (``SUBJECT_USER``), and the
apiserver audits only that user (``AUDIT_POLICY``). So every Kubernetes call a subject makes
is in the audit log, attributed exactly, and the harness's own calls (admin certificate)
never are. Open watches are read from the same log: a watch has a ``ResponseStarted`` event
when it opens and a ``ResponseComplete`` event when it closes.

The harness observes Jobs and Pods through its own watches (admin certificate, httpx) and
stamps each event with the local clock on arrival: Kubernetes timestamps have one-second
resolution, too coarse for dispatch latencies of a second or two.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import yaml
from tests.infra.cluster import LocalCluster, wait_for

SUBJECT_NAMESPACE = "pjo-bench"
SUBJECT_SA = "subject"
SUBJECT_USER = f"system:serviceaccount:{SUBJECT_NAMESPACE}:{SUBJECT_SA}"
AUDIT_POLICY = {
    "apiVersion": "audit.k8s.io/v1",
    "kind": "Policy",
    "omitStages": ["RequestReceived"],
    "rules": [
        {"level": "Metadata", "users": [SUBJECT_USER]},
        {"level": "None"},
    ],
}
FLOW_RUN_LABEL = "prefect.io/flow-run-id"


class AuditedCluster(LocalCluster):
    """LocalCluster whose apiserver writes an audit log of the subjects' requests."""

    @property
    def audit_log(self) -> Path:
        return self.workdir / "audit.log"

    def _apiserver_args(self) -> list[str]:
        policy = self.workdir / "audit-policy.yaml"
        policy.write_text(yaml.safe_dump(AUDIT_POLICY))
        return [
            *super()._apiserver_args(),
            f"--audit-policy-file={policy}",
            f"--audit-log-path={self.audit_log}",
            "--audit-log-format=json",
            "--audit-log-maxsize=0",
        ]


def subject_kubeconfig(cluster: LocalCluster, path: Path) -> Path:
    """A kubeconfig for the subjects: a cluster-admin ServiceAccount's token."""
    cluster.kubectl("create", "namespace", SUBJECT_NAMESPACE)
    wait_for(
        "ServiceAccount controller",
        lambda: cluster.get(f"/api/v1/namespaces/{SUBJECT_NAMESPACE}/serviceaccounts/default"),
        60,
    )
    cluster.kubectl("create", "serviceaccount", SUBJECT_SA, "-n", SUBJECT_NAMESPACE)
    cluster.kubectl(
        "create",
        "clusterrolebinding",
        "pjo-bench-subject",
        "--clusterrole=cluster-admin",
        f"--serviceaccount={SUBJECT_NAMESPACE}:{SUBJECT_SA}",
    )
    token = cluster.kubectl(
        "create", "token", SUBJECT_SA, "-n", SUBJECT_NAMESPACE, "--duration=48h"
    ).stdout.strip()
    admin = yaml.safe_load(cluster.kubeconfig.read_text())
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": admin["clusters"],
        "users": [{"name": SUBJECT_SA, "user": {"token": token}}],
        "contexts": [
            {
                "name": "bench",
                "context": {"cluster": admin["clusters"][0]["name"], "user": SUBJECT_SA},
            }
        ],
        "current-context": "bench",
    }
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path


def create_namespace(cluster: LocalCluster, name: str) -> None:
    cluster.kubectl("create", "namespace", name)
    wait_for(
        f"ServiceAccount {name}/default",
        lambda: cluster.get(f"/api/v1/namespaces/{name}/serviceaccounts/default"),
        60,
    )


# ------------------------------------------------------------------ audit log


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class AuditWindow:
    """The subject's Kubernetes requests in [start, end] (wall clock)."""

    requests: int
    by_verb_resource: dict[str, int]


class AuditLog:
    """Reads the audit log written by ``AuditedCluster``."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        events = []
        with self.path.open() as fh:
            for line in fh:
                with contextlib.suppress(json.JSONDecodeError):
                    events.append(json.loads(line))
        return events

    def window(self, start: float, end: float) -> AuditWindow:
        seen: dict[str, str] = {}
        for ev in self._events():
            received = _ts(ev["requestReceivedTimestamp"])
            if start <= received <= end and ev.get("stage") in (
                "ResponseStarted",
                "ResponseComplete",
            ):
                ref = ev.get("objectRef") or {}
                sub = f"/{ref['subresource']}" if ref.get("subresource") else ""
                seen[ev["auditID"]] = (
                    f"{ev['verb']} {ref.get('resource', ev.get('requestURI', '?'))}{sub}"
                )
        counts: dict[str, int] = {}
        for key in seen.values():
            counts[key] = counts.get(key, 0) + 1
        return AuditWindow(requests=len(seen), by_verb_resource=dict(sorted(counts.items())))

    def open_watches(self, at: float) -> dict[str, int]:
        """Watches of the subject user open at time ``at``, by resource."""
        opened: dict[str, str] = {}
        closed: set[str] = set()
        for ev in self._events():
            if ev.get("verb") != "watch":
                continue
            stage_at = _ts(ev["stageTimestamp"])
            if stage_at > at:
                continue
            if ev.get("stage") == "ResponseStarted":
                opened[ev["auditID"]] = (ev.get("objectRef") or {}).get("resource", "?")
            elif ev.get("stage") == "ResponseComplete":
                closed.add(ev["auditID"])
        counts: dict[str, int] = {}
        for audit_id, resource in opened.items():
            if audit_id not in closed:
                counts[resource] = counts.get(resource, 0) + 1
        return counts


# ------------------------------------------------------------------ watches


@dataclass
class Observed:
    """What the harness saw of one namespace's Jobs and Pods, by flow-run id."""

    job_seen: dict[str, float] = field(default_factory=dict)
    jobs_per_run: dict[str, set[str]] = field(default_factory=dict)
    pod_running: dict[str, float] = field(default_factory=dict)
    pod_failed: dict[str, float] = field(default_factory=dict)
    pod_finished_at: dict[str, float] = field(default_factory=dict)


class NamespaceWatch:
    """Watches Jobs (and optionally Pods) of one namespace from the harness."""

    def __init__(
        self,
        cluster: LocalCluster,
        namespace: str,
        pods: bool = False,
        on_pod_running: Callable[[str], None] | None = None,
    ) -> None:
        self.cluster = cluster
        self.namespace = namespace
        self.pods = pods
        self.on_pod_running = on_pod_running
        self.seen = Observed()
        self._tasks: list[asyncio.Task[None]] = []
        self._ready: list[asyncio.Event] = []

    def _client(self) -> httpx.AsyncClient:
        pki = self.cluster.pki
        ctx = ssl.create_default_context(cafile=str(pki.ca_crt))
        ctx.load_cert_chain(pki.client_crt("admin"), pki.client_key("admin"))
        return httpx.AsyncClient(
            base_url=self.cluster.apiserver_url,
            verify=ctx,
            timeout=httpx.Timeout(10, read=None),
            headers={"User-Agent": "pjo-bench-harness"},
        )

    async def __aenter__(self) -> NamespaceWatch:
        ns = self.namespace
        paths = [(f"/apis/batch/v1/namespaces/{ns}/jobs", self._on_job)]
        if self.pods:
            paths.append((f"/api/v1/namespaces/{ns}/pods", self._on_pod))
        for path, handler in paths:
            ready = asyncio.Event()
            self._ready.append(ready)
            self._tasks.append(asyncio.create_task(self._watch(path, handler, ready)))
        await asyncio.wait_for(asyncio.gather(*(r.wait() for r in self._ready)), 30)
        return self

    async def __aexit__(self, *exc: object) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    async def _watch(
        self, path: str, handler: Callable[[str, dict[str, Any]], None], ready: asyncio.Event
    ) -> None:
        async with self._client() as http:
            listing = (await http.get(path, params={"labelSelector": FLOW_RUN_LABEL})).json()
            for item in listing.get("items", []):
                handler("ADDED", item)
            rv = listing["metadata"]["resourceVersion"]
            ready.set()
            while True:
                params = {
                    "watch": "1",
                    "labelSelector": FLOW_RUN_LABEL,
                    "resourceVersion": rv,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "600",
                }
                try:
                    async with http.stream("GET", path, params=params) as resp:
                        async for line in resp.aiter_lines():
                            if not line:
                                continue
                            event = json.loads(line)
                            obj = event["object"]
                            if event["type"] == "ERROR":
                                raise RuntimeError(f"watch {path}: {obj}")
                            rv = obj["metadata"]["resourceVersion"]
                            if event["type"] != "BOOKMARK":
                                handler(event["type"], obj)
                except (httpx.TransportError, RuntimeError):
                    await asyncio.sleep(0.2)

    def _on_job(self, kind: str, job: dict[str, Any]) -> None:
        run_id = job["metadata"].get("labels", {}).get(FLOW_RUN_LABEL)
        if not run_id:
            return
        self.seen.job_seen.setdefault(run_id, time.time())
        self.seen.jobs_per_run.setdefault(run_id, set()).add(job["metadata"]["name"])

    def _on_pod(self, kind: str, pod: dict[str, Any]) -> None:
        run_id = pod["metadata"].get("labels", {}).get(FLOW_RUN_LABEL)
        if not run_id:
            return
        phase = (pod.get("status") or {}).get("phase")
        now = time.time()
        if phase == "Running" and run_id not in self.seen.pod_running:
            self.seen.pod_running[run_id] = now
            if self.on_pod_running is not None:
                self.on_pod_running(run_id)
        if phase == "Failed" and run_id not in self.seen.pod_failed:
            self.seen.pod_failed[run_id] = now
            for status in (pod.get("status") or {}).get("containerStatuses") or []:
                finished = ((status.get("state") or {}).get("terminated") or {}).get("finishedAt")
                if finished:
                    self.seen.pod_finished_at[run_id] = _ts(finished)

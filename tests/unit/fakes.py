"""In-memory stand-ins for the Prefect API and the Kubernetes API, for fast unit tests.

Both are injected into the pool's `Ports` (never monkeypatched) and implement the same async
methods, with the same keyword signatures, as `PrefectClient` and `Kube`. Every call is
counted in ``calls``; ``fail[method] = exc`` makes that method raise ``exc`` on every call
until the key is removed; FakeKube's ``before[method]`` runs first, to play a concurrent
peer. The JSON they hand out has the shape the real APIs return.
"""

from __future__ import annotations

import copy
import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from prefect_job_operator.api.v1alpha1 import WorkPoolSpec
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.runtime import PoolConfig, Ports
from prefect_job_operator.kube.client import Availability, Kube, KubeError
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.prefect_api.errors import (
    BlockDocumentNotFound,
    DeploymentNotFound,
    FlowNotFound,
    FlowRunNotFound,
    WorkPoolAlreadyExists,
    WorkPoolNotFound,
)
from prefect_job_operator.prefect_api.models import (
    FlowRun,
    LogRecord,
    OrchestrationResult,
    Worker,
    WorkPool,
)
from prefect_job_operator.rendering import WorkerContext
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.writeback.outcomes import Condition
from prefect_job_operator.writeback.prefect_states import StateWriter

Json = dict[str, Any]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


def iso(moment: datetime) -> str:
    """An RFC 3339 timestamp as the Kubernetes API writes it (seconds, Z)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- Kubernetes


def _matches(labels: Mapping[str, str], selector: str) -> bool:
    for term in filter(None, (t.strip() for t in selector.split(","))):
        key, _, value = term.partition("=")
        if labels.get(key) != value:
            return False
    return True


class FakeKube:
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


# --------------------------------------------------------------------------- Prefect


def state_json(
    type_: str,
    name: str | None = None,
    *,
    timestamp: datetime | None = None,
    message: str | None = None,
    flow_run_id: str | None = None,
) -> Json:
    return {
        "id": str(uuid.uuid4()),
        "type": type_,
        "name": name or type_.capitalize(),
        "timestamp": (timestamp or now()).isoformat(),
        "message": message,
        "data": None,
        "state_details": {
            "flow_run_id": flow_run_id,
            "scheduled_time": None,
            "transition_id": str(uuid.uuid4()),
            "pause_reschedule": False,
        },
    }


class FakePrefectClient:
    """Flow runs, deployments, flows and a work pool, with a minimal orchestration policy.

    Proposals follow the server's rules that the operator depends on: a forced proposal is
    accepted; PENDING is accepted from SCHEDULED, and from PENDING only with a new name other
    than "Pending"; any other PENDING proposal, and anything proposed to a terminal run, is
    ABORTed with the server's reason. ``on_propose(run_id, type, name)`` runs before each
    proposal, so a test can change a run's state "concurrently".
    """

    def __init__(self) -> None:
        self.runs: dict[str, Json] = {}
        self.deployments: dict[str, Json] = {}
        self.flows: dict[str, Json] = {}
        self.block_docs: dict[tuple[str, str], Json] = {}
        self.variables: dict[str, Any] = {}
        self.pools: dict[str, Json] = {}
        self.calls: Counter[str] = Counter()
        self.fail: dict[str, BaseException] = {}
        self.proposals: list[tuple[str, str, str | None, str | None, bool]] = []
        self.results: list[OrchestrationResult] = []
        self.label_patches: list[tuple[str, dict[str, str]]] = []
        self.emitted: list[Mapping[str, Any]] = []
        self.logs: list[LogRecord] = []
        self.heartbeats: list[tuple[str, str, float]] = []
        self.workers: list[Json] = []
        self.on_propose: Callable[[str, str, str | None], None] | None = None

    def _enter(self, method: str) -> None:
        self.calls[method] += 1
        if method in self.fail:
            raise self.fail[method]

    # ---- setup helpers
    def add_run(
        self,
        *,
        name: str = "crimson-fox",
        pool: str = "k8s",
        state: str = "SCHEDULED",
        state_name: str | None = None,
        state_time: datetime | None = None,
        deployment_id: str | None = None,
        flow_id: str | None = None,
        pid: str | None = None,
        labels: dict[str, str] | None = None,
        job_variables: dict[str, Any] | None = None,
        start_time: datetime | None = None,
    ) -> str:
        run_id = str(uuid.uuid4())
        flow_id = flow_id or self.add_flow()
        expected = (state_time or now()).isoformat()
        st = state_json(state, state_name, timestamp=state_time, flow_run_id=run_id)
        self.runs[run_id] = {
            "id": run_id,
            "created": expected,
            "updated": expected,
            "name": name,
            "flow_id": flow_id,
            "deployment_id": deployment_id,
            "deployment_version": None,
            "work_queue_id": str(uuid.uuid4()),
            "work_queue_name": "default",
            "work_pool_id": None,
            "work_pool_name": pool,
            "state_id": st["id"],
            "state_type": state,
            "state_name": st["name"],
            "state": st,
            "infrastructure_pid": pid,
            "job_variables": job_variables or {},
            "labels": labels or {},
            "tags": [],
            "parameters": {},
            "parent_task_run_id": None,
            "run_count": 0,
            "expected_start_time": expected,
            "next_scheduled_start_time": expected if state == "SCHEDULED" else None,
            "start_time": start_time.isoformat() if start_time else None,
            "end_time": None,
            "empirical_policy": {"retries": 0, "retry_delay": 0},
        }
        return run_id

    def add_flow(self, name: str = "etl") -> str:
        flow_id = str(uuid.uuid4())
        self.flows[flow_id] = {"id": flow_id, "name": name, "tags": [], "labels": {}}
        return flow_id

    def add_deployment(
        self, name: str = "nightly", flow_id: str | None = None, **job_variables: Any
    ) -> str:
        dep_id = str(uuid.uuid4())
        self.deployments[dep_id] = {
            "id": dep_id,
            "name": name,
            "flow_id": flow_id,
            "version": None,
            "job_variables": job_variables,
            "work_pool_name": "k8s",
            "updated": None,
            "tags": [],
            "labels": {},
        }
        return dep_id

    def state_of(self, run_id: str) -> tuple[str, str]:
        st = self.runs[run_id]["state"]
        return st["type"], st["name"]

    def set_state(self, run_id: str, type_: str, name: str | None = None) -> None:
        st = state_json(type_, name, flow_run_id=run_id)
        run = self.runs[run_id]
        run.update(state=st, state_id=st["id"], state_type=type_, state_name=st["name"])

    def proposed(self, run_id: str) -> list[tuple[str, str | None, str | None, bool]]:
        return [(t, n, m, f) for r, t, n, m, f in self.proposals if r == run_id]

    # ---- pools and workers
    async def read_work_pool(self, name: str) -> WorkPool:
        self._enter("read_work_pool")
        if name not in self.pools:
            raise WorkPoolNotFound(404, f'Work pool "{name}" not found.')
        return WorkPool.model_validate(self.pools[name])

    async def create_work_pool(
        self,
        name: str,
        *,
        type: str = "kubernetes",
        base_job_template: dict[str, Any] | None = None,
        description: str | None = None,
        concurrency_limit: int | None = None,
        is_paused: bool | None = None,
    ) -> WorkPool:
        self._enter("create_work_pool")
        if name in self.pools:
            raise WorkPoolAlreadyExists(409, "A work pool with this name already exists.")
        self.pools[name] = {
            "id": str(uuid.uuid4()),
            "name": name,
            "type": type,
            "base_job_template": base_job_template or {},
            "description": description,
            "concurrency_limit": concurrency_limit,
            "is_paused": bool(is_paused),
            "status": "NOT_READY",
        }
        return WorkPool.model_validate(self.pools[name])

    async def update_work_pool(self, name: str, **fields: Any) -> None:
        self._enter("update_work_pool")
        if name not in self.pools:
            raise WorkPoolNotFound(404, f'Work pool "{name}" not found.')
        self.pools[name].update(fields)

    async def heartbeat(
        self, pool: str, worker_name: str, heartbeat_interval_seconds: int | float
    ) -> None:
        self._enter("heartbeat")
        self.heartbeats.append((pool, worker_name, heartbeat_interval_seconds))

    # ---- poll, deployments, flows
    async def get_scheduled_flow_runs(
        self,
        pool: str,
        *,
        work_queue_names: Sequence[str] = (),
        scheduled_before: datetime | None,
        limit: int | None = None,
    ) -> list[FlowRun]:
        self._enter("get_scheduled_flow_runs")
        out = [
            FlowRun.model_validate(copy.deepcopy(run))
            for run in self.runs.values()
            if run["work_pool_name"] == pool
            and run["state"]["type"] == "SCHEDULED"
            and (not work_queue_names or run["work_queue_name"] in work_queue_names)
        ]
        return out[:limit] if limit is not None else out

    async def read_deployment(self, id: uuid.UUID | str) -> Json:
        self._enter("read_deployment")
        if str(id) not in self.deployments:
            raise DeploymentNotFound(404, "Deployment not found")
        return copy.deepcopy(self.deployments[str(id)])

    async def read_flow(self, id: uuid.UUID | str) -> Json:
        self._enter("read_flow")
        if str(id) not in self.flows:
            raise FlowNotFound(404, "Flow not found")
        return copy.deepcopy(self.flows[str(id)])

    # ---- flow runs
    async def read_flow_run(self, id: uuid.UUID | str) -> FlowRun:
        self._enter("read_flow_run")
        if str(id) not in self.runs:
            raise FlowRunNotFound(404, "Flow run not found")
        return FlowRun.model_validate(copy.deepcopy(self.runs[str(id)]))

    async def read_flow_runs(
        self,
        *,
        pool_name: str,
        state_types: Sequence[str] | None = None,
        state_names: Sequence[str] | None = None,
        ids: Sequence[uuid.UUID | str] | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[FlowRun]:
        self._enter("read_flow_runs")
        wanted = {str(i) for i in ids} if ids is not None else None
        out = [
            FlowRun.model_validate(copy.deepcopy(run))
            for run in self.runs.values()
            if run["work_pool_name"] == pool_name
            and (state_types is None or run["state"]["type"] in state_types)
            and (state_names is None or run["state"]["name"] in state_names)
            and (wanted is None or run["id"] in wanted)
        ]
        out.sort(key=lambda r: str(r.id), reverse=True)
        return out[offset : offset + limit]

    def _orchestrate(
        self, run: Json, type_: str, name: str, message: str | None, force: bool
    ) -> OrchestrationResult:
        current = run["state"]
        cur_type, cur_name = current["type"], current["name"]
        if force:
            verdict, reason = "ACCEPT", None
        elif cur_type in TERMINAL:
            verdict, reason = "ABORT", f"Run is already in terminal state {cur_type}."
        elif type_ == "PENDING":
            if cur_type == "SCHEDULED" or (
                cur_type == "PENDING" and name not in ("Pending", cur_name)
            ):
                verdict, reason = "ACCEPT", None
            else:
                verdict, reason = (
                    "ABORT",
                    f"This run is in a {cur_type} state and cannot transition to a PENDING state.",
                )
        else:
            verdict, reason = "ACCEPT", None
        if verdict == "ACCEPT":
            st = state_json(type_, name, message=message, flow_run_id=run["id"])
            run.update(state=st, state_id=st["id"], state_type=type_, state_name=name)
            if type_ == "RUNNING" and run["start_time"] is None:
                run["start_time"] = st["timestamp"]
            return OrchestrationResult.model_validate(
                {"status": "ACCEPT", "state": st, "details": {"type": "accept_details"}}
            )
        return OrchestrationResult.model_validate(
            {
                "status": verdict,
                "state": copy.deepcopy(current),
                "details": {"type": "abort_details", "reason": reason},
            }
        )

    async def set_flow_run_state(
        self,
        flow_run_id: uuid.UUID | str,
        *,
        type: str,
        name: str | None = None,
        message: str | None = None,
        force: bool = False,
        state_details_extra: dict[str, Any] | None = None,
    ) -> OrchestrationResult:
        self._enter("set_flow_run_state")
        run_id = str(flow_run_id)
        if run_id not in self.runs:
            raise FlowRunNotFound(404, "Flow run not found")
        name = name or type.capitalize()
        self.proposals.append((run_id, type, name, message, force))
        if self.on_propose is not None:
            self.on_propose(run_id, type, name)
        result = self._orchestrate(self.runs[run_id], type, name, message, force)
        self.results.append(result)
        return result

    async def set_infrastructure_pid(self, flow_run_id: uuid.UUID | str, pid: str) -> None:
        self._enter("set_infrastructure_pid")
        if str(flow_run_id) not in self.runs:
            raise FlowRunNotFound(404, "Flow run not found")
        self.runs[str(flow_run_id)]["infrastructure_pid"] = pid

    async def update_flow_run_labels(
        self, flow_run_id: uuid.UUID | str, labels: Mapping[str, str]
    ) -> None:
        self._enter("update_flow_run_labels")
        self.label_patches.append((str(flow_run_id), dict(labels)))
        self.runs[str(flow_run_id)]["labels"].update(labels)

    # ---- logs, events
    async def create_logs(self, logs: Sequence[LogRecord]) -> None:
        self._enter("create_logs")
        self.logs.extend(logs)

    async def emit_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        self._enter("emit_events")
        self.emitted.extend(events)

    # ---- blocks, variables
    async def read_block_document_by_name(self, block_type_slug: str, name: str) -> Json:
        self._enter("read_block_document_by_name")
        doc = self.block_docs.get((block_type_slug, name))
        if doc is None:
            raise BlockDocumentNotFound(404, "Block document not found")
        return copy.deepcopy(doc)

    async def read_block_document(self, id: uuid.UUID | str) -> Json:
        self._enter("read_block_document")
        for doc in self.block_docs.values():
            if doc.get("id") == str(id):
                return copy.deepcopy(doc)
        raise BlockDocumentNotFound(404, "Block document not found")

    async def read_variable_by_name(self, name: str) -> Any | None:
        self._enter("read_variable_by_name")
        return copy.deepcopy(self.variables.get(name))

    async def write_variable(self, name: str, value: Any, tags: Sequence[str] = ()) -> None:
        self._enter("write_variable")
        self.variables[name] = copy.deepcopy(value)

    async def read_workers(self, pool: str) -> list[Worker]:
        self._enter("read_workers")
        return [Worker.model_validate(w) for w in self.workers if w.get("pool") == pool]


# --------------------------------------------------------------------------- runtime


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
        client=cast(PrefectClient, client),
        writer=StateWriter(cast(PrefectClient, client)),
        kube=cast(Kube, kube),
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

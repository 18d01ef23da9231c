"""FakePrefectClient: runs, deployments, flows and a pool in dicts, typed as PrefectPort.

Its orchestration rules are checked against the real server by
tests/integration/test_fake_prefect_parity.py, so they cannot drift.
"""

from __future__ import annotations

import copy
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

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
from prefect_job_operator.prefect_api.port import PrefectPort
from tests.unit.fakes.clock import now

Json = dict[str, Any]

TERMINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


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


def orchestrate(
    cur_type: str, cur_name: str, type_: str, name: str, force: bool
) -> tuple[str, str | None]:
    """Prefect 3.9.1's verdict on a proposal, as far as the operator meets it: (status, reason).

    Measured against the real server by tests/integration/test_fake_prefect_parity.py.
    """
    if cur_type == "SCHEDULED" and type_ == "CANCELLING":  # even forced: straight to Cancelled
        return "REJECT", "Scheduled runs are cancelled directly."
    if force:
        return "ACCEPT", None
    if cur_type == "CANCELLING" and type_ != "CANCELLED":
        return "REJECT", "This run is cancelling; only a Cancelled state can follow."
    if type_ == "PENDING" and not (
        cur_type in ("SCHEDULED", "COMPLETED", "FAILED", "CRASHED")
        or (cur_type == "PENDING" and name not in ("Pending", cur_name))
    ):
        return "ABORT", (
            f"This run is in a {cur_type} state and cannot transition to a PENDING state."
        )
    if cur_type in TERMINAL and type_ in ("CRASHED", "CANCELLING"):
        return "ABORT", f"Run is already in terminal state {cur_type}."
    return "ACCEPT", None


class FakePrefectClient(PrefectPort):
    """Flow runs, deployments, flows and a work pool, with a minimal orchestration policy.

    Proposals follow the server's rules (``orchestrate``, checked against a real server):
    a forced proposal is accepted (but Cancelling a Scheduled run cancels it); PENDING is
    accepted from SCHEDULED, from a terminal state other than CANCELLED, and from PENDING
    only with a new name other than "Pending"; a CANCELLING run takes only CANCELLED
    (REJECT); a terminal run takes neither CRASHED nor CANCELLING (ABORT).
    ``on_propose(run_id, type, name)`` runs before each proposal, so a test can change a
    run's state "concurrently".
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
        self.version = "3.9.1"

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
    async def aclose(self) -> None:
        self._enter("aclose")

    async def delete_work_pool(self, name: str) -> None:
        self._enter("delete_work_pool")
        if self.pools.pop(name, None) is None:
            raise WorkPoolNotFound(404, f'Work pool "{name}" not found.')

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
        verdict, reason = orchestrate(current["type"], current["name"], type_, name, force)
        if verdict == "REJECT" and current["type"] == "SCHEDULED":  # Cancelling a Scheduled run
            accepted = self._accept(run, "CANCELLED", "Cancelled", message)
            return OrchestrationResult.model_validate(
                {"status": "REJECT", "state": accepted.state, "details": {"type": "reject_details"}}
            )
        if verdict == "ACCEPT":
            return self._accept(run, type_, name, message)
        return OrchestrationResult.model_validate(
            {
                "status": verdict,
                "state": copy.deepcopy(current),
                "details": {"type": f"{verdict.lower()}_details", "reason": reason},
            }
        )

    def _accept(self, run: Json, type_: str, name: str, message: str | None) -> OrchestrationResult:
        st = state_json(type_, name, message=message, flow_run_id=run["id"])
        run.update(state=st, state_id=st["id"], state_type=type_, state_name=name)
        if type_ == "RUNNING" and run["start_time"] is None:
            run["start_time"] = st["timestamp"]
        return OrchestrationResult.model_validate(
            {"status": "ACCEPT", "state": st, "details": {"type": "accept_details"}}
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

    async def server_version(self) -> str:
        self._enter("server_version")
        return self.version

    async def read_workers(self, pool: str) -> list[Worker]:
        self._enter("read_workers")
        return [Worker.model_validate(w) for w in self.workers if w.get("pool") == pool]

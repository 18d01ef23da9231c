"""The live state of one WorkPool on this replica, shared by its loops."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import anyio

from prefect_job_operator.api.job_namespaces import (
    ALL,
    NamespaceReport,
    NamespaceScope,
    Refusal,
    namespace_refusal,
)
from prefect_job_operator.api.v1alpha1 import WorkPoolSpec
from prefect_job_operator.dispatch.telemetry import Telemetry
from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.rendering import WorkerContext
from prefect_job_operator.security.job_credentials import OperatorKeyUse
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.tracking.runs import RunTable
from prefect_job_operator.writeback.prefect_states import StateWriter

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What the CR status and /healthz report; written by the loops, read by both."""

    api_reachable: bool | None = None
    api_error: str | None = None
    pool_synced: bool | None = None
    sync_reason: str | None = None
    sync_error: str | None = None
    polling_ok: bool | None = None
    poll_reason: str | None = None
    poll_error: str | None = None
    last_poll: datetime | None = None
    last_heartbeat: datetime | None = None
    leader: bool = False
    lease_holder: str | None = None
    loop_errors: dict[str, str] = field(default_factory=dict)
    """Per loop (poll, sweep, ...): its last unexpected error, until it succeeds again."""
    namespaces: NamespaceReport | None = None
    """The JobNamespaces condition (None until the first sync)."""


POLL_STALE_FACTOR = 30
"""BaseWorker's rule: a worker is healthy while its last poll is within 30 poll intervals."""


def poll_is_stale(last_poll: datetime | None, poll_interval_seconds: float, now: datetime) -> bool:
    """BaseWorker's 30-interval rule, the one place it lives. A pool that never polled is not
    stale here (its condition says Pending until the first poll)."""
    if last_poll is None:
        return False
    return (now - last_poll).total_seconds() > poll_interval_seconds * POLL_STALE_FACTOR


@dataclass
class LoopProgress:
    """When each loop of a leadership term last finished an iteration (monotonic seconds).

    Read by the liveness rule: a loop that has not finished an iteration for its interval
    plus ``PJO_LIVENESS_STALL_SECONDS`` is stuck (every call it makes has a timeout, so a
    Prefect outage only makes iterations fail quickly, never stall).
    """

    stamps: dict[str, tuple[float, float]] = field(default_factory=dict)
    """loop name -> (last progress, the loop's interval)."""

    def mark(self, name: str, interval: float, now: float) -> None:
        self.stamps[name] = (now, interval)

    def clear(self) -> None:
        self.stamps.clear()

    def stalled(self, now: float, stall_seconds: float) -> dict[str, float]:
        """Loops without progress for longer than their interval + `stall_seconds`: age."""
        return {
            name: round(now - last, 1)
            for name, (last, interval) in self.stamps.items()
            if now - last > interval + stall_seconds
        }


@dataclass
class Counters:
    submitted: int = 0
    crashed: int = 0
    cancelled: int = 0


@dataclass
class PoolRuntime:
    """Everything the loops of one WorkPool share. Built by the pool daemon."""

    namespace: str
    name: str
    uid: str
    body: dict[str, Any]
    spec: WorkPoolSpec
    generation: int
    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    client: PrefectClient
    writer: StateWriter
    worker_ctx: WorkerContext | None = None
    operator_key: OperatorKeyUse | None = None
    """Set when Jobs would get a copy of the operator-wide credentials (admin-gated)."""
    pool: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)
    table: RunTable = field(default_factory=RunTable)
    submitting: set[str] = field(default_factory=set)
    cancel_requested: set[str] = field(default_factory=set)
    cancel_seen: dict[str, datetime] = field(default_factory=dict)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    health: Health = field(default_factory=Health)
    counters: Counters = field(default_factory=Counters)
    invalid_spec: str | None = None
    seeded: bool = False
    telemetry: Telemetry | None = None
    events: EventSink | None = None
    loops: LoopProgress = field(default_factory=LoopProgress)
    followup_limiter: anyio.CapacityLimiter = field(init=False)
    """Bounds the pid/labels writes that trail the Job creates: half the submission slots,
    so bookkeeping keeps up without taking the server from the claims of a burst."""
    forbidden: dict[str, str] = field(default_factory=dict)
    """Job namespaces (or '*') the operator's RBAC refused to list → the missing permission."""
    last_recovery_sweep: float | None = None
    recovery_sweeps_deferred: int = 0

    def __post_init__(self) -> None:
        self.writer.on_outcome = self.record_outcome
        self.table.infra_pending_after = self.settings.infrastructure_pending_after_seconds
        self.followup_limiter = anyio.CapacityLimiter(
            max(2, self.spec.worker.submit_concurrency // 2)
        )

    def record_outcome(self, kind: str, reason: str) -> None:
        """Counters for the CR status and metrics, from the one place states are written."""
        if kind == "crashed":
            self.counters.crashed += 1
            self.metrics.runs_crashed.inc(*self.metric_labels, reason)
        elif kind == "cancelled":
            self.counters.cancelled += 1
            self.metrics.runs_cancelled.inc(*self.metric_labels)

    def telemetry_log(self, flow_run_id: str, level: int, message: str) -> None:
        """A worker log line on the flow run (shown in the Prefect UI), batched."""
        if self.telemetry is not None:
            self.telemetry.run_log(flow_run_id, level, message)

    async def event_k8s(self, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the WorkPool; never fails the caller."""
        if self.events is not None:
            await self.events.post(self.body, type_, reason, message)

    @property
    def key(self) -> str:
        return f"{self.namespace}/{self.name}"

    @property
    def metric_labels(self) -> tuple[str, str]:
        """The ``namespace`` and ``workpool`` labels of this pool's metric series."""
        return self.namespace, self.name

    @property
    def pool_name(self) -> str:
        return self.spec.resolved_pool_name

    @property
    def worker_name(self) -> str:
        return self.spec.resolved_worker_name

    @property
    def pool_id(self) -> str | None:
        pid = self.pool.get("id")
        return str(pid) if pid else None

    def namespace_scope(self, *, with_forbidden: bool = True) -> NamespaceScope:
        """What `api.job_namespaces.namespace_refusal` needs to judge this pool's namespaces."""
        return NamespaceScope(
            workpool_namespace=self.namespace,
            job_namespaces=tuple(self.spec.job_namespaces),
            policy=self.settings.namespace_policy,
            watched=tuple(self.settings.namespaces),
            forbidden=dict(self.forbidden) if with_forbidden else None,
            operator_key=self.operator_key,
        )

    def job_namespace_refusal(self, namespace: str) -> Refusal | None:
        """Why a Job may not go to `namespace` (the one rule); None when it may."""
        return namespace_refusal(namespace, self.namespace_scope())

    def listable_namespaces(self) -> list[str] | None:
        """`watched_namespaces` without those the operator's RBAC refused (None = anywhere)."""
        watched = self.watched_namespaces()
        if watched is None:
            return None
        return [n for n in watched if n not in self.forbidden]

    def watched_namespaces(self) -> list[str] | None:
        """Where this pool's Jobs may live and the operator can see; None = anywhere."""
        scope = self.namespace_scope(with_forbidden=False)
        if ALL in self.spec.job_namespaces:
            if not scope.watched:
                return None
            candidates: list[str] = list(scope.watched)
        else:
            candidates = list(self.spec.job_namespaces)
        return [n for n in candidates if not scope.watched or n in scope.watched]

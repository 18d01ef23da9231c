"""The pieces one WorkPool's loops share, each with one owner (ARCHITECTURE.md, "State").

`PoolConfig` is fixed; `Ports` is the outside world; `SyncedPool`, `NamespaceAccess`,
`Health`, `LoopState` are mutable state, each written by one module. The run table
(`tracking.runs`), the submitter (`dispatch.submit`) and the sweeper (`dispatch.sweep`) own the
rest; `dispatch.pool.Pool` puts them together.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect_job_operator.api import conditions as c
from prefect_job_operator.api.job_namespaces import (
    ALL,
    NamespaceReport,
    NamespaceScope,
    Refusal,
    namespace_refusal,
)
from prefect_job_operator.api.v1alpha1 import WorkPoolSpec
from prefect_job_operator.dispatch.telemetry import Telemetry
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.kube.port import KubePort
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.prefect_api.port import PrefectPort
from prefect_job_operator.rendering import WorkerContext
from prefect_job_operator.security.job_credentials import OperatorKeyUse
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.writeback.outcomes import (
    UNKNOWN,
    Condition,
    poll_is_stale,
    stale_poll,
)
from prefect_job_operator.writeback.prefect_states import StateWriter

log = logging.getLogger(__name__)


@dataclass
class Health:
    """What the CR status and /readyz report of a pool; the worker loop (dispatch/worker.py)
    writes it, the status writer and the registry read it."""

    api: Condition = UNKNOWN
    sync: Condition = UNKNOWN
    poll: Condition = UNKNOWN
    last_poll: datetime | None = None
    last_heartbeat: datetime | None = None
    leader: bool = False
    lease_holder: str | None = None
    loop_errors: dict[str, str] = field(default_factory=dict)
    """Per loop (poll, sweep, ...): its last unexpected error, until it succeeds again."""
    namespaces: NamespaceReport | None = None
    """The JobNamespaces condition (None until the first sync)."""

    def polling(self, poll_interval_seconds: float, now: datetime) -> Condition:
        """The Polling condition as reported: a standby does not poll, a failing loop and a
        stale poll (BaseWorker's rule) override what the last poll said."""
        if not self.leader:
            message = f"Another replica ({self.lease_holder}) holds this pool's Lease."
            return Condition(False, c.REASON_NOT_LEADER, message)
        if self.loop_errors:
            errors = "; ".join(self.loop_errors[k] for k in sorted(self.loop_errors))
            return Condition(False, c.REASON_LOOP_FAILED, errors[:1000])
        if self.poll.ok and poll_is_stale(self.last_poll, poll_interval_seconds, now):
            return stale_poll(poll_interval_seconds)
        return self.poll


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
class LoopState:
    """The worker loop's own bookkeeping of a pool (dispatch/worker.py writes it)."""

    seeded: bool = False
    """The existing Jobs and pods were listed once (restart safety)."""
    last_recovery_sweep: float | None = None
    recovery_sweeps_deferred: int = 0
    last_status: dict[str, Any] | None = None
    """The status this replica last wrote: conditions keep their transition times against it,
    and an unchanged status is not written again until `cr_status.STATUS_REFRESH_SECONDS`
    after `last_status_at` (None: write at once, as at the start of a term)."""
    last_status_at: datetime | None = None


@dataclass
class Counters:
    """Cumulative run counts of the CR status. ``submitted``: the submitter; ``crashed`` and
    ``cancelled``: the state writer's outcome callback (`Ports.record_outcome`)."""

    submitted: int = 0
    crashed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class PoolConfig:
    """What one generation of a WorkPool is: fixed for the life of its runtime."""

    namespace: str
    name: str
    uid: str
    body: Mapping[str, Any]
    spec: WorkPoolSpec
    generation: int
    settings: OperatorSettings
    operator_key: OperatorKeyUse | None = None
    """Set when Jobs would get a copy of the operator-wide credentials (admin-gated)."""

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


@dataclass
class SyncedPool:
    """What the last sync learned of the Prefect pool. Written by `dispatch.sync.sync_pool`
    (pool, template) and `pool_factory.bind_pool_id` (the worker context's pool id)."""

    worker_ctx: WorkerContext
    pool: dict[str, Any] = field(default_factory=dict)
    template: dict[str, Any] = field(default_factory=dict)

    @property
    def pool_id(self) -> str | None:
        pid = self.pool.get("id")
        return str(pid) if pid else None


@dataclass
class Ports:
    """The outside world of one pool: Prefect (client and state writer), Kubernetes, Events,
    metrics, and the batched worker telemetry (set by the worker loop for each term)."""

    cfg: PoolConfig
    client: PrefectPort
    writer: StateWriter
    kube: KubePort
    metrics: Metrics
    counters: Counters = field(default_factory=Counters)
    events: EventSink | None = None
    telemetry: Telemetry | None = None

    def __post_init__(self) -> None:
        self.writer.on_outcome = self.record_outcome

    @property
    def labels(self) -> tuple[str, str]:
        return self.cfg.metric_labels

    def record_outcome(self, kind: str, reason: str) -> None:
        """Counters for the CR status and metrics, from the one place states are written."""
        if kind == "crashed":
            self.counters.crashed += 1
            self.metrics.runs_crashed.inc(*self.labels, reason)
        elif kind == "cancelled":
            self.counters.cancelled += 1
            self.metrics.runs_cancelled.inc(*self.labels)

    def run_log(self, flow_run_id: str, level: int, message: str) -> None:
        """A worker log line on the flow run (shown in the Prefect UI), batched."""
        if self.telemetry is not None:
            self.telemetry.run_log(flow_run_id, level, message)

    async def event_k8s(self, type_: str, reason: str, message: str) -> None:
        """A Kubernetes Event on the WorkPool; never fails the caller."""
        if self.events is not None:
            await self.events.post(self.cfg.body, type_, reason, message)


@dataclass
class NamespaceAccess:
    """Where this pool's Jobs may go. ``forbidden`` is written by `worker.seed_table` only
    (a 403 listing a namespace); submit and sweep read it through the methods."""

    cfg: PoolConfig
    forbidden: dict[str, str] = field(default_factory=dict)
    """Job namespaces (or '*') the operator's RBAC refused to list → the missing permission."""

    def refused(self, namespace: str, message: str) -> None:
        self.forbidden[namespace] = message

    def granted(self, namespace: str) -> None:
        self.forbidden.pop(namespace, None)

    def scope(self, *, with_forbidden: bool = True) -> NamespaceScope:
        """What `api.job_namespaces.namespace_refusal` needs to judge this pool's namespaces."""
        cfg = self.cfg
        return NamespaceScope(
            workpool_namespace=cfg.namespace,
            job_namespaces=tuple(cfg.spec.job_namespaces),
            policy=cfg.settings.namespace_policy,
            watched=tuple(cfg.settings.namespaces),
            forbidden=dict(self.forbidden) if with_forbidden else None,
            operator_key=cfg.operator_key,
        )

    def refusal(self, namespace: str) -> Refusal | None:
        """Why a Job may not go to `namespace` (the one rule); None when it may."""
        return namespace_refusal(namespace, self.scope())

    def listable(self) -> list[str] | None:
        """`watched` without those the operator's RBAC refused (None = anywhere)."""
        watched = self.watched()
        if watched is None:
            return None
        return [n for n in watched if n not in self.forbidden]

    def watched(self) -> list[str] | None:
        """Where this pool's Jobs may live and the operator can see; None = anywhere."""
        scope = self.scope(with_forbidden=False)
        if ALL in self.cfg.spec.job_namespaces:
            if not scope.watched:
                return None
            candidates: list[str] = list(scope.watched)
        else:
            candidates = list(self.cfg.spec.job_namespaces)
        return [n for n in candidates if not scope.watched or n in scope.watched]

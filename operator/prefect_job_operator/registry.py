"""All WorkPools this replica runs, and the routing of Job/Pod events to them."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from prefect_job_operator.dispatch.runtime import PoolRuntime
from prefect_job_operator.dispatch.sweep import apply_actions
from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.tracking.runs import Action, RunRecord

log = logging.getLogger(__name__)

LABEL_WORK_POOL_ID = "prefect.io/work-pool-id"


@dataclass
class OperatorContext:
    """Process-wide objects, handed to kopf as its memo (``__copy__`` returns self)."""

    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    events: EventSink
    started: datetime = field(default_factory=lambda: datetime.now(UTC))
    pools: dict[str, PoolRuntime] = field(default_factory=dict)
    by_pool_id: dict[str, PoolRuntime] = field(default_factory=dict)

    def __copy__(self) -> OperatorContext:
        return self

    def register(self, rt: PoolRuntime) -> None:
        self.pools[rt.key] = rt
        if rt.pool_id:
            self.by_pool_id[rt.pool_id] = rt

    def unregister(self, rt: PoolRuntime) -> None:
        if self.pools.get(rt.key) is rt:
            del self.pools[rt.key]
        if rt.pool_id and self.by_pool_id.get(rt.pool_id) is rt:
            del self.by_pool_id[rt.pool_id]

    def _runtime_for(self, obj: Mapping[str, Any]) -> PoolRuntime | None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        pool_id = labels.get(LABEL_WORK_POOL_ID)
        return self.by_pool_id.get(pool_id) if pool_id else None

    async def on_job(self, event_type: str | None, job: Mapping[str, Any]) -> None:
        rt = self._runtime_for(job)
        if rt is not None:
            await self._act(rt, rt.table.observe_job(event_type, job))

    async def on_pod(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        rt = self._runtime_for(pod)
        if rt is not None:
            await self._act(rt, rt.table.observe_pod(event_type, pod))

    @staticmethod
    async def _act(rt: PoolRuntime, actions: list[Action]) -> None:
        if not actions:
            return
        if rt.health.leader:
            await apply_actions(rt, actions)
            return
        for action in actions:  # the leader acts; keep the facts, forget the decision
            record: RunRecord = action.record
            record.outcome_reported = False
            record.infra_pending_reported = False

    def healthy(self, now: datetime) -> tuple[bool, dict[str, Any]]:
        """BaseWorker's rule per led pool: the last poll within 30 poll intervals."""
        detail: dict[str, Any] = {}
        ok = True
        for key, rt in self.pools.items():
            if not rt.health.leader:
                detail[key] = "standby"
                continue
            last = rt.health.last_poll or self.started
            limit = rt.spec.worker.poll_interval_seconds * 30
            age = (now - last).total_seconds()
            pool_ok = age <= limit
            ok = ok and pool_ok
            detail[key] = {"ok": pool_ok, "secondsSinceLastPoll": round(age, 1)}
        return ok, detail

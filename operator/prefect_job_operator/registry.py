"""All WorkPools this replica runs, and the routing of Job/Pod events to them."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from prefect_job_operator import clock
from prefect_job_operator.api.v1alpha1 import LABEL_WORK_POOL_ID
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.sweep import apply_actions
from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.tracking.runs import Action
from prefect_job_operator.writeback.outcomes import poll_is_stale

log = logging.getLogger(__name__)


@dataclass
class OperatorContext:
    """Process-wide objects, handed to kopf as its memo (``__copy__`` returns self)."""

    settings: OperatorSettings
    kube: Kube
    metrics: Metrics
    events: EventSink
    started: datetime = field(default_factory=lambda: clock.now())
    pools: dict[str, Pool] = field(default_factory=dict)
    by_pool_id: dict[str, Pool] = field(default_factory=dict)
    loop_tick: float | None = None
    kopf_started: bool = False

    def __copy__(self) -> OperatorContext:
        return self

    def register(self, pool: Pool) -> None:
        self.pools[pool.key] = pool
        if pool.pool_id:
            self.by_pool_id[pool.pool_id] = pool

    def unregister(self, pool: Pool) -> None:
        if self.pools.get(pool.key) is pool:
            del self.pools[pool.key]
        if pool.pool_id and self.by_pool_id.get(pool.pool_id) is pool:
            del self.by_pool_id[pool.pool_id]

    def _pool_for(self, obj: Mapping[str, Any]) -> Pool | None:
        labels = (obj.get("metadata") or {}).get("labels") or {}
        pool_id = labels.get(LABEL_WORK_POOL_ID)
        return self.by_pool_id.get(pool_id) if pool_id else None

    async def on_job(self, event_type: str | None, job: Mapping[str, Any]) -> None:
        pool = self._pool_for(job)
        if pool is not None:
            await self._act(pool, pool.table.observe_job(event_type, job))

    async def on_pod(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        pool = self._pool_for(pod)
        if pool is not None:
            telemetry = pool.ports.telemetry
            if pool.health.leader and telemetry is not None:
                telemetry.pod_event(event_type, pod)
            await self._act(pool, pool.table.observe_pod(event_type, pod))

    @staticmethod
    async def _act(pool: Pool, actions: list[Action]) -> None:
        if not actions:
            return
        if pool.health.leader:
            await apply_actions(pool.sweeper, actions)
            return
        pool.table.forget_decisions(actions)  # the leader acts; keep the facts

    # ---- health ------------------------------------------------------------------------
    # Liveness is the operator's own health, never an external API's: one pool's Prefect
    # outage must not restart the process and every other pool with it. BaseWorker's
    # 30-interval rule stays per pool (the Polling condition, the pool_ready metric) and is
    # reported by /readyz for information without failing it.

    async def watchdog(self) -> None:
        """Tick every second; the tick's lag is how long the event loop was blocked."""
        while True:
            self.loop_tick = time.monotonic()
            await asyncio.sleep(1.0)

    def alive(self, now: float) -> tuple[bool, dict[str, Any]]:
        """/healthz: the event loop runs and no led pool's loop is stuck."""
        s = self.settings
        lag = now - self.loop_tick if self.loop_tick is not None else 0.0
        ok = lag <= s.liveness_loop_lag_seconds
        detail: dict[str, Any] = {"eventLoopLagSeconds": round(max(lag, 0.0), 1)}
        stuck = {}
        for key, pool in self.pools.items():
            stalled = pool.loops.stalled(now, s.liveness_stall_seconds)
            if stalled:
                stuck[key] = stalled
        if stuck:
            ok = False
            detail["stalledLoops"] = stuck
        return ok, detail

    def polls(self, now: datetime) -> dict[str, Any]:
        """BaseWorker's rule per pool (for /readyz's body): standby, ok or stale."""
        detail: dict[str, Any] = {}
        for key, pool in self.pools.items():
            if not pool.health.leader:
                detail[key] = "standby"
                continue
            interval = pool.cfg.spec.worker.poll_interval_seconds
            last = pool.health.last_poll or self.started
            stale = poll_is_stale(last, interval, now)
            age = round((now - last).total_seconds(), 1)
            detail[key] = {"ok": not stale, "secondsSinceLastPoll": age}
        return detail

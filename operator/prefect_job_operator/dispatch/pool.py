"""One WorkPool on this replica: its pieces of state, put together once, each with one owner."""

from __future__ import annotations

from dataclasses import dataclass, field

from prefect_job_operator.dispatch.runtime import (
    Health,
    LoopProgress,
    LoopState,
    NamespaceAccess,
    PoolConfig,
    Ports,
    SyncedPool,
)
from prefect_job_operator.dispatch.submit import Submitter
from prefect_job_operator.dispatch.sweep import Sweeper
from prefect_job_operator.rendering import WorkerContext
from prefect_job_operator.tracking.runs import RunTable


@dataclass
class Pool:
    """Built by `pool_factory`, run by `dispatch.worker.run_pool`, routed to by the registry.

    Only those three see the whole; every other function takes the piece it needs.
    """

    cfg: PoolConfig
    ports: Ports
    synced: SyncedPool
    access: NamespaceAccess
    table: RunTable
    submitter: Submitter
    sweeper: Sweeper
    health: Health = field(default_factory=Health)
    loops: LoopProgress = field(default_factory=LoopProgress)
    state: LoopState = field(default_factory=LoopState)

    @classmethod
    def assemble(cls, cfg: PoolConfig, ports: Ports, worker_ctx: WorkerContext) -> Pool:
        """Wire the pieces: the submitter and sweeper share the table, the synced pool and
        the namespace access with the worker loop."""
        synced = SyncedPool(worker_ctx)
        access = NamespaceAccess(cfg)
        table = RunTable(cfg.settings.infrastructure_pending_after_seconds)
        submitter = Submitter(cfg, ports, table, synced, access)
        sweeper = Sweeper(cfg, ports, table, access, submitter)
        return cls(cfg, ports, synced, access, table, submitter, sweeper)

    @property
    def key(self) -> str:
        return self.cfg.key

    @property
    def pool_id(self) -> str | None:
        return self.synced.pool_id

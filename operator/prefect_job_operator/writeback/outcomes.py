"""What a dispatch cycle found out, as plain frozen data (no I/O, no clients).

`dispatch` builds a `PoolReport` per cycle; `writeback.cr_status.status_patch` turns it into
the WorkPool's status. ``None`` in a tri-state field means "not known yet" (e.g. before the
first call to the API), which becomes condition status Unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prefect_job_operator.api.job_namespaces import NamespaceReport


@dataclass(frozen=True)
class RunCounts:
    """Flow runs of one pool on Kubernetes: current (pending, running) and cumulative."""

    pending: int = 0
    running: int = 0
    submitted: int = 0
    crashed: int = 0
    cancelled: int = 0


@dataclass(frozen=True)
class PoolReport:
    """The observations of one cycle of a pool's dispatcher (or of a failed spec parse)."""

    pool_id: str | None = None
    pool_name: str | None = None
    pool_type: str | None = None
    worker_name: str | None = None
    lease_holder: str | None = None
    pool_paused: bool | None = None
    """The Prefect pool's live ``is_paused`` (None: not read yet)."""
    pool_concurrency_limit: int | str | None = None
    """The Prefect pool's live limit, ``"Unlimited"`` for none (None: not read yet)."""
    api_reachable: bool | None = None
    api_error: str | None = None
    api_reason: str | None = None
    """Unreachable or Unauthorized when `api_reachable` is False."""
    pool_synced: bool | None = None
    sync_error: str | None = None
    sync_reason: str | None = None
    """PoolNotFound, TemplateRejected, QueueNotFound, ... when `pool_synced` is False."""
    polling_ok: bool | None = None
    poll_error: str | None = None
    poll_reason: str | None = None
    """Stale, NotLeader, QueueNotFound, ... when `polling_ok` is False."""
    last_poll_time: datetime | None = None
    last_heartbeat_time: datetime | None = None
    counts: RunCounts = field(default_factory=RunCounts)
    oldest_pending_since: datetime | None = None
    invalid_spec: str | None = None
    """Why the spec cannot be acted on (the operator does nothing else for this pool)."""
    job_namespaces: NamespaceReport | None = None
    """The JobNamespaces condition; a blocking one (no usable namespace) makes Ready False."""
    invalid_reason: str | None = None
    """Condition reason for `invalid_spec` (default InvalidSpec; e.g. APIURLNotAllowed)."""

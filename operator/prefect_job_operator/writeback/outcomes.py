"""What a dispatch cycle found out, as plain frozen data (no I/O, no clients).

`dispatch` builds a `PoolReport` per cycle; `writeback.cr_status.status_patch` turns it into
the WorkPool's status. ``None`` in a tri-state field means "not known yet" (e.g. before the
first call to the API), which becomes condition status Unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from prefect_job_operator.api import conditions as c
from prefect_job_operator.api.job_namespaces import NamespaceReport


@dataclass(frozen=True)
class Condition:
    """One observed condition of a pool, from the loop that observes it to the CR status:
    ``ok`` True/False, or None while not known yet (status Unknown); ``reason`` (CamelCase)
    and ``message`` say why when it is False."""

    ok: bool | None = None
    reason: str | None = None
    message: str | None = None


UNKNOWN = Condition()

POLL_STALE_FACTOR = 30
"""BaseWorker's rule: a worker is healthy while its last poll is within 30 poll intervals."""


def poll_is_stale(last_poll: datetime | None, poll_interval_seconds: float, now: datetime) -> bool:
    """BaseWorker's 30-interval rule, the one place it lives. A pool that never polled is not
    stale here (its condition says Pending until the first poll)."""
    if last_poll is None:
        return False
    return (now - last_poll).total_seconds() > poll_interval_seconds * POLL_STALE_FACTOR


def stale_poll(poll_interval_seconds: float) -> Condition:
    """The Polling condition of a pool whose last successful poll is too old."""
    limit = poll_interval_seconds * POLL_STALE_FACTOR
    return Condition(False, c.REASON_STALE, f"No successful poll for more than {limit}s.")


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
    api: Condition = UNKNOWN
    """APIReachable: Unreachable or Unauthorized when False."""
    sync: Condition = UNKNOWN
    """PoolSynced: PoolNotFound, TemplateRejected, PoolClaimedByOtherWorkPool, ... when False."""
    poll: Condition = UNKNOWN
    """Polling: Stale, NotLeader, QueueNotFound, ... when False."""
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

"""Condition types and reasons of a WorkPool's status (the metav1.Condition shape).

`writeback.cr_status` sets them; users and `kubectl wait --for=condition=Ready` read them.
Reasons are CamelCase constants so dashboards can match on them.
"""

from __future__ import annotations

from typing import Final

# Condition types.
READY: Final = "Ready"
"""True when the API is reachable, the pool is synced and the dispatcher polls."""
POOL_SYNCED: Final = "PoolSynced"
"""True when the Prefect work pool exists and matches the spec (template, paused, limit)."""
API_REACHABLE: Final = "APIReachable"
"""True when the last call to the Prefect API succeeded (network and credentials)."""
POLLING: Final = "Polling"
"""True when this replica holds the pool's Lease and its last poll was recent and succeeded."""

JOB_NAMESPACES: Final = "JobNamespaces"
"""True when every namespace the WorkPool's Jobs may go to is usable (api.job_namespaces):
listed, allowed by the admin's policy, watched and listable. False names each refusal."""

CONDITION_TYPES: Final = (READY, POOL_SYNCED, API_REACHABLE, POLLING, JOB_NAMESPACES)

# Reasons (CamelCase, stable: automation matches on them).
REASON_SYNCED: Final = "Synced"
REASON_READY: Final = "Ready"
REASON_NOT_READY: Final = "NotReady"
REASON_REACHABLE: Final = "Reachable"
REASON_TEMPLATE_REJECTED: Final = "TemplateRejected"
REASON_TEMPLATE_ENV_UNDECLARED: Final = "TemplateEnvUndeclared"
"""The template reads a {{ $NAME }} that spec.templateEnv does not declare."""
REASON_POOL_NOT_FOUND: Final = "PoolNotFound"
REASON_QUEUE_NOT_FOUND: Final = "QueueNotFound"
REASON_UNREACHABLE: Final = "Unreachable"
REASON_UNAUTHORIZED: Final = "Unauthorized"
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_API_URL_NOT_ALLOWED: Final = "APIURLNotAllowed"
"""spec.api.url is neither the operator-wide URL nor on the admin's allowlist: no request made."""
REASON_POLLING: Final = "Polling"
REASON_STALE: Final = "Stale"
REASON_NOT_LEADER: Final = "NotLeader"
REASON_PENDING: Final = "Pending"
"""Not evaluated yet (first reconcile still running)."""
REASON_SYNC_FAILED: Final = "SyncFailed"
REASON_POLL_FAILED: Final = "PollFailed"
REASON_KUBERNETES_UNAVAILABLE: Final = "KubernetesUnavailable"
"""Polling=False: the Kubernetes API fails (unreachable, 5xx, 429); no run is claimed."""
REASON_POOL_CLAIMED: Final = "PoolClaimedByOtherWorkPool"
"""PoolSynced=False: another live WorkPool runs the same Prefect pool; this one stands by."""
REASON_LOOP_FAILED: Final = "LoopFailed"
"""An unexpected error in one of the pool's loops; the message names it."""

STATUS_TRUE: Final = "True"
STATUS_FALSE: Final = "False"
STATUS_UNKNOWN: Final = "Unknown"

"""Turn a `PoolReport` into the WorkPool status patch (pure: no clock, no I/O).

Called by the handlers once per cycle; kopf applies the returned dict as a merge patch of
``status``. Only the Lease holder of a pool should write it, otherwise replicas that do not
poll would flip Polling back and forth.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prefect_job_operator.api import conditions as c
from prefect_job_operator.writeback.outcomes import PoolReport

MAX_MESSAGE_LENGTH = 1024
"""metav1.Condition allows 32 KiB; a screenful is what `kubectl describe` readers want."""


def rfc3339(moment: datetime) -> str:
    """A Kubernetes timestamp (UTC, seconds); naive datetimes are taken as UTC."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status_word(status: bool | str | None) -> str:
    if status is True:
        return c.STATUS_TRUE
    if status is False:
        return c.STATUS_FALSE
    if status is None:
        return c.STATUS_UNKNOWN
    if status not in (c.STATUS_TRUE, c.STATUS_FALSE, c.STATUS_UNKNOWN):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    return status


def _truncate(message: str) -> str:
    if len(message) <= MAX_MESSAGE_LENGTH:
        return message
    return message[: MAX_MESSAGE_LENGTH - 3] + "..."


def set_condition(
    conditions: Sequence[Mapping[str, Any]],
    type: str,
    status: bool | str | None,
    reason: str,
    message: str,
    now: datetime,
    observed_generation: int,
) -> list[dict[str, Any]]:
    """A copy of `conditions` with `type` set; lastTransitionTime moves only on a status change."""
    word = _status_word(status)
    result = [dict(cond) for cond in conditions]
    previous = next((cond for cond in result if cond.get("type") == type), None)
    transition = rfc3339(now)
    if (
        previous is not None
        and previous.get("status") == word
        and previous.get("lastTransitionTime")
    ):
        transition = str(previous["lastTransitionTime"])
    updated = {
        "type": type,
        "status": word,
        "reason": reason,
        "message": _truncate(message),
        "lastTransitionTime": transition,
        "observedGeneration": observed_generation,
    }
    if previous is None:
        result.append(updated)
    else:
        result[result.index(previous)] = updated
    return result


def _facet(
    ok: bool | None,
    *,
    true_reason: str,
    false_reason: str | None,
    default_false_reason: str,
    error: str | None,
    true_message: str,
) -> tuple[bool | None, str, str]:
    if ok is True:
        return True, true_reason, true_message
    if ok is False:
        return False, false_reason or default_false_reason, error or default_false_reason
    return None, c.REASON_PENDING, "Not observed yet."


def _facets(report: PoolReport) -> dict[str, tuple[bool | None, str, str]]:
    """Status, reason and message of the three observed conditions, in priority order."""
    api = _facet(
        report.api_reachable,
        true_reason=c.REASON_REACHABLE,
        false_reason=report.api_reason,
        default_false_reason=c.REASON_UNREACHABLE,
        error=report.api_error,
        true_message="The Prefect API answered.",
    )
    if report.invalid_spec is not None:
        invalid = (False, report.invalid_reason or c.REASON_INVALID_SPEC, report.invalid_spec)
        return {c.API_REACHABLE: api, c.POOL_SYNCED: invalid, c.POLLING: invalid}
    return {
        c.API_REACHABLE: api,
        c.POOL_SYNCED: _facet(
            report.pool_synced,
            true_reason=c.REASON_SYNCED,
            false_reason=report.sync_reason,
            default_false_reason=c.REASON_SYNC_FAILED,
            error=report.sync_error,
            true_message=(
                f"Work pool {report.pool_name!r} matches the spec."
                if report.pool_name
                else "The work pool matches the spec."
            ),
        ),
        c.POLLING: _facet(
            report.polling_ok,
            true_reason=c.REASON_POLLING,
            false_reason=report.poll_reason,
            default_false_reason=c.REASON_POLL_FAILED,
            error=report.poll_error,
            true_message="Polling for scheduled flow runs.",
        ),
    }


def _namespaces(report: PoolReport) -> tuple[bool | None, str, str]:
    """The JobNamespaces condition: api.job_namespaces' verdict, Unknown before the first."""
    if report.invalid_spec is not None:
        return False, report.invalid_reason or c.REASON_INVALID_SPEC, report.invalid_spec
    ns = report.job_namespaces
    if ns is None:
        return None, c.REASON_PENDING, "Not checked yet."
    return ns.ok, ns.reason, ns.message


def _ready(
    report: PoolReport, facets: Mapping[str, tuple[bool | None, str, str]]
) -> tuple[bool | None, str, str]:
    """Ready = APIReachable and PoolSynced and Polling; otherwise the first culprit explains."""
    if report.invalid_spec is not None:
        return False, report.invalid_reason or c.REASON_INVALID_SPEC, report.invalid_spec
    namespaces = report.job_namespaces
    if namespaces is not None and namespaces.blocking:
        return False, namespaces.reason, namespaces.message
    for ok, reason, message in facets.values():
        if ok is False:
            return False, reason, message
    if all(ok is True for ok, _, _ in facets.values()):
        return True, c.REASON_READY, "The work pool is synced and its flow runs are dispatched."
    return None, c.REASON_PENDING, "Waiting for the first sync and poll."


def status_patch(
    report: PoolReport,
    *,
    previous: Mapping[str, Any],
    generation: int,
    now: datetime,
) -> dict[str, Any]:
    """The merge patch of ``status`` for `report`, given the current status `previous`.

    Identity fields and timestamps that the report does not know are left out, so they keep
    their last value; ``message`` and ``oldestPendingAgeSeconds`` are cleared (None) when
    there is nothing to say.
    """
    facets = _facets(report)
    ready = _ready(report, facets)
    conds: list[dict[str, Any]] = list(previous.get("conditions") or [])
    for kind, (ok, reason, message) in [(c.READY, ready), *facets.items()]:
        conds = set_condition(conds, kind, ok, reason, message, now, generation)
    conds = set_condition(conds, c.JOB_NAMESPACES, *_namespaces(report), now, generation)
    order = {kind: index for index, kind in enumerate(c.CONDITION_TYPES)}
    conds.sort(key=lambda cond: order.get(str(cond.get("type")), len(order)))

    patch: dict[str, Any] = {"observedGeneration": generation, "conditions": conds}
    for key, value in (
        ("poolId", report.pool_id),
        ("poolName", report.pool_name),
        ("poolType", report.pool_type),
        ("workerName", report.worker_name),
        ("leaseHolder", report.lease_holder),
        ("paused", report.pool_paused),
        ("concurrencyLimit", report.pool_concurrency_limit),
    ):
        if value is not None:
            patch[key] = value
    if report.last_poll_time is not None:
        patch["lastPollTime"] = rfc3339(report.last_poll_time)
    if report.last_heartbeat_time is not None:
        patch["lastHeartbeatTime"] = rfc3339(report.last_heartbeat_time)
    counts = report.counts
    patch["counts"] = {
        "pending": counts.pending,
        "running": counts.running,
        "submitted": counts.submitted,
        "crashed": counts.crashed,
        "cancelled": counts.cancelled,
    }
    patch["oldestPendingAgeSeconds"] = (
        None
        if report.oldest_pending_since is None
        else max(0, int((_aware(now) - _aware(report.oldest_pending_since)).total_seconds()))
    )
    namespaces = _namespaces(report)
    patch["message"] = (
        _truncate(ready[2])
        if ready[0] is not True
        else _truncate(namespaces[2])
        if namespaces[0] is False
        else None
    )
    return patch


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

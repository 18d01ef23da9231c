"""Turn a `PoolReport` into the WorkPool status patch (pure: no clock, no I/O).

Called by the handlers once per cycle; kopf applies the returned dict as a merge patch of
``status``. Only the Lease holder of a pool should write it, otherwise replicas that do not
poll would flip Polling back and forth.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from prefect_job_operator.api import conditions as c
from prefect_job_operator.writeback.outcomes import Condition, PoolReport

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
    observed: Condition, *, true_reason: str, default_false_reason: str, true_message: str
) -> Condition:
    """An observed condition as the status shows it: every field filled."""
    if observed.ok is True:
        return Condition(True, true_reason, true_message)
    if observed.ok is False:
        return Condition(
            False,
            observed.reason or default_false_reason,
            observed.message or default_false_reason,
        )
    return Condition(None, c.REASON_PENDING, "Not observed yet.")


def _invalid(report: PoolReport) -> Condition | None:
    """Why the spec cannot be acted on, as a condition (None: it can)."""
    if report.invalid_spec is None:
        return None
    return Condition(False, report.invalid_reason or c.REASON_INVALID_SPEC, report.invalid_spec)


def _facets(report: PoolReport) -> dict[str, Condition]:
    """The three observed conditions, in priority order."""
    api = _facet(
        report.api,
        true_reason=c.REASON_REACHABLE,
        default_false_reason=c.REASON_UNREACHABLE,
        true_message="The Prefect API answered.",
    )
    invalid = _invalid(report)
    if invalid is not None:
        return {c.API_REACHABLE: api, c.POOL_SYNCED: invalid, c.POLLING: invalid}
    synced = (
        f"Work pool {report.pool_name!r} matches the spec."
        if report.pool_name
        else "The work pool matches the spec."
    )
    return {
        c.API_REACHABLE: api,
        c.POOL_SYNCED: _facet(
            report.sync,
            true_reason=c.REASON_SYNCED,
            default_false_reason=c.REASON_SYNC_FAILED,
            true_message=synced,
        ),
        c.POLLING: _facet(
            report.poll,
            true_reason=c.REASON_POLLING,
            default_false_reason=c.REASON_POLL_FAILED,
            true_message="Polling for scheduled flow runs.",
        ),
    }


def _namespaces(report: PoolReport) -> Condition:
    """The JobNamespaces condition: api.job_namespaces' verdict, Unknown before the first."""
    invalid = _invalid(report)
    if invalid is not None:
        return invalid
    ns = report.job_namespaces
    if ns is None:
        return Condition(None, c.REASON_PENDING, "Not checked yet.")
    return Condition(ns.ok, ns.reason, ns.message)


def _ready(report: PoolReport, facets: Mapping[str, Condition]) -> Condition:
    """Ready = APIReachable and PoolSynced and Polling; otherwise the first culprit explains."""
    invalid = _invalid(report)
    if invalid is not None:
        return invalid
    namespaces = report.job_namespaces
    if namespaces is not None and namespaces.blocking:
        return Condition(False, namespaces.reason, namespaces.message)
    for facet in facets.values():
        if facet.ok is False:
            return facet
    if all(facet.ok is True for facet in facets.values()):
        return Condition(
            True, c.REASON_READY, "The work pool is synced and its flow runs are dispatched."
        )
    return Condition(None, c.REASON_PENDING, "Waiting for the first sync and poll.")


# An unchanged status is written again this often: a status edited by hand, or written by a
# replica that lost the lease, is corrected within a minute without a write every interval.
STATUS_REFRESH_SECONDS = 60.0


def status_due(patch: Mapping[str, Any], last: Mapping[str, Any] | None, since_last: float) -> bool:
    """Whether `patch` must be written: it differs from the last one written, or that one is
    `STATUS_REFRESH_SECONDS` old (an idle pool's status otherwise costs a write every 5 s)."""
    return last is None or patch != last or since_last >= STATUS_REFRESH_SECONDS


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
    namespaces = _namespaces(report)
    conds: list[dict[str, Any]] = list(previous.get("conditions") or [])
    for kind, cond in [(c.READY, ready), *facets.items(), (c.JOB_NAMESPACES, namespaces)]:
        assert cond.reason is not None and cond.message is not None
        conds = set_condition(conds, kind, cond.ok, cond.reason, cond.message, now, generation)
    order = {kind: index for index, kind in enumerate(c.CONDITION_TYPES)}
    conds.sort(key=lambda cond: order.get(str(cond.get("type")), len(order)))
    patch: dict[str, Any] = {"observedGeneration": generation, "conditions": conds}
    patch.update(_identity(report))
    patch["counts"] = dataclasses.asdict(report.counts)
    patch["oldestPendingAgeSeconds"] = (
        None
        if report.oldest_pending_since is None
        else max(0, int((_aware(now) - _aware(report.oldest_pending_since)).total_seconds()))
    )
    explain = ready if ready.ok is not True else namespaces if namespaces.ok is False else None
    patch["message"] = _truncate(explain.message or "") if explain is not None else None
    return patch


def _identity(report: PoolReport) -> dict[str, Any]:
    """The fields the report knows (an unknown one keeps its last value) and timestamps."""
    out: dict[str, Any] = {}
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
            out[key] = value
    if report.last_poll_time is not None:
        out["lastPollTime"] = rfc3339(report.last_poll_time)
    if report.last_heartbeat_time is not None:
        out["lastHeartbeatTime"] = rfc3339(report.last_heartbeat_time)
    return out


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)

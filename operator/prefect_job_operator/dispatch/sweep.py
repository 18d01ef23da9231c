"""Carry out what the watches decided, and the periodic two-way sweep.

The sweep closes every gap a crash or a missed event can leave: cancelling runs get their
Job deleted, Pending runs with no Job are resubmitted (or adopted when the Job exists but
the pid was never written), Running runs whose Job is gone are Crashed, and Jobs of runs
that ended Cancelled or Crashed are deleted.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prefect_job_operator import clock
from prefect_job_operator.api.v1alpha1 import JOB_CONTAINER_NAME, LABEL_FLOW_RUN_ID
from prefect_job_operator.dispatch.runtime import NamespaceAccess, PoolConfig, Ports
from prefect_job_operator.dispatch.submit import Submitter, launch, write_followup
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.prefect_api.errors import DeploymentNotFound, PrefectAPIError
from prefect_job_operator.prefect_api.models import FlowRun
from prefect_job_operator.tracking.diagnosis import no_pod_reason
from prefect_job_operator.tracking.runs import (
    Action,
    Crash,
    InfrastructurePending,
    JobGone,
    RunRecord,
    RunTable,
)
from prefect_job_operator.writeback.prefect_states import FINAL_TYPES

log = logging.getLogger(__name__)

CANCEL_PENDING = (
    "Flow run cancelled by prefect-job-operator: its Job was deleted before the pod ran."
)
CANCEL_DONE = "Flow run cancelled by prefect-job-operator: its Kubernetes Job was deleted."
SKIP_CRASH = {"SCHEDULED", "PAUSED", "CANCELLING", *FINAL_TYPES}


@dataclass
class Sweeper:
    """Carries out the watches' decisions and closes the gaps they leave. It owns when each
    Cancelling run was first seen (the cancel grace); it asks the submitter about runs in
    flight and resubmits through it."""

    cfg: PoolConfig
    ports: Ports
    table: RunTable
    access: NamespaceAccess
    submitter: Submitter
    cancel_seen: dict[str, datetime] = field(default_factory=dict)


async def apply_actions(sw: Sweeper, actions: list[Action]) -> None:
    """Tell Prefect what the Job/Pod watches saw. Errors are logged, never raised."""
    for action in actions:
        try:
            if isinstance(action, InfrastructurePending):
                if action.record.flow_run_id not in sw.submitter.in_flight:
                    await sw.ports.writer.infrastructure_pending(
                        action.record.flow_run_id, "Kubernetes pod is pending."
                    )
            elif isinstance(action, Crash):
                message = await _confirmed_crash_message(sw, action)
                if message is None:
                    log.info(
                        "Job %s has a started pod the watch missed: adopted", action.record.pid
                    )
                    continue
                await _crash(sw, action.record, message, delete_job=action.delete_job)
            elif isinstance(action, JobGone):
                await _job_gone(sw, action.record)
        except (PrefectAPIError, KubeError) as exc:
            log.warning("Acting on %s failed (the sweep retries): %s", action, exc)
            sw.table.outcome_failed(action.record)


async def _confirmed_crash_message(sw: Sweeper, action: Crash) -> str | None:
    """Read the pods (and, without any, the Job's FailedCreate Events) before a crash that
    the watches alone decided: never kill a Job on the absence of events, never report a
    Job's BackoffLimitExceeded when its pod says why. None: a pod did start, keep it."""
    rec = action.record
    if not action.unconfirmed and rec.pods:
        return sw.table.confirm_crash(action, [], clock.now())  # with the pods it has seen since
    pods = await sw.ports.kube.list_pods(rec.namespace, f"job-name={rec.job_name}")
    reason = None
    if action.unconfirmed and not pods:
        try:
            reason = no_pod_reason(await sw.ports.kube.list_job_events(rec.namespace, rec.job_name))
        except KubeError as exc:
            log.info("Reading the Events of Job %s failed: %s", rec.pid, exc)
    return sw.table.confirm_crash(action, pods, clock.now(), reason)


async def _crash(sw: Sweeper, rec: RunRecord, message: str, *, delete_job: bool) -> None:
    run = await sw.ports.client.read_flow_run(rec.flow_run_id)
    state_type = run.state.type.value if run.state else None
    if run.infrastructure_pid not in (None, rec.pid):
        return  # a newer submission of this run owns it
    if delete_job:
        await sw.ports.kube.delete_job(rec.namespace, rec.job_name, grace_seconds=0)
    if state_type in SKIP_CRASH:
        return
    await _forward_crash_logs(sw, rec)
    if await sw.ports.writer.crashed(rec.flow_run_id, message):
        await sw.ports.event_k8s("Warning", "FlowRunCrashed", f"Flow run {run.name}: {message}")


MAX_CRASH_LOG_CHARS = 900_000
"""Below Prefect's default ``PREFECT_LOGGING_TO_API_MAX_LOG_SIZE`` (1,000,000)."""


async def _forward_crash_logs(sw: Sweeper, rec: RunRecord) -> None:
    """The tail of the crashed container's log, as flow-run ERROR logs (best-effort).

    ``PJO_CRASH_LOG_TAIL_LINES`` lines (upstream's default, 500); the text is cut only at
    Prefect's own log size limit, keeping the last lines.
    """
    lines = sw.cfg.settings.crash_log_tail_lines
    if lines <= 0:
        return
    for pod_name in list(rec.pods)[-1:]:
        try:
            text = await sw.ports.kube.pod_log_tail(
                rec.namespace, pod_name, JOB_CONTAINER_NAME, lines
            )
        except KubeError:
            return
        if text.strip():
            sw.ports.run_log(
                rec.flow_run_id,
                40,
                f"Last lines of pod {pod_name} before the crash:\n{text[-MAX_CRASH_LOG_CHARS:]}",
            )


async def _job_gone(sw: Sweeper, rec: RunRecord) -> None:
    run = await sw.ports.client.read_flow_run(rec.flow_run_id)
    state_type = run.state.type.value if run.state else None
    if run.infrastructure_pid not in (None, rec.pid):
        return
    if state_type == "CANCELLING":
        await sw.ports.writer.cancelled(rec.flow_run_id, CANCEL_DONE)
        return
    if state_type in SKIP_CRASH:
        return
    await sw.ports.writer.crashed(
        rec.flow_run_id, f"Kubernetes Job {rec.pid} was deleted.", reason="JobDeleted"
    )


async def sweep_cancelling(sw: Sweeper) -> None:
    """Cancelling runs: delete their Job; a pod that never ran ends Cancelled at once."""
    runs = await _all_runs(sw, "CANCELLING")
    now = clock.now()
    grace = timedelta(seconds=sw.cfg.settings.cancel_grace_seconds)
    seen = set()
    for run in runs:
        run_id = str(run.id)
        seen.add(run_id)
        if sw.submitter.request_cancel(run_id):
            continue
        rec = sw.table.get(run_id)
        if rec is None or rec.deleted:
            if run.infrastructure_pid and await _job_exists(sw, run.infrastructure_pid):
                continue  # not ours (another worker's Job); leave it alone
            await sw.ports.writer.cancelled(
                run_id, "Flow run cancelled by prefect-job-operator (no infrastructure found)."
            )
            continue
        diag = rec.diagnosis(now)
        first_seen = sw.cancel_seen.setdefault(run_id, now)
        if diag.phase == "running" and run.start_time is not None and now - first_seen < grace:
            continue  # the flow process cancels itself; delete only if it does not
        sw.table.outcome_handled(rec)
        await sw.ports.kube.delete_job(rec.namespace, rec.job_name, grace_seconds=30)
        await sw.ports.writer.cancelled(
            run_id, CANCEL_PENDING if diag.phase != "running" else CANCEL_DONE
        )
        await sw.ports.event_k8s(
            "Normal", "FlowRunCancelled", f"Flow run {run.name}: Job {rec.pid} deleted"
        )
    for run_id in list(sw.cancel_seen):
        if run_id not in seen:
            del sw.cancel_seen[run_id]


async def _all_runs(sw: Sweeper, state_type: str, page: int = 200) -> list[FlowRun]:
    """Every run of the pool in one state, paged (bounded at 25 pages per sweep)."""
    out: list[FlowRun] = []
    for offset in range(0, 25 * page, page):
        batch = await sw.ports.client.read_flow_runs(
            pool_name=sw.cfg.pool_name, state_types=[state_type], limit=page, offset=offset
        )
        out.extend(batch)
        if len(batch) < page:
            break
    return out


async def _job_exists(sw: Sweeper, pid: str) -> bool:
    ns, _, name = pid.partition(":")
    if not name:
        return False
    try:
        await sw.ports.kube.read_job(ns, name)
        return True
    except KubeError as exc:
        if exc.status == 404:
            return False
        raise


async def sweep_pending(sw: Sweeper) -> None:
    """Pending runs left behind by a crash: adopt their Job, or resubmit after the grace."""
    runs = await _all_runs(sw, "PENDING")
    now = clock.now()
    grace = timedelta(seconds=sw.cfg.spec.recovery.pending_grace_seconds)
    for run in runs:
        run_id = str(run.id)
        if run_id in sw.submitter.in_flight:
            continue
        rec = sw.table.get(run_id)
        if rec is not None and not rec.deleted:
            if sw.table.pid_needs_writing(rec, run.infrastructure_pid):
                await sw.ports.writer.record_pid(run_id, rec.pid)
                sw.table.pid_written(run_id)
                log.info("Adopted Job %s of flow run %s", rec.pid, run_id)
            continue
        since = run.state.timestamp if run.state and run.state.timestamp else None
        if since is None or now - since < grace:
            continue
        owner = (run.labels or {}).get("prefect.worker.name")
        if owner not in (None, sw.cfg.worker_name):
            continue  # claimed by another worker of this pool
        if run.infrastructure_pid:
            if await _job_exists(sw, run.infrastructure_pid):
                continue
            await sw.ports.writer.crashed(
                run_id,
                f"Kubernetes Job {run.infrastructure_pid} no longer exists.",
                reason="JobDeleted",
            )
            continue
        await _resubmit(sw, run)


async def _resubmit(sw: Sweeper, run: FlowRun) -> None:
    run_id = str(run.id)
    sw.submitter.begin(run_id)
    try:
        deployment = None
        if run.deployment_id:
            try:
                deployment = await sw.ports.client.read_deployment(str(run.deployment_id))
            except DeploymentNotFound:
                await sw.ports.writer.cancelled(
                    run_id, f"Deployment {run.deployment_id} no longer exists, cancelled run."
                )
                return
        flow = await sw.submitter.cached_flow(str(run.flow_id)) if run.flow_id else None
        existing = await _find_job(sw, run_id)
        if existing is not None:  # the table missed it (e.g. listed before it was created)
            sw.table.observe_job("ADDED", existing)
            rec = sw.table.get(run_id)
            if rec is not None:
                await sw.ports.writer.record_pid(run_id, rec.pid)
                log.info("Adopted Job %s of flow run %s", rec.pid, run_id)
            return
        claim_id = str(run.state.id) if run.state and run.state.id else None
        log.info("Resubmitting flow run %s, left Pending without a Job", run_id)
        await sw.ports.event_k8s("Normal", "FlowRunResubmitted", f"Flow run {run.name} had no Job")
        followup = await launch(
            sw.submitter, run, deployment, flow, claim_id=claim_id, resubmission=True
        )
        if followup is not None:
            await write_followup(sw.submitter, followup)
    finally:
        sw.submitter.finished(run_id)


async def _find_job(sw: Sweeper, run_id: str) -> dict[str, Any] | None:
    """The newest live Job of a run, asked of the API server (not the table)."""
    selector = f"{LABEL_FLOW_RUN_ID}={run_id}"
    jobs = [
        j
        for j in await sw.ports.kube.list_jobs(sw.access.listable(), selector)
        if not (j.get("metadata") or {}).get("deletionTimestamp")
    ]
    jobs.sort(key=lambda j: str((j.get("metadata") or {}).get("creationTimestamp") or ""))
    return jobs[-1] if jobs else None


async def sweep_running(sw: Sweeper) -> None:
    """Running runs whose Job is gone (deleted while the operator was down)."""
    runs = await _all_runs(sw, "RUNNING")
    for run in runs:
        pid = run.infrastructure_pid
        if not pid or ":" not in pid:
            continue
        rec = sw.table.get(str(run.id))
        if rec is not None and rec.pid == pid and not rec.deleted:
            continue
        if await _job_exists(sw, pid):
            continue
        await sw.ports.writer.crashed(
            str(run.id), f"Kubernetes Job {pid} was deleted.", reason="JobDeleted"
        )


async def sweep_final_with_jobs(sw: Sweeper) -> None:
    """Jobs still active although their run ended Cancelled or Crashed (e.g. the server's
    cancellation timeout): delete them."""
    now = clock.now()
    active = [
        rec
        for rec in sw.table.by_run.values()
        if not rec.deleted and rec.job is not None and not rec.diagnosis(now).job_finished
    ]
    for i in range(0, len(active), 200):
        chunk = {rec.flow_run_id: rec for rec in active[i : i + 200]}
        runs = await sw.ports.client.read_flow_runs(
            pool_name=sw.cfg.pool_name, ids=list(chunk), state_types=["CANCELLED", "CRASHED"]
        )
        for run in runs:
            rec = chunk[str(run.id)]
            if run.infrastructure_pid not in (None, rec.pid):
                continue
            sw.table.outcome_handled(rec)
            log.info("Deleting Job %s: its flow run is %s", rec.pid, run.state_type)
            await sw.ports.kube.delete_job(rec.namespace, rec.job_name, grace_seconds=30)

"""What the Job and Pod watches tell us about each flow run of one pool.

The table is fed by the operator-wide watches (one on Jobs, one on Pods) and turned into
actions by pure decisions; the pool worker carries the actions out. Only slim copies of
the objects are kept, so memory stays flat with thousands of runs.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from prefect_job_operator import clock
from prefect_job_operator.api.v1alpha1 import (
    ANNOTATION_JOB_WATCH_TIMEOUT,
    ANNOTATION_POD_WATCH_TIMEOUT,
    LABEL_FLOW_RUN_ID,
)
from prefect_job_operator.tracking.diagnosis import Diagnosis, diagnose

Json = dict[str, Any]


def _slim(obj: Mapping[str, Any], spec_keys: Iterable[str]) -> Json:
    meta = obj.get("metadata") or {}
    spec = obj.get("spec") or {}
    return {
        "metadata": {
            k: meta.get(k)
            for k in ("name", "namespace", "uid", "creationTimestamp", "deletionTimestamp")
        },
        "spec": {k: spec[k] for k in spec_keys if k in spec},
        "status": dict(obj.get("status") or {}),
    }


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value) if value not in (None, "", "None") else None
    except (TypeError, ValueError):
        return None


@dataclass
class RunRecord:
    """Everything known about the Job of one flow run."""

    flow_run_id: str
    namespace: str
    job_name: str
    job_uid: str | None = None
    job: Json | None = None
    pods: dict[str, Json] = field(default_factory=dict)
    deleted: bool = False
    created_at: datetime | None = None
    pod_watch_timeout: int | None = None
    job_watch_timeout: int | None = None
    infra_pending_reported: bool = False
    outcome_reported: bool = False
    pid_recorded: bool = False
    pid_queued: bool = False
    """The pid PATCH is waiting in the follow-up lane: the sweep must not write it too."""

    @property
    def pid(self) -> str:
        return f"{self.namespace}:{self.job_name}"

    def diagnosis(self, now: datetime) -> Diagnosis:
        return diagnose(self.job or {}, list(self.pods.values()), now)


@dataclass(frozen=True)
class Crash:
    """Propose Crashed for a run (unless it is already final, cancelling or rescheduled)."""

    record: RunRecord
    message: str
    delete_job: bool = False
    unconfirmed: bool = False
    """Decided on the absence of pod events (pod_watch_timeout): the pods are read directly
    before acting, and a pod that did start is adopted instead (``RunTable.confirm_crash``)."""


@dataclass(frozen=True)
class InfrastructurePending:
    record: RunRecord


@dataclass(frozen=True)
class JobGone:
    """The Job vanished while its run was not final: Cancelled if cancelling, else Crashed."""

    record: RunRecord


Action = Crash | InfrastructurePending | JobGone

NO_POD = "no pod was created"


def _pod_timeout_message(rec: RunRecord, why: str) -> str:
    return f"Pod did not start within {rec.pod_watch_timeout}s (pod_watch_timeout_seconds): {why}"


class RunTable:
    """Per-pool map flow-run id → RunRecord, with the decisions the watches trigger."""

    def __init__(self, infra_pending_after: float = 0.0) -> None:
        self.by_run: dict[str, RunRecord] = {}
        self.infra_pending_after = infra_pending_after
        """Report InfrastructurePending only for pods still waiting after this many seconds
        (0: at once, like the upstream observer). Pods that start quickly then cost the
        Prefect server nothing."""

    def __len__(self) -> int:
        return len(self.by_run)

    def get(self, flow_run_id: str) -> RunRecord | None:
        return self.by_run.get(flow_run_id)

    def has_live_job(self, flow_run_id: str, now: datetime | None = None) -> bool:
        """True while the run's Job exists and has not finished (a rerun must wait)."""
        rec = self.by_run.get(flow_run_id)
        if rec is None or rec.deleted or rec.job is None:
            return False
        return not rec.diagnosis(now or clock.now()).job_finished

    # ---- the protocol flags: written here only, by name (the sweep, the submitter and
    # the registry call these; tests/unit/test_run_table.py checks nobody else assigns them)

    def outcome_handled(self, rec: RunRecord) -> None:
        """The run's end was told to Prefect by someone else (the sweep): decide nothing more."""
        rec.outcome_reported = True

    def outcome_failed(self, rec: RunRecord) -> None:
        """Telling Prefect failed: the next deadline check or event decides again."""
        rec.outcome_reported = False

    def forget_decisions(self, actions: Iterable[Action]) -> None:
        """A standby keeps the facts but not the decisions: the leader acts on them."""
        for action in actions:
            action.record.outcome_reported = False
            action.record.infra_pending_reported = False

    def pid_queued(self, flow_run_id: str) -> None:
        """The pid PATCH waits in the follow-up lane: the sweep must not write it too."""
        rec = self.by_run.get(flow_run_id)
        if rec is not None:
            rec.pid_queued = True

    def pid_written(self, flow_run_id: str) -> None:
        rec = self.by_run.get(flow_run_id)
        if rec is not None:
            rec.pid_recorded, rec.pid_queued = True, False

    def pid_unqueued(self, flow_run_id: str) -> None:
        """The queued pid write failed or was cancelled: the recovery sweep writes it."""
        rec = self.by_run.get(flow_run_id)
        if rec is not None and not rec.pid_recorded:
            rec.pid_queued = False

    def pid_needs_writing(self, rec: RunRecord, current_pid: str | None) -> bool:
        """Prefect does not have this record's pid and no writer is on it."""
        return current_pid != rec.pid and not (rec.pid_recorded or rec.pid_queued)

    def new_term(self) -> None:
        """The follow-ups of the last leadership term died with it: the sweep writes pids."""
        for rec in self.by_run.values():
            rec.pid_queued = False

    def observe_job(self, event_type: str | None, job: Mapping[str, Any]) -> list[Action]:
        """Fold a Job watch event in; return what must be told to Prefect."""
        meta = job.get("metadata") or {}
        run_id = (meta.get("labels") or {}).get(LABEL_FLOW_RUN_ID)
        if not run_id:
            return []
        rec = self.by_run.get(run_id)
        if (
            rec is not None
            and rec.job_name != meta.get("name")
            and not rec.deleted
            and event_type == "DELETED"
        ):
            # A newer submission of the same run owns the record; the old Job's deletion is
            # not news.
            return []
        if rec is not None and rec.job_name != meta.get("name") and not rec.deleted:
            mine = str(meta.get("creationTimestamp") or "")
            theirs = str(((rec.job or {}).get("metadata") or {}).get("creationTimestamp") or "")
            if mine <= theirs:
                return []  # an older Job of a run that has been resubmitted since
        if rec is None or rec.job_name != meta.get("name"):
            rec = RunRecord(run_id, meta.get("namespace", ""), meta.get("name", ""))
            self.by_run[run_id] = rec
        annotations = meta.get("annotations") or {}
        rec.job_uid = meta.get("uid")
        rec.job = _slim(job, ("backoffLimit", "activeDeadlineSeconds"))
        rec.pod_watch_timeout = _int_or_none(annotations.get(ANNOTATION_POD_WATCH_TIMEOUT))
        rec.job_watch_timeout = _int_or_none(annotations.get(ANNOTATION_JOB_WATCH_TIMEOUT))
        created = meta.get("creationTimestamp")
        if created and rec.created_at is None:
            rec.created_at = datetime.fromisoformat(str(created).replace("Z", "+00:00"))
        now = clock.now()
        if event_type == "DELETED":
            rec.deleted = True
            diag = rec.diagnosis(now)
            if diag.phase == "succeeded" or rec.outcome_reported:
                return []
            rec.outcome_reported = True
            return [JobGone(rec)]
        diag = rec.diagnosis(now)
        if diag.job_failed and not rec.outcome_reported:
            rec.outcome_reported = True
            return [Crash(rec, diag.message or f"Job {rec.job_name} failed.")]
        return []

    def confirm_crash(
        self,
        action: Crash,
        pods: Iterable[Mapping[str, Any]],
        now: datetime,
        no_pod_reason: str | None = None,
    ) -> str | None:
        """The crash message once the Job's pods were read directly; None when a pod did
        start (the watch missed it: the run is healthy and stays tracked).

        A Job seen before its pods (a restart, a re-created WorkPool) is reported with the
        pod's exit code rather than the Job's BackoffLimitExceeded; a Job without any pod
        says why (``no_pod_reason``, from its FailedCreate Events).
        """
        rec = action.record
        for pod in pods:
            labels = (pod.get("metadata") or {}).get("labels") or {}
            job = labels.get("job-name") or labels.get("batch.kubernetes.io/job-name")
            if job in (None, rec.job_name):
                rec.pods[(pod.get("metadata") or {}).get("name", "")] = _slim(pod, ("nodeName",))
        diag = rec.diagnosis(now)
        if diag.job_failed:
            return diag.message or action.message
        if not action.unconfirmed:
            return action.message
        if diag.phase != "pending":
            rec.outcome_reported = False  # running (or done): the watch will tell the rest
            return None
        why = diag.message or (f"{NO_POD}: {no_pod_reason}" if no_pod_reason else NO_POD)
        return _pod_timeout_message(rec, why)

    def observe_pod(self, event_type: str | None, pod: Mapping[str, Any]) -> list[Action]:
        meta = pod.get("metadata") or {}
        run_id = (meta.get("labels") or {}).get(LABEL_FLOW_RUN_ID)
        rec = self.by_run.get(run_id) if run_id else None
        if rec is None:
            return []
        job_name = (meta.get("labels") or {}).get("job-name") or (
            (meta.get("labels") or {}).get("batch.kubernetes.io/job-name")
        )
        if job_name and job_name != rec.job_name:
            return []
        name = meta.get("name", "")
        if event_type == "DELETED":
            rec.pods.pop(name, None)
            return []
        rec.pods[name] = _slim(pod, ("nodeName",))
        phase = (pod.get("status") or {}).get("phase")
        if (
            phase == "Pending"
            and self.infra_pending_after <= 0
            and not rec.infra_pending_reported
            and not rec.outcome_reported
        ):
            rec.infra_pending_reported = True
            return [InfrastructurePending(rec)]
        diag = rec.diagnosis(clock.now())
        if diag.job_failed and not rec.outcome_reported:
            rec.outcome_reported = True
            return [Crash(rec, diag.message or f"Job {rec.job_name} failed.")]
        return []

    def check_deadlines(self, now: datetime) -> list[Action]:
        """Pods not running within pod_watch_timeout and Jobs over job_watch_timeout."""
        actions: list[Action] = []
        for rec in self.by_run.values():
            if rec.outcome_reported or rec.deleted or rec.job is None:
                continue
            diag = rec.diagnosis(now)
            if diag.job_failed:
                # a crash that could not be reported (API down) is retried here
                rec.outcome_reported = True
                actions.append(Crash(rec, diag.message or f"Job {rec.job_name} failed."))
                continue
            if diag.job_finished:
                continue
            if (
                diag.phase == "pending"
                and rec.pods
                and not rec.infra_pending_reported
                and self.infra_pending_after > 0
            ):
                since = diag.pending_since or rec.created_at
                if since is not None and (now - since).total_seconds() >= self.infra_pending_after:
                    rec.infra_pending_reported = True
                    actions.append(InfrastructurePending(rec))
            if rec.pod_watch_timeout is not None and diag.phase == "pending":
                since = diag.pending_since or rec.created_at
                if since is not None and now - since > timedelta(seconds=rec.pod_watch_timeout):
                    rec.outcome_reported = True
                    message = _pod_timeout_message(rec, diag.message or NO_POD)
                    actions.append(Crash(rec, message, delete_job=True, unconfirmed=True))
                    continue
            if (
                rec.job_watch_timeout is not None
                and rec.created_at is not None
                and now - rec.created_at > timedelta(seconds=rec.job_watch_timeout)
            ):
                rec.outcome_reported = True
                actions.append(
                    Crash(
                        rec,
                        f"Job {rec.job_name} did not finish within {rec.job_watch_timeout}s "
                        "(job_watch_timeout_seconds).",
                        delete_job=True,
                    )
                )
        return actions

    def forget_finished(self, now: datetime, keep_seconds: float = 600) -> None:
        """Drop records of Jobs that are gone or long finished, so the table stays small."""
        stale = [
            run_id
            for run_id, rec in self.by_run.items()
            if rec.deleted
            or (
                rec.outcome_reported
                and rec.created_at is not None
                and (now - rec.created_at).total_seconds() > keep_seconds
            )
        ]
        for run_id in stale:
            del self.by_run[run_id]

    def counts(self, now: datetime) -> tuple[int, int, datetime | None]:
        """(pending, running, oldest pending since) over live Jobs."""
        pending = running = 0
        oldest: datetime | None = None
        for rec in self.by_run.values():
            if rec.deleted or rec.job is None:
                continue
            diag = rec.diagnosis(now)
            if diag.job_finished:
                continue
            if diag.phase == "running":
                running += 1
            else:
                pending += 1
                since = diag.pending_since or rec.created_at
                if since is not None and (oldest is None or since < oldest):
                    oldest = since
        return pending, running, oldest

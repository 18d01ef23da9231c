"""Classify a flow run's Job and Pods (Kubernetes JSON) into what Prefect should hear (pure).

`tracking` calls `diagnose` on every Job/Pod event of a run; the result decides whether the
run is InfrastructurePending, Running or Crashed and gives the Crashed state its message.
Inputs are the dicts the API or a watch returns (camelCase keys); missing fields are normal
(a fresh Job has no status; kwok-driven pods have no node events) and never raise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final, Literal

from prefect_job_operator.api.v1alpha1 import JOB_CONTAINER_NAME

Phase = Literal["pending", "running", "succeeded", "failed", "unknown"]

JOB_CONTAINER: Final = JOB_CONTAINER_NAME
DEFAULT_BACKOFF_LIMIT: Final = 6
"""batch/v1 Job's default spec.backoffLimit."""

WAITING_ERRORS: Final = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "ErrImageNeverPull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
        "CrashLoopBackOff",
        "RunContainerError",
    }
)
"""Waiting reasons that will not fix themselves; benign ones are ContainerCreating etc."""

_EXIT_CODE_EXPLANATIONS: Final[Mapping[int, str]] = {
    0: "The process exited cleanly.",
    -9: "The process was killed by SIGKILL, usually for exceeding its memory or by a cancellation.",
    -15: "The process was stopped by SIGTERM, usually a graceful shutdown or a cancellation.",
    1: "The process exited with a general error; look for an unhandled exception in the flow "
    "run logs.",
    125: "The container failed to run; check that the image exists and the container runtime "
    "is healthy.",
    126: "The command was found but is not executable (permission denied); check the "
    "entrypoint's file permissions.",
    127: "The command was not found; check the entrypoint and the image's PATH.",
    137: "The process was killed (SIGKILL), likely because it ran out of memory; raise the "
    "memory limit in the job template.",
    143: "The process received SIGTERM from the container runtime (cancellation, eviction or "
    "a scaling event).",
    247: "The process was terminated for high memory usage; raise the memory limit.",
}
UNKNOWN_EXIT_CODE_EXPLANATION: Final = (
    "The process exited with an unexpected status code; check the flow run and pod logs."
)


def exit_code_explanation(code: int) -> str:
    """A one-sentence explanation of an exit code (the codes Prefect's workers explain)."""
    return _EXIT_CODE_EXPLANATIONS.get(code, UNKNOWN_EXIT_CODE_EXPLANATION)


def has_exit_code_explanation(code: int) -> bool:
    """Whether `exit_code_explanation` knows more than the generic text for `code`."""
    return code in _EXIT_CODE_EXPLANATIONS


@dataclass(frozen=True)
class Diagnosis:
    """What the Job and its Pods say about a flow run's infrastructure."""

    phase: Phase
    job_finished: bool
    job_failed: bool
    reason: str | None = None
    exit_code: int | None = None
    message: str | None = None
    pending_since: datetime | None = None
    pod_waiting_reason: str | None = None
    pod_name: str | None = None


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 timestamp from the API as an aware datetime; None if absent or bad."""
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _get(obj: Any, *keys: str) -> Any:
    for key in keys:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(key)
    return obj


def _true_condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    for cond in _get(obj, "status", "conditions") or []:
        if isinstance(cond, Mapping) and cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _int(value: Any, default: int) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else default


def _created(obj: Mapping[str, Any]) -> datetime:
    return parse_time(_get(obj, "metadata", "creationTimestamp")) or datetime.min.replace(
        tzinfo=UTC
    )


def _container_statuses(pod: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """Init containers first (they block the main one), then the job container first."""
    status = pod.get("status") or {}
    init = [s for s in status.get("initContainerStatuses") or [] if isinstance(s, Mapping)]
    main = [s for s in status.get("containerStatuses") or [] if isinstance(s, Mapping)]
    main.sort(key=lambda s: s.get("name") != JOB_CONTAINER)
    return init + main


def _terminated(pod: Mapping[str, Any]) -> tuple[str, Mapping[str, Any]] | None:
    """(container name, terminated state) of the job container, else of any failed one."""
    found = []
    for status in _container_statuses(pod):
        for state_key in ("state", "lastState"):
            term = _get(status, state_key, "terminated")
            if isinstance(term, Mapping):
                found.append((str(status.get("name") or "?"), term))
                break
    for name, term in found:
        if name == JOB_CONTAINER:
            return name, term
    for name, term in found:
        if _int(term.get("exitCode"), 0) != 0:
            return name, term
    return found[0] if found else None


def _waiting(pod: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(container, reason, message) of the first waiting container."""
    for status in _container_statuses(pod):
        waiting = _get(status, "state", "waiting")
        if isinstance(waiting, Mapping) and waiting.get("reason"):
            return (
                str(status.get("name") or "?"),
                str(waiting["reason"]),
                str(waiting.get("message") or ""),
            )
    return None


def _count_phase(pods: Sequence[Mapping[str, Any]], phase: str) -> int:
    return sum(1 for pod in pods if _get(pod, "status", "phase") == phase)


def _unschedulable(pod: Mapping[str, Any]) -> str | None:
    for cond in _get(pod, "status", "conditions") or []:
        if (
            isinstance(cond, Mapping)
            and cond.get("type") == "PodScheduled"
            and cond.get("status") == "False"
            and cond.get("reason") == "Unschedulable"
        ):
            return str(cond.get("message") or "no node fits the pod")
    return None


@dataclass(frozen=True)
class _PodFacts:
    reason: str | None
    exit_code: int | None
    message: str | None


def _failed_pod_facts(pod: Mapping[str, Any]) -> _PodFacts:
    """Why a Failed pod failed, in words for the Crashed state."""
    status = pod.get("status") or {}
    if status.get("reason") == "Evicted":
        detail = str(status.get("message") or "no reason given")
        return _PodFacts("Evicted", None, f"Pod was evicted: {detail}")
    terminated = _terminated(pod)
    if terminated is not None:
        container, term = terminated
        code = _int(term.get("exitCode"), -1) if "exitCode" in term else None
        reason = str(term.get("reason") or "Error")
        if reason == "OOMKilled":
            shown = code if code is not None else 137
            return _PodFacts(
                "OOMKilled",
                code,
                f"Container {container} was OOMKilled (exit code {shown}). Raise its memory "
                "limit (job variable memory_limit).",
            )
        return _PodFacts(reason, code, None)
    if status.get("reason"):
        detail = str(status.get("message") or "")
        return _PodFacts(str(status["reason"]), None, f"Pod failed: {status['reason']} {detail}")
    return _PodFacts(None, None, None)


def _exit_message(job_name: str, container: str, code: int, reason: str) -> str:
    text = f"Job {job_name} failed: container {container} exited with code {code} ({reason})."
    if has_exit_code_explanation(code):
        text += " " + exit_code_explanation(code)
    return text


def _diagnose_failure(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], job_name: str
) -> Diagnosis:
    failed_cond = _true_condition(job, "Failed") or _true_condition(job, "FailureTarget")
    job_reason = str(failed_cond.get("reason") or "") if failed_cond else ""
    job_detail = str(failed_cond.get("message") or "") if failed_cond else ""
    failed_pods = [p for p in pods if _get(p, "status", "phase") == "Failed"]
    pod = failed_pods[-1] if failed_pods else (pods[-1] if pods else None)
    pod_name = _get(pod, "metadata", "name") if pod else None

    if job_reason == "DeadlineExceeded":
        text = f"Job {job_name} failed: DeadlineExceeded"
        text += f" ({job_detail})." if job_detail else "."
        waiting = _waiting(pod) if pod else None
        if waiting is not None:
            text += f" Container {waiting[0]} was still waiting: {waiting[1]}"
            text += f": {waiting[2]}" if waiting[2] else ""
            text += "."
        return Diagnosis("failed", True, True, "DeadlineExceeded", None, text, None, None, pod_name)

    facts = _failed_pod_facts(pod) if pod is not None else _PodFacts(None, None, None)
    if facts.message is None and facts.exit_code is not None:
        terminated = _terminated(pod) if pod is not None else None
        container = terminated[0] if terminated else JOB_CONTAINER
        message = _exit_message(job_name, container, facts.exit_code, facts.reason or "Error")
        return Diagnosis(
            "failed", True, True, facts.reason, facts.exit_code, message, None, None, pod_name
        )
    if facts.message is not None:
        return Diagnosis(
            "failed", True, True, facts.reason, facts.exit_code, facts.message, None, None, pod_name
        )
    reason = job_reason or "BackoffLimitExceeded"
    text = f"Job {job_name} failed: {reason}"
    text += f" ({job_detail})." if job_detail else "."
    return Diagnosis("failed", True, True, reason, None, text, None, None, pod_name)


def _diagnose_between_pods(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime
) -> Diagnosis:
    """An active Job without a live pod (``pods`` oldest first).

    A Succeeded pod the Job controller has not counted yet (it batches pod updates, for a
    second or more under load) means the pod did start: the run is still running, never
    "no pod yet" (that window once got a healthy Job killed at pod_watch_timeout). After a
    Failed pod, the retry is waited for since that pod finished; with no pod at all, since
    the Job began.
    """
    succeeded = [p for p in pods if _get(p, "status", "phase") == "Succeeded"]
    if succeeded:
        return Diagnosis("running", False, False, pod_name=_get(succeeded[-1], "metadata", "name"))
    since = parse_time(_get(job, "metadata", "creationTimestamp"))
    for pod in pods:
        term = _terminated(pod)
        finished = parse_time(term[1].get("finishedAt")) if term is not None else None
        finished = finished or parse_time(_get(pod, "metadata", "creationTimestamp"))
        if finished is not None and (since is None or finished > since):
            since = finished
    return Diagnosis("pending", False, False, pending_since=since or now)


def _diagnose_active(
    job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime
) -> Diagnosis:
    live = [p for p in pods if _get(p, "status", "phase") not in ("Failed", "Succeeded")]
    if any(_get(p, "status", "phase") == "Running" for p in live):
        pod = next(p for p in reversed(live) if _get(p, "status", "phase") == "Running")
        return Diagnosis("running", False, False, pod_name=_get(pod, "metadata", "name"))
    if live and all(_get(p, "status", "phase") == "Unknown" for p in live):
        pod = live[-1]
        return Diagnosis(
            "unknown",
            False,
            False,
            reason="PodPhaseUnknown",
            message="The pod's node stopped reporting its state.",
            pod_name=_get(pod, "metadata", "name"),
        )
    if not live:
        return _diagnose_between_pods(job, pods, now)
    return _diagnose_pending_pod(live[-1], now)


def _diagnose_pending_pod(pod: Mapping[str, Any], now: datetime) -> Diagnosis:
    """The newest live pod, neither running nor lost: why it waits, and since when."""
    pod_name = _get(pod, "metadata", "name")
    since = parse_time(_get(pod, "metadata", "creationTimestamp")) or now
    unschedulable = _unschedulable(pod)
    if unschedulable is not None:
        return Diagnosis(
            "pending",
            False,
            False,
            reason="Unschedulable",
            message=f"Pod is unschedulable: {unschedulable}",
            pending_since=since,
            pod_waiting_reason="Unschedulable",
            pod_name=pod_name,
        )
    waiting = _waiting(pod)
    if waiting is None:
        return Diagnosis("pending", False, False, pending_since=since, pod_name=pod_name)
    container, reason, detail = waiting
    if reason not in WAITING_ERRORS:
        return Diagnosis(
            "pending",
            False,
            False,
            pending_since=since,
            pod_waiting_reason=reason,
            pod_name=pod_name,
        )
    message = f"Container {container} is waiting: {reason}" + (f": {detail}" if detail else ".")
    return Diagnosis(
        "pending",
        False,
        False,
        reason=reason,
        message=message,
        pending_since=since,
        pod_waiting_reason=reason,
        pod_name=pod_name,
    )


def diagnose(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]], now: datetime) -> Diagnosis:
    """Classify a Job and its Pods.

    Args:
        job: the batch/v1 Job as JSON.
        pods: its Pods as JSON (any order; the newest decides the live state).
        now: the current time, used when nothing records when waiting began.
    """
    job_name = str(_get(job, "metadata", "name") or "?")
    ordered = sorted(pods, key=_created)
    status = job.get("status") or {}
    backoff_limit = _int(_get(job, "spec", "backoffLimit"), DEFAULT_BACKOFF_LIMIT)
    failed = (
        _true_condition(job, "Failed") is not None
        or _true_condition(job, "FailureTarget") is not None
        # The pod can report Failed before the Job controller counts it.
        or max(_int(status.get("failed"), 0), _count_phase(ordered, "Failed")) > backoff_limit
    )
    if failed:
        return _diagnose_failure(job, ordered, job_name)
    succeeded = (
        _true_condition(job, "Complete") is not None
        or _true_condition(job, "SuccessCriteriaMet") is not None
    )
    if succeeded:
        done = [p for p in ordered if _get(p, "status", "phase") == "Succeeded"]
        code = None
        if done:
            terminated = _terminated(done[-1])
            if terminated is not None and "exitCode" in terminated[1]:
                code = _int(terminated[1]["exitCode"], 0)
        pod_name = _get(done[-1], "metadata", "name") if done else None
        return Diagnosis("succeeded", True, False, exit_code=code, pod_name=pod_name)
    return _diagnose_active(job, ordered, now)


def no_pod_reason(events: Sequence[Mapping[str, Any]]) -> str | None:
    """Why a Job has no pod, from its Events: the newest FailedCreate (a missing service
    account, a quota, pod-level validation, an admission webhook), e.g.
    ``FailedCreate: Error creating: pods "x-" is forbidden: ... serviceaccount "sa" not found``.
    """
    failed = [e for e in events if e.get("reason") == "FailedCreate"]
    if not failed:
        return None
    newest = max(
        failed,
        key=lambda e: str(
            e.get("lastTimestamp") or e.get("eventTime") or _get(e, "metadata", "creationTimestamp")
        ),
    )
    return f"FailedCreate: {newest.get('message') or ''}".strip()

"""Job + Pods (Kubernetes JSON, written by hand after real and kwok-driven objects) → Diagnosis."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from prefect_job_operator.tracking.diagnosis import (
    UNKNOWN_EXIT_CODE_EXPLANATION,
    Diagnosis,
    diagnose,
    exit_code_explanation,
    has_exit_code_explanation,
    parse_time,
)

NOW = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
CREATED = "2026-11-28T11:58:00Z"
POD_CREATED = "2026-11-28T11:58:01Z"
JOB = "my-flow-run-abcde12345"


def job(
    *, conditions: list[dict[str, Any]] | None = None, backoff: int | None = 0, **status: Any
) -> dict[str, Any]:
    spec: dict[str, Any] = {"completions": 1, "parallelism": 1, "template": {"spec": {}}}
    if backoff is not None:
        spec["backoffLimit"] = backoff
    body: dict[str, Any] = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": JOB,
            "namespace": "default",
            "creationTimestamp": CREATED,
            "labels": {"prefect.io/flow-run-id": "0b5c"},
        },
        "spec": spec,
    }
    if conditions is not None or status:
        body["status"] = {**status, **({"conditions": conditions} if conditions else {})}
    return body


def cond(kind: str, reason: str = "", message: str = "", status: str = "True") -> dict[str, Any]:
    return {
        "type": kind,
        "status": status,
        "reason": reason,
        "message": message,
        "lastProbeTime": "2026-11-28T11:59:00Z",
        "lastTransitionTime": "2026-11-28T11:59:00Z",
    }


def pod(
    phase: str,
    *,
    name: str = f"{JOB}-x7k2p",
    created: str = POD_CREATED,
    containers: list[dict[str, Any]] | None = None,
    init: list[dict[str, Any]] | None = None,
    conditions: list[dict[str, Any]] | None = None,
    **status: Any,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "namespace": "default",
            "creationTimestamp": created,
            "ownerReferences": [{"kind": "Job", "name": JOB, "controller": True}],
        },
        "spec": {"restartPolicy": "Never", "containers": [{"name": "prefect-job"}]},
        "status": {"phase": phase, "qosClass": "BestEffort", **status},
    }
    if containers is not None:
        body["status"]["containerStatuses"] = containers
    if init is not None:
        body["status"]["initContainerStatuses"] = init
    if conditions is not None:
        body["status"]["conditions"] = conditions
    return body


def container(name: str = "prefect-job", **state: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": "prefecthq/prefect:3.9.1-python3.11",
        "imageID": "",
        "ready": "running" in state,
        "restartCount": 0,
        "started": "running" in state,
        "state": state,
    }


def terminated(code: int, reason: str = "Error", message: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {
        "exitCode": code,
        "reason": reason,
        "startedAt": "2026-11-28T11:58:05Z",
        "finishedAt": "2026-11-28T11:59:00Z",
    }
    if message:
        out["message"] = message
    return out


RUNNING_STATE: dict[str, Any] = {"running": {"startedAt": "2026-11-28T11:58:05Z"}}
KWOK_RUNNING = pod(
    "Running",
    containers=[container(**RUNNING_STATE)],
    conditions=[cond("Initialized"), cond("Ready"), cond("ContainersReady"), cond("PodScheduled")],
    hostIP="10.0.0.1",
    podIP="10.0.0.2",
    startTime="2026-11-28T11:58:02Z",
)
UNSCHEDULABLE_MSG = (
    "0/2 nodes are available: 2 Insufficient memory. preemption: 0/2 nodes are available: "
    "2 No preemption victims found for incoming pod."
)
PULL_MSG = 'Back-off pulling image "ghcr.io/acme/flows:nope"'
CONFIG_MSG = 'secret "prefect-api-key" not found'
EVICT_MSG = "The node was low on resource: memory."


CASES = [
    pytest.param(
        job(),
        [],
        Diagnosis("pending", False, False, pending_since=parse_time(CREATED)),
        id="fresh-job-no-status-no-pod",
    ),
    pytest.param(
        job(active=1),
        [pod("Pending")],
        Diagnosis(
            "pending",
            False,
            False,
            pending_since=parse_time(POD_CREATED),
            pod_name=f"{JOB}-x7k2p",
        ),
        id="pod-pending-no-detail",
    ),
    pytest.param(
        job(active=1),
        [pod("Pending", containers=[container(waiting={"reason": "ContainerCreating"})])],
        Diagnosis(
            "pending",
            False,
            False,
            pending_since=parse_time(POD_CREATED),
            pod_waiting_reason="ContainerCreating",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="container-creating-is-benign",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                conditions=[cond("PodScheduled", "Unschedulable", UNSCHEDULABLE_MSG, "False")],
            )
        ],
        Diagnosis(
            "pending",
            False,
            False,
            reason="Unschedulable",
            message=f"Pod is unschedulable: {UNSCHEDULABLE_MSG}",
            pending_since=parse_time(POD_CREATED),
            pod_waiting_reason="Unschedulable",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="unschedulable",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                containers=[container(waiting={"reason": "ImagePullBackOff", "message": PULL_MSG})],
            )
        ],
        Diagnosis(
            "pending",
            False,
            False,
            reason="ImagePullBackOff",
            message=f"Container prefect-job is waiting: ImagePullBackOff: {PULL_MSG}",
            pending_since=parse_time(POD_CREATED),
            pod_waiting_reason="ImagePullBackOff",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="image-pull-backoff",
    ),
    pytest.param(
        job(active=1),
        [pod("Pending", containers=[container(waiting={"reason": "ErrImagePull"})])],
        Diagnosis(
            "pending",
            False,
            False,
            reason="ErrImagePull",
            message="Container prefect-job is waiting: ErrImagePull.",
            pending_since=parse_time(POD_CREATED),
            pod_waiting_reason="ErrImagePull",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="err-image-pull-without-message",
    ),
    pytest.param(
        job(active=1),
        [
            pod(
                "Pending",
                init=[
                    container(
                        "fetch-code",
                        waiting={"reason": "CreateContainerConfigError", "message": CONFIG_MSG},
                    )
                ],
                containers=[container(waiting={"reason": "PodInitializing"})],
            )
        ],
        Diagnosis(
            "pending",
            False,
            False,
            reason="CreateContainerConfigError",
            message=f"Container fetch-code is waiting: CreateContainerConfigError: {CONFIG_MSG}",
            pending_since=parse_time(POD_CREATED),
            pod_waiting_reason="CreateContainerConfigError",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="init-container-config-error",
    ),
    pytest.param(
        job(active=1, ready=1, startTime="2026-11-28T11:58:00Z"),
        [KWOK_RUNNING],
        Diagnosis("running", False, False, pod_name=f"{JOB}-x7k2p"),
        id="kwok-running",
    ),
    pytest.param(
        job(active=1),
        [pod("Unknown")],
        Diagnosis(
            "unknown",
            False,
            False,
            reason="PodPhaseUnknown",
            message="The pod's node stopped reporting its state.",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="pod-phase-unknown",
    ),
    pytest.param(
        job(
            succeeded=1,
            conditions=[cond("SuccessCriteriaMet", "CompletionsReached"), cond("Complete")],
        ),
        [pod("Succeeded", containers=[container(terminated=terminated(0, "Completed"))])],
        Diagnosis("succeeded", True, False, exit_code=0, pod_name=f"{JOB}-x7k2p"),
        id="kwok-succeeded",
    ),
    pytest.param(
        job(
            failed=1,
            conditions=[
                cond("FailureTarget", "BackoffLimitExceeded", "Job has reached the backoff"),
                cond("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff"),
            ],
        ),
        [pod("Failed", containers=[container(terminated=terminated(3))])],
        Diagnosis(
            "failed",
            True,
            True,
            reason="Error",
            exit_code=3,
            message=f"Job {JOB} failed: container prefect-job exited with code 3 (Error).",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="exit-code-3",
    ),
    pytest.param(
        job(failed=1),
        [pod("Failed", containers=[container(terminated=terminated(1))])],
        Diagnosis(
            "failed",
            True,
            True,
            reason="Error",
            exit_code=1,
            message=f"Job {JOB} failed: container prefect-job exited with code 1 (Error). "
            + exit_code_explanation(1),
            pod_name=f"{JOB}-x7k2p",
        ),
        id="failed-count-over-backoff-before-condition",
    ),
    pytest.param(
        job(active=0),
        [pod("Failed", containers=[container(terminated=terminated(127))])],
        Diagnosis(
            "failed",
            True,
            True,
            reason="Error",
            exit_code=127,
            message=f"Job {JOB} failed: container prefect-job exited with code 127 (Error). "
            + exit_code_explanation(127),
            pod_name=f"{JOB}-x7k2p",
        ),
        id="pod-failed-before-job-counted-it",
    ),
    pytest.param(
        job(conditions=[cond("Failed", "BackoffLimitExceeded", "reached")], failed=1),
        [
            pod(
                "Failed",
                containers=[
                    container("istio-proxy", terminated=terminated(0, "Completed")),
                    container(terminated=terminated(137, "OOMKilled")),
                ],
            )
        ],
        Diagnosis(
            "failed",
            True,
            True,
            reason="OOMKilled",
            exit_code=137,
            message="Container prefect-job was OOMKilled (exit code 137). Raise its memory limit "
            "(job variable memory_limit).",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="oom-killed-with-sidecar",
    ),
    pytest.param(
        job(conditions=[cond("Failed", "BackoffLimitExceeded", "reached")], failed=1),
        [
            pod(
                "Failed",
                containers=[container(terminated=terminated(137))],
                conditions=[cond("DisruptionTarget", "TerminationByKubelet", EVICT_MSG)],
                reason="Evicted",
                message=EVICT_MSG,
            )
        ],
        Diagnosis(
            "failed",
            True,
            True,
            reason="Evicted",
            message=f"Pod was evicted: {EVICT_MSG}",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="kwok-evicted",
    ),
    pytest.param(
        job(
            conditions=[
                cond("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
            ],
        ),
        [
            pod(
                "Failed",
                containers=[container(waiting={"reason": "ImagePullBackOff", "message": PULL_MSG})],
            )
        ],
        Diagnosis(
            "failed",
            True,
            True,
            reason="DeadlineExceeded",
            message=f"Job {JOB} failed: DeadlineExceeded (Job was active longer than specified "
            f"deadline). Container prefect-job was still waiting: ImagePullBackOff: {PULL_MSG}.",
            pod_name=f"{JOB}-x7k2p",
        ),
        id="deadline-while-pulling",
    ),
    pytest.param(
        job(conditions=[cond("Failed", "BackoffLimitExceeded", "Job has reached the backoff")]),
        [],
        Diagnosis(
            "failed",
            True,
            True,
            reason="BackoffLimitExceeded",
            message=f"Job {JOB} failed: BackoffLimitExceeded (Job has reached the backoff).",
        ),
        id="failed-pods-already-gone",
    ),
    pytest.param(
        job(backoff=2, failed=1, active=1),
        [
            pod(
                "Failed",
                name="old",
                created="2026-11-28T11:58:01Z",
                containers=[container(terminated=terminated(1))],
            ),
            pod("Pending", name="retry", created="2026-11-28T11:59:30Z"),
        ],
        Diagnosis(
            "pending",
            False,
            False,
            pending_since=parse_time("2026-11-28T11:59:30Z"),
            pod_name="retry",
        ),
        id="retry-within-backoff-is-pending",
    ),
    pytest.param(
        job(active=1),
        [pod("Succeeded", containers=[container(terminated=terminated(0, "Completed"))])],
        Diagnosis("running", False, False, pod_name=f"{JOB}-x7k2p"),
        id="succeeded-pod-not-yet-counted-by-the-job-controller-is-running",
    ),
    pytest.param(
        job(backoff=2, failed=1),
        [pod("Failed", containers=[container(terminated=terminated(1))])],
        Diagnosis("pending", False, False, pending_since=parse_time("2026-11-28T11:59:00Z")),
        id="retry-not-created-yet-waits-since-the-failed-pod-finished",
    ),
    pytest.param(
        job(backoff=None, failed=6),
        [],
        Diagnosis("pending", False, False, pending_since=parse_time(CREATED)),
        id="default-backoff-is-six",
    ),
    pytest.param(
        job(backoff=None, failed=7),
        [],
        Diagnosis(
            "failed",
            True,
            True,
            reason="BackoffLimitExceeded",
            message=f"Job {JOB} failed: BackoffLimitExceeded.",
        ),
        id="over-default-backoff",
    ),
]


@pytest.mark.parametrize(("job_body", "pods", "expected"), CASES)
def test_diagnose(
    job_body: dict[str, Any], pods: list[dict[str, Any]], expected: Diagnosis
) -> None:
    assert diagnose(job_body, pods, NOW) == expected


def test_pod_order_does_not_matter() -> None:
    old = pod("Failed", name="old", created="2026-11-28T11:58:01Z")
    new = pod("Running", name="new", created="2026-11-28T11:59:00Z")
    assert diagnose(job(backoff=3, failed=1), [new, old], NOW).pod_name == "new"
    assert diagnose(job(backoff=3, failed=1), [old, new], NOW).pod_name == "new"


def test_garbage_never_raises() -> None:
    weird: dict[str, Any] = {"metadata": None, "spec": {"backoffLimit": "x"}, "status": []}
    result = diagnose(weird, [{"status": {"containerStatuses": [None, {"state": None}]}}], NOW)
    assert result.phase == "pending"
    assert diagnose({}, [], NOW).pending_since == NOW


@pytest.mark.parametrize("code", [-9, -15, 0, 1, 125, 126, 127, 137, 143, 247])
def test_known_exit_codes_are_explained(code: int) -> None:
    assert has_exit_code_explanation(code)
    assert exit_code_explanation(code) != UNKNOWN_EXIT_CODE_EXPLANATION


def test_unknown_exit_code_gets_the_generic_text() -> None:
    assert not has_exit_code_explanation(3)
    assert exit_code_explanation(3) == UNKNOWN_EXIT_CODE_EXPLANATION
    assert "memory" in exit_code_explanation(137)


def test_parse_time() -> None:
    assert parse_time("2026-11-28T11:58:00Z") == datetime(2026, 11, 28, 11, 58, tzinfo=UTC)
    assert parse_time("nope") is None and parse_time(None) is None
    assert parse_time(datetime(2026, 1, 1)) == datetime(2026, 1, 1, tzinfo=UTC)
    assert parse_time("2026-11-28T11:58:00.123456+02:00") == datetime(
        2026, 11, 28, 9, 58, 0, 123456, tzinfo=UTC
    )

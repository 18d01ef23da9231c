"""Infrastructure faults never crash a run: classification, retry, the claim gate."""

from __future__ import annotations

import anyio
import pytest

from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.submit import is_infrastructure_fault, poll_once
from prefect_job_operator.dispatch.worker import kubernetes_available
from prefect_job_operator.kube.client import Availability, KubeError, classify_status
from prefect_job_operator.prefect_api.errors import (
    APIUnreachable,
    PrefectAPIError,
    ValidationFailed,
)
from tests.unit.fakes import FakeKube, make_runtime

API = {"api": {"url": "http://prefect-server:4200/api"}}
UNREACHABLE = KubeError(0, "Unreachable", "Kubernetes API unreachable: ClientConnectorError()")


@pytest.mark.parametrize(
    ("status", "fault"),
    [
        (0, "infrastructure"),  # connection refused/reset, TLS, timeout
        (401, "infrastructure"),  # the operator's own token, never the run's fault
        (408, "infrastructure"),
        (429, "infrastructure"),  # throttled (API priority and fairness)
        (500, "infrastructure"),
        (502, "infrastructure"),
        (503, "infrastructure"),  # etcd down, apiserver shutting down
        (504, "infrastructure"),
        (400, "request"),  # a malformed manifest
        (403, "request"),  # forbidden in that namespace
        (404, "request"),  # the namespace does not exist
        (409, "request"),
        (410, "request"),
        (422, "request"),  # invalid Job (label value, container spec...)
    ],
)
def test_classify_status(status: int, fault: str) -> None:
    assert classify_status(status) == fault
    assert KubeError(status, "R", "m").transient is (fault == "infrastructure")


@pytest.mark.parametrize(
    ("exc", "infrastructure"),
    [
        (UNREACHABLE, True),
        (KubeError(503, "ServiceUnavailable", "etcdserver: request timed out"), True),
        (KubeError(429, "TooManyRequests", "slow down"), True),
        (KubeError(422, "Invalid", "metadata.labels: Invalid value"), False),
        (KubeError(403, "Forbidden", "jobs.batch is forbidden"), False),
        (APIUnreachable(None, "connection refused"), True),
        (PrefectAPIError(503, "Service Unavailable"), True),
        (PrefectAPIError(None, "read timeout"), True),
        (ValidationFailed(422, "bad"), False),
        (PrefectAPIError(404, "not found"), False),
        (ValueError("render"), False),
    ],
)
def test_is_infrastructure_fault(exc: BaseException, infrastructure: bool) -> None:
    assert is_infrastructure_fault(exc) is infrastructure


def test_availability_opens_on_a_fault_and_closes_on_any_answer() -> None:
    a = Availability()
    assert a.ok
    a.failed(UNREACHABLE)
    assert not a.ok and a.last_error is not None and "unreachable" in a.last_error
    first = a.outage_since
    a.failed(KubeError(503, "x", "y"))
    assert a.outage_since == first  # the outage started at the first fault
    a.answered()
    assert a.ok and a.last_error is None


async def poll(rt: Pool) -> int | None:
    limiter = anyio.CapacityLimiter(rt.cfg.spec.worker.submit_concurrency)
    async with anyio.create_task_group() as tg:
        started = await poll_once(rt.submitter, tg, limiter)
    return started


async def test_create_retried_through_a_short_outage_gives_one_job() -> None:
    rt, client, kube = make_runtime(spec=API)
    rt.cfg.settings.submit_retry_seconds = 10
    run_id = client.add_run(deployment_id=client.add_deployment())
    fails = iter([UNREACHABLE, KubeError(503, "ServiceUnavailable", "etcd")])

    def flaky() -> None:
        exc = next(fails, None)
        kube.fail.pop("create_job", None)
        if exc is not None:
            kube.fail["create_job"] = exc

    kube.before["create_job"] = flaky
    with anyio.fail_after(10):
        assert await poll(rt) == 1
    assert kube.calls["create_job"] == 3
    assert len(kube.jobs) == 1
    assert client.state_of(run_id) == ("PENDING", "Pending")
    assert client.runs[run_id]["infrastructure_pid"]


async def test_create_that_landed_before_the_connection_broke_is_adopted() -> None:
    rt, client, kube = make_runtime(spec=API)
    rt.cfg.settings.submit_retry_seconds = 10
    run_id = client.add_run(deployment_id=client.add_deployment())
    real_create = kube.create_job
    attempts = []

    async def lost_response(namespace: str, body: dict) -> dict:  # type: ignore[type-arg]
        attempts.append(body["metadata"]["name"])
        job = await real_create(namespace, body)
        if len(attempts) == 1:
            raise UNREACHABLE  # the Job exists, the answer never arrived
        return job

    kube.create_job = lost_response  # type: ignore[method-assign,assignment]
    with anyio.fail_after(10):
        await poll(rt)
    assert len(attempts) == 2 and attempts[0] == attempts[1]  # the same deterministic name
    assert len(kube.jobs) == 1
    assert client.state_of(run_id) == ("PENDING", "Pending")


async def test_an_outage_longer_than_the_retry_leaves_the_run_pending_not_crashed() -> None:
    rt, client, kube = make_runtime(spec=API)
    rt.cfg.settings.submit_retry_seconds = 0.6
    events: list[tuple[str, str, str]] = []

    async def event(type_: str, reason: str, message: str) -> None:
        events.append((type_, reason, message))

    rt.ports.event_k8s = event  # type: ignore[method-assign]
    run_id = client.add_run(deployment_id=client.add_deployment())
    kube.fail["create_job"] = UNREACHABLE
    with anyio.fail_after(10):
        await poll(rt)
    assert kube.calls["create_job"] >= 2  # retried
    assert client.state_of(run_id) == ("PENDING", "Pending")  # claimed, never Crashed
    assert not [p for p in client.proposed(run_id) if p[0] == "CRASHED"]
    assert rt.ports.counters.crashed == 0
    assert any(r == "SubmissionDeferred" for _, r, _ in events)


@pytest.mark.parametrize("status", [422, 400, 403])
async def test_a_request_fault_still_crashes_its_run_at_once(status: int) -> None:
    rt, client, kube = make_runtime(spec=API)
    run_id = client.add_run(deployment_id=client.add_deployment())
    kube.fail["create_job"] = KubeError(status, "Invalid", "spec.template: Invalid value")
    await poll(rt)
    assert kube.calls["create_job"] == 1
    assert client.state_of(run_id)[0] == "CRASHED"
    assert "Invalid value" in client.runs[run_id]["state"]["message"]


async def test_no_run_is_claimed_while_the_kubernetes_api_fails() -> None:
    rt, client, kube = make_runtime(spec=API)
    run_id = client.add_run(deployment_id=client.add_deployment())
    kube.fail["read_lease"] = UNREACHABLE
    kube.availability.failed(UNREACHABLE)  # a failed call opened the outage

    assert await kubernetes_available(rt) is False  # the probe failed too
    assert rt.health.poll.ok is False
    assert rt.health.poll.reason == "KubernetesUnavailable"
    assert rt.health.poll.message is not None and "unreachable" in rt.health.poll.message
    assert client.proposed(run_id) == []

    del kube.fail["read_lease"]
    assert await kubernetes_available(rt) is True  # any answer reopens the gate
    assert await poll(rt) == 1
    assert client.state_of(run_id) == ("PENDING", "Pending")


async def test_runs_waiting_for_a_slot_are_not_claimed_once_the_gate_closes() -> None:
    rt, client, kube = make_runtime(spec={**API, "worker": {"submitConcurrency": 1}})
    rt.cfg.settings.submit_retry_seconds = 0
    runs = [client.add_run(deployment_id=client.add_deployment()) for _ in range(3)]
    kube.fail["create_job"] = UNREACHABLE
    await poll(rt)
    claimed = [r for r in runs if client.proposed(r)]
    assert len(claimed) == 1  # the first run hit the outage; the others stay Scheduled
    assert all(client.state_of(r)[0] == "SCHEDULED" for r in runs if r not in claimed)
    assert rt.ports.counters.crashed == 0


def test_fake_kube_feeds_availability() -> None:
    assert isinstance(FakeKube().availability, Availability)


async def test_an_unexpected_error_in_a_pool_loop_shows_on_its_conditions() -> None:
    """A loop that fails on every tick (e.g. a date overflow) must not stall the pool
    silently: the Polling condition names the loop and the error, until it succeeds."""
    from datetime import UTC, datetime

    from prefect_job_operator.dispatch.worker import _every, report
    from prefect_job_operator.writeback.cr_status import status_patch

    rt, _, _ = make_runtime(spec=API)
    broken = [True]

    async def failing() -> None:
        if broken[0]:
            raise OverflowError("date value out of range")

    with anyio.move_on_after(0.15):
        await _every(0.05, failing, "sweep", health=rt.health)
    rep = report(rt)
    assert rep.poll.ok is False and rep.poll.reason == "LoopFailed"
    assert rep.poll.message == "The sweep loop failed: OverflowError: date value out of range"
    patch = status_patch(rep, previous={}, generation=1, now=datetime.now(UTC))
    ready = next(x for x in patch["conditions"] if x["type"] == "Ready")
    assert ready["status"] == "False"
    assert "OverflowError" in ready["message"] or "OverflowError" in (patch.get("message") or "")

    broken[0] = False
    with anyio.move_on_after(0.12):
        await _every(0.05, failing, "sweep", health=rt.health)  # succeeds now
    assert rt.health.loop_errors == {}
    assert report(rt).poll.reason != "LoopFailed"


async def test_a_followup_cut_short_by_lost_leadership_leaves_the_pid_to_the_sweep() -> None:
    """The Job exists, the pid PATCH was queued, then leadership ended: pid_queued must not
    stay set, or the recovery sweep never writes the pid (seen in the partition fault)."""
    rt, client, kube = make_runtime(spec=API)
    run_id = client.add_run(deployment_id=client.add_deployment())

    async def hang(flow_run_id: str, pid: str) -> None:
        await anyio.sleep(60)

    client.set_infrastructure_pid = hang  # type: ignore[method-assign,assignment]
    with anyio.move_on_after(1.0):
        await poll(rt)
    rec = rt.table.get(run_id)
    assert rec is not None and len(kube.jobs) == 1
    assert not rec.pid_queued and not rec.pid_recorded

"""The sweeps and apply_actions: closing the gaps a restart or a missed event leaves."""

from __future__ import annotations

import copy
from datetime import timedelta
from typing import Any

import anyio
import pytest

from prefect_job_operator.api.v1alpha1 import ANNOTATION_CLAIM
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.submit import poll_once
from prefect_job_operator.dispatch.sweep import (
    CANCEL_DONE,
    CANCEL_PENDING,
    apply_actions,
    sweep_cancelling,
    sweep_final_with_jobs,
    sweep_pending,
    sweep_running,
)
from prefect_job_operator.dispatch.telemetry import Telemetry
from prefect_job_operator.prefect_api.errors import APIUnreachable
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.tracking.runs import Crash, InfrastructurePending, JobGone
from tests.unit.clocks import frozen
from tests.unit.fakes import (
    FakeKube,
    job_condition,
    job_json,
    make_runtime,
    now,
    pod_json,
)

JOB = "crimson-fox-abcde12345"
PID = f"default:{JOB}"


def _with_job(
    rt: Pool, kube: FakeKube, run_id: str, pod_phase: str | None = "Pending", **kw: Any
) -> None:
    """A Job of the run that exists in the cluster and that the watches have reported."""
    job = job_json(run_id, JOB, **kw)
    kube.jobs[("default", JOB)] = copy.deepcopy(job)
    rt.table.observe_job("ADDED", job)
    if pod_phase is not None:
        rt.table.observe_pod("ADDED", pod_json(run_id, JOB, phase=pod_phase))


# --------------------------------------------------------------------------- cancelling


async def test_cancelling_run_with_pending_pod_deletes_job_and_cancels() -> None:
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="CANCELLING", pid=PID)
    _with_job(rt, kube, run_id, "Pending")

    await sweep_cancelling(rt.sweeper)

    assert kube.deleted_jobs == [("default", JOB, 30)]
    assert client.proposed(run_id) == [("CANCELLED", "Cancelled", CANCEL_PENDING, True)]
    assert client.state_of(run_id)[0] == "CANCELLED"
    assert rt.ports.counters.cancelled == 1
    rec = rt.table.get(run_id)
    assert rec is not None and rec.outcome_reported


async def test_cancelling_running_flow_gets_grace_before_the_job_is_deleted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    time = frozen(monkeypatch)
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="CANCELLING", pid=PID, start_time=now() - timedelta(minutes=5))
    _with_job(rt, kube, run_id, "Running")

    await sweep_cancelling(rt.sweeper)
    assert kube.deleted_jobs == [] and client.proposed(run_id) == []

    time.advance(rt.cfg.settings.cancel_grace_seconds + 1)
    await sweep_cancelling(rt.sweeper)
    assert kube.deleted_jobs == [("default", JOB, 30)]
    assert client.proposed(run_id) == [("CANCELLED", "Cancelled", CANCEL_DONE, True)]


async def test_cancelling_run_without_job_is_cancelled() -> None:
    rt, client, kube = make_runtime()
    no_pid = client.add_run(state="CANCELLING")
    dead_pid = client.add_run(state="CANCELLING", pid="default:long-gone-0000000000")

    await sweep_cancelling(rt.sweeper)

    for run_id in (no_pid, dead_pid):
        [(type_, name, message, force)] = client.proposed(run_id)
        assert (type_, name, force) == ("CANCELLED", "Cancelled", True)
        assert message is not None and "(no infrastructure found)" in message
    assert kube.deleted_jobs == []
    assert rt.ports.counters.cancelled == 2


async def test_cancelling_run_with_unknown_existing_job_is_left_alone() -> None:
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="CANCELLING", pid=PID)
    kube.jobs[("default", JOB)] = job_json(run_id, JOB)  # in the cluster, not in our table

    await sweep_cancelling(rt.sweeper)

    assert client.proposed(run_id) == []
    assert kube.deleted_jobs == []


async def test_cancelling_run_still_submitting_is_flagged_for_the_submitter() -> None:
    rt, client, _kube = make_runtime()
    run_id = client.add_run(state="CANCELLING")
    rt.submitter.in_flight.add(run_id)
    await sweep_cancelling(rt.sweeper)
    assert run_id in rt.submitter.cancel_requested
    assert client.proposed(run_id) == []


# --------------------------------------------------------------------------- pending


async def test_pending_run_with_job_but_no_pid_adopts_the_job() -> None:
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="PENDING", state_name="Submitting")
    _with_job(rt, kube, run_id, "Pending")

    await sweep_pending(rt.sweeper)

    assert client.runs[run_id]["infrastructure_pid"] == PID
    assert client.proposed(run_id) == []
    assert kube.calls["create_job"] == 0


async def test_pending_run_without_job_after_grace_is_resubmitted_once() -> None:
    rt, client, kube = make_runtime()
    dep = client.add_deployment()
    old = now() - timedelta(seconds=rt.cfg.spec.recovery.pending_grace_seconds + 30)
    run_id = client.add_run(state="PENDING", state_time=old, deployment_id=dep)
    claim = client.runs[run_id]["state"]["id"]

    await sweep_pending(rt.sweeper)
    await sweep_pending(rt.sweeper)  # the second sweep finds the Job in the table

    assert kube.calls["create_job"] == 1
    [job] = kube.jobs.values()
    assert job["metadata"]["labels"]["prefect.io/flow-run-id"] == run_id
    assert job["metadata"]["annotations"][ANNOTATION_CLAIM] == claim
    assert client.runs[run_id]["infrastructure_pid"] == f"default:{job['metadata']['name']}"
    # A resubmission does not propose Pending again (the run is already ours).
    assert all(p[0] != "PENDING" for p in client.proposed(run_id))
    assert rt.submitter.in_flight == set()


async def test_pending_run_within_grace_or_of_another_worker_is_left_alone() -> None:
    rt, client, kube = make_runtime()
    dep = client.add_deployment()
    old = now() - timedelta(seconds=rt.cfg.spec.recovery.pending_grace_seconds + 30)
    client.add_run(state="PENDING", state_time=now(), deployment_id=dep)
    client.add_run(
        state="PENDING",
        state_time=old,
        deployment_id=dep,
        labels={"prefect.worker.name": "KubernetesWorker 1234"},
    )
    await sweep_pending(rt.sweeper)
    assert kube.calls["create_job"] == 0
    assert client.proposals == []


async def test_pending_run_whose_job_is_gone_is_crashed() -> None:
    rt, client, kube = make_runtime()
    old = now() - timedelta(seconds=rt.cfg.spec.recovery.pending_grace_seconds + 30)
    run_id = client.add_run(state="PENDING", state_time=old, pid=PID)

    await sweep_pending(rt.sweeper)

    [(type_, _, message, force)] = client.proposed(run_id)
    assert type_ == "CRASHED" and not force
    assert message == f"Kubernetes Job {PID} no longer exists."
    assert kube.calls["create_job"] == 0
    assert rt.ports.counters.crashed == 1


async def test_pending_run_whose_job_exists_is_not_crashed() -> None:
    rt, client, kube = make_runtime()
    old = now() - timedelta(seconds=rt.cfg.spec.recovery.pending_grace_seconds + 30)
    run_id = client.add_run(state="PENDING", state_time=old, pid=PID)
    kube.jobs[("default", JOB)] = job_json(run_id, JOB)
    await sweep_pending(rt.sweeper)
    assert client.proposals == []


async def test_resubmission_of_a_run_whose_deployment_is_gone_cancels() -> None:
    rt, client, kube = make_runtime()
    old = now() - timedelta(seconds=rt.cfg.spec.recovery.pending_grace_seconds + 30)
    missing = "7a1e7c55-0000-4000-8000-00000000dead"
    run_id = client.add_run(state="PENDING", state_time=old, deployment_id=missing)
    await sweep_pending(rt.sweeper)
    assert client.proposed(run_id) == [
        ("CANCELLED", "Cancelled", f"Deployment {missing} no longer exists, cancelled run.", True)
    ]
    assert kube.calls["create_job"] == 0


# --------------------------------------------------------------------------- running, final


async def test_running_run_whose_job_is_gone_is_crashed() -> None:
    rt, client, _kube = make_runtime()
    run_id = client.add_run(state="RUNNING", pid=PID, start_time=now())

    await sweep_running(rt.sweeper)

    [(type_, _, message, _)] = client.proposed(run_id)
    assert type_ == "CRASHED" and message == f"Kubernetes Job {PID} was deleted."
    assert rt.ports.counters.crashed == 1
    assert rt.ports.metrics.runs_crashed.value(*rt.cfg.metric_labels, "JobDeleted") == 1


async def test_running_run_with_live_job_is_left_alone() -> None:
    rt, client, kube = make_runtime()
    tracked = client.add_run(state="RUNNING", pid=PID, start_time=now())
    _with_job(rt, kube, tracked, "Running")
    other = client.add_run(state="RUNNING", pid="default:other-job-1234567890", start_time=now())
    kube.jobs[("default", "other-job-1234567890")] = job_json(other, "other-job-1234567890")
    no_pid = client.add_run(state="RUNNING", start_time=now())

    await sweep_running(rt.sweeper)

    assert client.proposals == []
    assert kube.calls["read_job"] == 1  # only the Job the table does not know is read
    assert client.state_of(no_pid)[0] == "RUNNING"


async def test_final_cancelled_run_with_active_job_gets_job_deleted() -> None:
    rt, client, kube = make_runtime()
    cancelled = client.add_run(state="CANCELLED", pid=PID)
    _with_job(rt, kube, cancelled, "Running", active=1)
    completed_job = "done-run-1234567890"
    completed = client.add_run(state="COMPLETED", pid=f"default:{completed_job}")
    rt.table.observe_job("ADDED", job_json(completed, completed_job, active=1))

    await sweep_final_with_jobs(rt.sweeper)

    assert kube.deleted_jobs == [("default", JOB, 30)]
    assert client.proposals == []


async def test_final_sweep_ignores_finished_jobs_and_other_submissions() -> None:
    rt, client, kube = make_runtime()
    crashed = client.add_run(state="CRASHED", pid="default:newer-job-0000000000")
    _with_job(rt, kube, crashed, None, active=1)  # pid names a newer Job: not ours to delete
    done = client.add_run(state="CANCELLED", pid="default:fin-1")
    rt.table.observe_job(
        "MODIFIED", job_json(done, "fin-1", succeeded=1, conditions=[job_condition("Complete")])
    )
    await sweep_final_with_jobs(rt.sweeper)
    assert kube.deleted_jobs == []


# --------------------------------------------------------------------------- apply_actions


async def test_apply_crash_proposes_crashed_and_forwards_the_log_tail() -> None:
    rt, client, kube = make_runtime()
    rt.ports.telemetry = Telemetry(client, worker_name=rt.cfg.worker_name, pool=rt.synced.pool)
    run_id = client.add_run(state="RUNNING", pid=PID, start_time=now())
    _with_job(rt, kube, run_id, None)
    pod = pod_json(run_id, JOB, phase="Failed", exit_code=1)
    kube.pod_logs[("default", pod["metadata"]["name"])] = "Traceback...\nValueError: boom\n"
    actions = rt.table.observe_pod("MODIFIED", pod)
    assert [type(a) for a in actions] == [Crash]

    await apply_actions(rt.sweeper, actions)

    [(type_, _, message, _)] = client.proposed(run_id)
    assert type_ == "CRASHED" and message is not None and "exited with code 1" in message
    assert rt.ports.counters.crashed == 1
    assert any("ValueError: boom" in log.message for log in rt.ports.telemetry.logs)


async def test_apply_crash_with_delete_removes_job_and_skips_final_runs() -> None:
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="COMPLETED", pid=PID)
    _with_job(rt, kube, run_id, None)
    rec = rt.table.get(run_id)
    assert rec is not None
    await apply_actions(rt.sweeper, [Crash(rec, "Pod did not start", delete_job=True)])
    assert kube.deleted_jobs == [("default", JOB, 0)]
    assert client.proposals == []


async def test_apply_crash_of_superseded_job_does_nothing() -> None:
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="RUNNING", pid="default:newer-job-0000000000")
    _with_job(rt, kube, run_id, None)
    rec = rt.table.get(run_id)
    assert rec is not None
    await apply_actions(rt.sweeper, [Crash(rec, "boom", delete_job=True)])
    assert kube.deleted_jobs == [] and client.proposals == []


async def test_apply_job_gone_cancels_cancelling_and_crashes_running() -> None:
    rt, client, _kube = make_runtime()
    cancelling = client.add_run(name="c", state="CANCELLING", pid="default:c-1")
    running = client.add_run(name="r", state="RUNNING", pid="default:r-1")
    actions = []
    for run_id, name in ((cancelling, "c-1"), (running, "r-1")):
        rt.table.observe_job("ADDED", job_json(run_id, name, active=1))
        actions += rt.table.observe_job("DELETED", job_json(run_id, name, active=1))
    assert [type(a) for a in actions] == [JobGone, JobGone]

    await apply_actions(rt.sweeper, actions)

    assert client.proposed(cancelling) == [("CANCELLED", "Cancelled", CANCEL_DONE, True)]
    assert client.proposed(running) == [
        ("CRASHED", "Crashed", "Kubernetes Job default:r-1 was deleted.", False)
    ]


async def test_apply_infrastructure_pending_unless_still_submitting() -> None:
    rt, client, _kube = make_runtime()
    rt.table.infra_pending_after = 0  # upstream parity: report at once
    run_id = client.add_run(state="PENDING", state_name="Submitting")
    assert rt.table.observe_job("ADDED", job_json(run_id, JOB)) == []
    [action] = rt.table.observe_pod("ADDED", pod_json(run_id, JOB))
    assert isinstance(action, InfrastructurePending)

    rt.submitter.in_flight.add(run_id)
    await apply_actions(rt.sweeper, [action])
    assert client.proposals == []

    rt.submitter.in_flight.clear()
    await apply_actions(rt.sweeper, [action])
    assert client.state_of(run_id) == ("PENDING", "InfrastructurePending")


async def test_apply_failure_is_logged_and_retried_later() -> None:
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="RUNNING", pid=PID)
    _with_job(rt, kube, run_id, None)
    actions = rt.table.observe_job("MODIFIED", job_json(run_id, JOB, failed=1))
    assert len(actions) == 1
    client.fail["read_flow_run"] = APIUnreachable(None, "Prefect API unreachable")

    await apply_actions(rt.sweeper, actions)  # must not raise

    rec = rt.table.get(run_id)
    assert rec is not None and not rec.outcome_reported
    assert client.proposals == []


# --------------------------------------------------------------------------- recovery gaps


async def test_crash_that_failed_to_reach_prefect_is_retried_by_the_periodic_loops() -> None:
    """The pod is OOMKilled while the Prefect API is down: apply_actions logs "the sweep
    retries". Once the API is back, the loops a leading worker runs (deadlines every second,
    the sweeps) must still mark the run Crashed; nothing else will (the flow process is dead)."""
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="RUNNING", pid=PID, start_time=now())
    _with_job(rt, kube, run_id, "Running", active=1)
    oom = pod_json(run_id, JOB, phase="Failed", exit_code=137, reason="OOMKilled")
    actions = rt.table.observe_pod("MODIFIED", oom)
    assert [type(a) for a in actions] == [Crash]
    client.fail["read_flow_run"] = APIUnreachable(None, "Prefect API unreachable")
    await apply_actions(rt.sweeper, actions)
    assert client.state_of(run_id)[0] == "RUNNING"

    del client.fail["read_flow_run"]
    for _ in range(6):
        await apply_actions(rt.sweeper, rt.table.check_deadlines(now()))
        await sweep_cancelling(rt.sweeper)
        await sweep_pending(rt.sweeper)
        await sweep_running(rt.sweeper)
        await sweep_final_with_jobs(rt.sweeper)

    assert client.state_of(run_id)[0] == "CRASHED"
    assert "OOMKilled" in client.runs[run_id]["state"]["message"]


async def test_resubmission_adopts_a_job_the_table_missed() -> None:
    """Replica 1 creates the Job and dies before recording the pid (its PATCH fails). Replica 2
    starts with an empty table (its list of existing Jobs failed, or the watch event arrived
    before the pool was registered). After the grace period the run is still Pending with no
    pid: resubmitting must adopt the existing Job, not start a second copy of the flow."""
    kube = FakeKube()
    rt1, client, _ = make_runtime(kube=kube)
    run_id = client.add_run(deployment_id=client.add_deployment())
    client.fail["set_infrastructure_pid"] = APIUnreachable(None, "Prefect API unreachable")
    async with anyio.create_task_group() as tg:
        await poll_once(rt1.submitter, tg, anyio.CapacityLimiter(4))
    [job] = kube.jobs.values()
    assert client.state_of(run_id) == ("PENDING", "Pending")
    rec1 = rt1.table.get(run_id)
    assert rec1 is not None and not rec1.pid_queued and not rec1.pid_recorded
    del client.fail["set_infrastructure_pid"]

    rt2, _, _ = make_runtime(kube=kube, client=client)
    grace = rt2.cfg.spec.recovery.pending_grace_seconds
    client.runs[run_id]["state"]["timestamp"] = (now() - timedelta(seconds=grace + 30)).isoformat()
    await sweep_pending(rt2.sweeper)

    names = [j["metadata"]["name"] for j in kube.jobs.values()]
    assert names == [job["metadata"]["name"]], "the flow run must not get a second Job"
    assert client.runs[run_id]["infrastructure_pid"] == f"default:{job['metadata']['name']}"


async def test_failed_pid_followup_is_adopted_by_the_same_replicas_sweep() -> None:
    """The follow-up lane's pid PATCH fails: the record stops claiming the write, so the next
    recovery sweep of the same replica writes it (once)."""
    rt, client, kube = make_runtime()
    run_id = client.add_run(deployment_id=client.add_deployment())
    client.fail["set_infrastructure_pid"] = APIUnreachable(None, "Prefect API unreachable")
    async with anyio.create_task_group() as tg:
        await poll_once(rt.submitter, tg, anyio.CapacityLimiter(4))
    del client.fail["set_infrastructure_pid"]
    [job] = kube.jobs.values()

    await sweep_pending(rt.sweeper)
    await sweep_pending(rt.sweeper)

    assert client.runs[run_id]["infrastructure_pid"] == f"default:{job['metadata']['name']}"
    assert client.calls["set_infrastructure_pid"] == 2  # the failed one, then one adoption
    assert len(kube.jobs) == 1


async def test_queued_pid_is_not_written_twice_by_the_sweep() -> None:
    rt, client, _ = make_runtime()
    run_id = client.add_run(deployment_id=client.add_deployment())
    job = job_json(run_id, name="queued-job")
    rt.table.observe_job("ADDED", job)
    assert rt.table.get(run_id) is not None
    rt.table.pid_queued(run_id)
    client.set_state(run_id, "PENDING", "Pending")

    await sweep_pending(rt.sweeper)

    assert client.calls["set_infrastructure_pid"] == 0


def test_recovery_sweep_runs_first_then_by_interval_and_yields_to_a_backlog() -> None:
    from prefect_job_operator.dispatch.worker import (
        MAX_DEFERRED_RECOVERY_SWEEPS,
        recovery_sweep_due,
    )

    rt, _, _ = make_runtime(spec={"worker": {"submitConcurrency": 2}})
    every = rt.cfg.settings.recovery_sweep_interval_seconds
    assert recovery_sweep_due(rt, 1000.0)  # the first tick of a term
    assert not recovery_sweep_due(rt, 1000.0 + every / 2)
    assert recovery_sweep_due(rt, 1000.0 + every)

    rt.submitter.in_flight.update({"a", "b"})  # a backlog: as many runs waiting as there are slots
    t = 1000.0 + 2 * every
    deferred = [recovery_sweep_due(rt, t + i) for i in range(MAX_DEFERRED_RECOVERY_SWEEPS)]
    assert deferred == [False] * MAX_DEFERRED_RECOVERY_SWEEPS
    assert recovery_sweep_due(rt, t + MAX_DEFERRED_RECOVERY_SWEEPS)  # never starved for good

    rt.state.last_recovery_sweep = None  # a new leadership term recovers at once, backlog or not
    assert recovery_sweep_due(rt, t + 100)


async def test_crash_log_tail_is_upstreams_500_lines_by_default_and_a_setting() -> None:
    """Issue #10 item 10: the tail was fixed at 50 lines; upstream forwards 500."""
    for setting, expected in ((None, 500), (120, 120), (0, 0)):
        settings = OperatorSettings()
        if setting is not None:
            settings = settings.model_copy(update={"crash_log_tail_lines": setting})
        rt, client, kube = make_runtime(settings=settings)
        rt.ports.telemetry = Telemetry(client, worker_name=rt.cfg.worker_name, pool=rt.synced.pool)
        run_id = client.add_run(state="RUNNING", pid=PID, start_time=now())
        _with_job(rt, kube, run_id, None)
        pod = pod_json(run_id, JOB, phase="Failed", exit_code=1)
        kube.pod_logs[("default", pod["metadata"]["name"])] = "".join(
            f"line {i:04d}\n" for i in range(1000)
        )
        await apply_actions(rt.sweeper, rt.table.observe_pod("MODIFIED", pod))
        forwarded = [log.message for log in rt.ports.telemetry.logs if "line " in log.message]
        if expected == 0:
            assert forwarded == [] and kube.calls.get("pod_log_tail", 0) == 0
            continue
        [text] = forwarded
        lines = [x for x in text.splitlines() if x.startswith("line ")]
        assert len(lines) == expected, len(lines)
        assert lines[-1] == "line 0999" and lines[0] == f"line {1000 - expected:04d}"


# --------------------------------------------------------------------------- kill decisions


async def test_pod_watch_timeout_reads_the_pods_first_and_adopts_a_running_one() -> None:
    """No pod event ever arrived (a Job outside the watch view): the deadline fires, but a
    direct read finds the pod Running, so the healthy flow is not killed."""
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="PENDING", pid=PID)
    old = now() - timedelta(seconds=600)
    _with_job(rt, kube, run_id, None, pod_watch_timeout=60, created=old)
    kube.pods[("default", f"{JOB}-x7k2p")] = pod_json(run_id, JOB, phase="Running", created=old)

    actions = rt.table.check_deadlines(now())
    assert [type(a) for a in actions] == [Crash] and actions[0].unconfirmed  # type: ignore[union-attr]
    await apply_actions(rt.sweeper, actions)

    assert kube.calls["list_pods"] == 1
    assert kube.deleted_jobs == []
    assert client.proposed(run_id) == []
    rec = rt.table.get(run_id)
    assert rec is not None and not rec.outcome_reported and rec.pods
    assert rt.table.check_deadlines(now()) == []  # now it knows the pod runs


async def test_pod_watch_timeout_without_any_pod_names_the_failed_create_reason() -> None:
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="PENDING", pid=PID)
    _with_job(rt, kube, run_id, None, pod_watch_timeout=60, created=now() - timedelta(seconds=90))
    why = (
        f'Error creating: pods "{JOB}-" is forbidden: error looking up service account '
        'default/missing-sa: serviceaccount "missing-sa" not found'
    )
    kube.job_events[("default", JOB)] = [
        {"reason": "SuccessfulCreate", "message": "x", "lastTimestamp": "2026-01-01T00:00:00Z"},
        {"reason": "FailedCreate", "message": why, "lastTimestamp": "2026-01-01T00:00:05Z"},
    ]

    await apply_actions(rt.sweeper, rt.table.check_deadlines(now()))

    assert client.state_of(run_id)[0] == "CRASHED"
    message = client.runs[run_id]["state"]["message"]
    assert "no pod was created: FailedCreate:" in message
    assert 'serviceaccount "missing-sa" not found' in message
    assert kube.deleted_jobs == [("default", JOB, 0)]  # deleted only after the reason was read


async def test_a_failed_job_seen_before_its_pods_reports_the_pods_exit_code() -> None:
    """After a restart the Job listing (or watch) comes before the pods: the crash must say
    "exited with code 4", not the Job's BackoffLimitExceeded."""
    rt, client, kube = make_runtime()
    run_id = client.add_run(state="RUNNING", pid=PID, start_time=now())
    failed = job_json(
        run_id, JOB, failed=1, conditions=[job_condition("Failed", reason="BackoffLimitExceeded")]
    )
    kube.jobs[("default", JOB)] = copy.deepcopy(failed)
    kube.pods[("default", f"{JOB}-x7k2p")] = pod_json(
        run_id, JOB, phase="Failed", exit_code=4, reason="Error"
    )
    actions = rt.table.observe_job(None, failed)
    assert [type(a) for a in actions] == [Crash]
    assert "BackoffLimitExceeded" in actions[0].message  # type: ignore[union-attr]

    await apply_actions(rt.sweeper, actions)

    message = client.runs[run_id]["state"]["message"]
    assert "exited with code 4" in message and "BackoffLimitExceeded" not in message

"""RunTable: Job/Pod watch events (realistic API JSON) → the actions told to Prefect."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

from prefect_job_operator.tracking.runs import Crash, InfrastructurePending, JobGone, RunTable
from tests.unit.fakes import job_condition, job_json, now, pod_json

RUN = "0b5c3f0e-6d7e-4f4f-9d51-1f0c1c2b3a4d"
JOB = "crimson-fox-abcde12345"


def test_failed_pod_then_failed_job_yields_one_crash_with_the_exit_code() -> None:
    table = RunTable()
    created = now() - timedelta(seconds=30)
    assert table.observe_job("ADDED", job_json(RUN, JOB, created=created)) == []
    pending = pod_json(RUN, JOB, phase="Pending", waiting="ContainerCreating", created=created)
    assert [type(a) for a in table.observe_pod("ADDED", pending)] == [InfrastructurePending]
    running = pod_json(RUN, JOB, phase="Running", created=created)
    assert table.observe_pod("MODIFIED", running) == []

    failed_pod = pod_json(RUN, JOB, phase="Failed", exit_code=3, created=created)
    actions = table.observe_pod("MODIFIED", failed_pod)
    assert len(actions) == 1
    crash = actions[0]
    assert isinstance(crash, Crash)
    assert not crash.delete_job
    assert "exited with code 3" in crash.message
    assert JOB in crash.message

    failed_job = job_json(
        RUN,
        JOB,
        created=created,
        failed=1,
        conditions=[
            job_condition("FailureTarget", "BackoffLimitExceeded", "Job has reached the limit"),
            job_condition("Failed", "BackoffLimitExceeded", "Job has reached the limit"),
        ],
    )
    assert table.observe_job("MODIFIED", failed_job) == []
    assert table.observe_job("MODIFIED", failed_job) == []
    assert table.observe_pod("MODIFIED", failed_pod) == []


def test_failed_job_condition_with_known_pod_crashes_once_with_exit_code() -> None:
    """Pod Failed event seen by a standby replica (facts kept), then the Job's Failed event."""
    table = RunTable()
    created = now() - timedelta(seconds=30)
    table.observe_job("ADDED", job_json(RUN, JOB, created=created, backoff_limit=6))
    # With backoffLimit 6 a single failed pod is not yet a failed Job.
    pod = pod_json(RUN, JOB, phase="Failed", exit_code=137, reason="Error", created=created)
    assert table.observe_pod("MODIFIED", pod) == []
    failed = job_json(
        RUN,
        JOB,
        created=created,
        backoff_limit=6,
        failed=7,
        conditions=[job_condition("Failed", "BackoffLimitExceeded", "Job has reached the limit")],
    )
    actions = table.observe_job("MODIFIED", failed)
    assert len(actions) == 1 and isinstance(actions[0], Crash)
    assert "exited with code 137" in actions[0].message
    assert table.observe_job("MODIFIED", failed) == []


def test_job_failed_count_over_backoff_limit_without_condition_crashes() -> None:
    table = RunTable()
    table.observe_job("ADDED", job_json(RUN, JOB))
    actions = table.observe_job("MODIFIED", job_json(RUN, JOB, failed=1, backoff_limit=0))
    assert len(actions) == 1 and isinstance(actions[0], Crash)
    assert table.observe_job("MODIFIED", job_json(RUN, JOB, failed=1, backoff_limit=0)) == []


def test_job_deleted_while_not_succeeded_is_job_gone_once() -> None:
    table = RunTable()
    table.observe_job("ADDED", job_json(RUN, JOB, active=1))
    actions = table.observe_job("DELETED", job_json(RUN, JOB, active=1))
    assert len(actions) == 1 and isinstance(actions[0], JobGone)
    assert actions[0].record.pid == f"default:{JOB}"
    assert table.observe_job("DELETED", job_json(RUN, JOB, active=1)) == []


def test_succeeded_job_deleted_is_not_news() -> None:
    table = RunTable()
    done = job_json(RUN, JOB, succeeded=1, conditions=[job_condition("Complete")])
    assert table.observe_job("MODIFIED", done) == []
    assert table.observe_job("DELETED", done) == []


def test_pod_pending_reported_once() -> None:
    table = RunTable()
    table.observe_job("ADDED", job_json(RUN, JOB))
    first = table.observe_pod("ADDED", pod_json(RUN, JOB, phase="Pending"))
    assert [type(a) for a in first] == [InfrastructurePending]
    again = pod_json(RUN, JOB, phase="Pending", waiting="ContainerCreating")
    assert table.observe_pod("MODIFIED", again) == []


def test_pod_of_unknown_run_or_other_job_is_ignored() -> None:
    table = RunTable()
    assert table.observe_pod("ADDED", pod_json(RUN, JOB)) == []
    assert table.get(RUN) is None
    table.observe_job("ADDED", job_json(RUN, JOB))
    assert table.observe_pod("ADDED", pod_json(RUN, "crimson-fox-zzzzz99999")) == []
    rec = table.get(RUN)
    assert rec is not None and rec.pods == {}


def test_pod_watch_timeout_with_unschedulable_pod_crashes_and_deletes() -> None:
    table = RunTable()
    created = now() - timedelta(seconds=120)
    table.observe_job("ADDED", job_json(RUN, JOB, created=created, pod_watch_timeout=60))
    why = "0/3 nodes are available: 3 Insufficient memory."
    table.observe_pod("ADDED", pod_json(RUN, JOB, created=created, unschedulable=why))
    assert table.check_deadlines(created + timedelta(seconds=30)) == []
    actions = table.check_deadlines(now())
    assert len(actions) == 1
    crash = actions[0]
    assert isinstance(crash, Crash) and crash.delete_job
    assert "pod_watch_timeout" in crash.message
    assert "60s" in crash.message
    assert "Pod is unschedulable: " + why in crash.message
    assert table.check_deadlines(now()) == []


def test_pod_watch_timeout_without_any_pod_counts_from_job_creation() -> None:
    table = RunTable()
    created = now() - timedelta(seconds=90)
    table.observe_job("ADDED", job_json(RUN, JOB, created=created, pod_watch_timeout=60))
    actions = table.check_deadlines(now())
    assert len(actions) == 1 and isinstance(actions[0], Crash) and actions[0].delete_job


def test_running_pod_is_not_subject_to_pod_watch_timeout() -> None:
    table = RunTable()
    created = now() - timedelta(seconds=600)
    table.observe_job("ADDED", job_json(RUN, JOB, created=created, pod_watch_timeout=60))
    table.observe_pod("MODIFIED", pod_json(RUN, JOB, phase="Running", created=created))
    assert table.check_deadlines(now()) == []


def test_a_succeeded_pod_the_job_controller_has_not_counted_is_not_a_pod_timeout() -> None:
    """Between a pod's Succeeded and the Job's Complete (the Job controller batches pod
    updates) the Job has no live pod: that window read as "no pod was created" and got the
    healthy Job killed at pod_watch_timeout (e2e routing-labels test)."""
    table = RunTable()
    created = now() - timedelta(seconds=20)
    table.observe_job("ADDED", job_json(RUN, JOB, created=created, pod_watch_timeout=4))
    table.observe_pod("MODIFIED", pod_json(RUN, JOB, phase="Running", created=created))
    done = pod_json(RUN, JOB, phase="Succeeded", exit_code=0, reason="Completed", created=created)
    assert table.observe_pod("MODIFIED", done) == []
    assert table.check_deadlines(now()) == []


def test_job_watch_timeout_crashes_a_running_job() -> None:
    table = RunTable()
    created = now() - timedelta(seconds=400)
    table.observe_job("ADDED", job_json(RUN, JOB, created=created, job_watch_timeout=300))
    table.observe_pod("MODIFIED", pod_json(RUN, JOB, phase="Running", created=created))
    assert table.check_deadlines(created + timedelta(seconds=299)) == []
    actions = table.check_deadlines(now())
    assert len(actions) == 1
    assert isinstance(actions[0], Crash) and actions[0].delete_job
    assert "job_watch_timeout" in actions[0].message and "300s" in actions[0].message
    assert table.check_deadlines(now()) == []


def test_finished_job_is_not_subject_to_deadlines() -> None:
    table = RunTable()
    created = now() - timedelta(seconds=400)
    done = job_json(
        RUN,
        JOB,
        created=created,
        job_watch_timeout=60,
        pod_watch_timeout=60,
        succeeded=1,
        conditions=[job_condition("Complete")],
    )
    table.observe_job("MODIFIED", done)
    assert table.check_deadlines(now()) == []


def test_counts_pending_running_and_oldest() -> None:
    table = RunTable()
    t0 = now() - timedelta(seconds=300)
    runs = [f"00000000-0000-4000-8000-00000000000{i}" for i in range(5)]
    # two pending (one with an unschedulable pod, one without pod), one running,
    # one succeeded, one deleted
    table.observe_job("ADDED", job_json(runs[0], "a-1", created=t0))
    table.observe_pod("ADDED", pod_json(runs[0], "a-1", created=t0, unschedulable="no fit"))
    table.observe_job("ADDED", job_json(runs[1], "b-1", created=t0 + timedelta(seconds=100)))
    table.observe_job("ADDED", job_json(runs[2], "c-1", created=t0))
    table.observe_pod("MODIFIED", pod_json(runs[2], "c-1", phase="Running", created=t0))
    table.observe_job(
        "MODIFIED",
        job_json(runs[3], "d-1", created=t0, succeeded=1, conditions=[job_condition("Complete")]),
    )
    table.observe_job("ADDED", job_json(runs[4], "e-1", created=t0 - timedelta(seconds=60)))
    table.observe_job("DELETED", job_json(runs[4], "e-1", created=t0 - timedelta(seconds=60)))
    pending, running, oldest = table.counts(now())
    assert (pending, running) == (2, 1)
    assert oldest is not None and abs((oldest - t0).total_seconds()) < 1


def test_counts_empty_table() -> None:
    assert RunTable().counts(now()) == (0, 0, None)


def test_new_job_of_same_run_replaces_record() -> None:
    """A retry of the run (new claim) gets a new Job name; the table follows it."""
    table = RunTable()
    t0 = now() - timedelta(seconds=200)
    table.observe_job("ADDED", job_json(RUN, "crimson-fox-old0000000", created=t0))
    newer = job_json(RUN, "crimson-fox-new1111111", created=t0 + timedelta(seconds=100))
    table.observe_job("ADDED", newer)
    rec = table.get(RUN)
    assert rec is not None and rec.job_name == "crimson-fox-new1111111"


def test_old_job_deleted_after_newer_does_not_clobber() -> None:
    table = RunTable()
    t0 = now() - timedelta(seconds=200)
    old = job_json(RUN, "crimson-fox-old0000000", created=t0, active=1)
    table.observe_job("ADDED", old)
    table.observe_job(
        "ADDED", job_json(RUN, "crimson-fox-new1111111", created=t0 + timedelta(seconds=100))
    )
    assert table.observe_job("DELETED", old) == []
    rec = table.get(RUN)
    assert rec is not None and rec.job_name == "crimson-fox-new1111111" and not rec.deleted


def test_old_job_modified_after_newer_does_not_clobber() -> None:
    """The old Job's final status update (or its failure) arrives after the newer Job's ADDED."""
    table = RunTable()
    t0 = now() - timedelta(seconds=200)
    old_name, new_name = "crimson-fox-old0000000", "crimson-fox-new1111111"
    table.observe_job("ADDED", job_json(RUN, old_name, created=t0, active=1))
    table.observe_job("ADDED", job_json(RUN, new_name, created=t0 + timedelta(seconds=100)))
    failed_old = job_json(
        RUN,
        old_name,
        created=t0,
        failed=1,
        conditions=[job_condition("Failed", "DeadlineExceeded")],
    )
    actions = table.observe_job("MODIFIED", failed_old)
    assert actions == [], "a failure of a superseded Job must not crash the run"
    rec = table.get(RUN)
    assert rec is not None and rec.job_name == new_name


def test_forget_finished_drops_deleted_and_long_finished() -> None:
    table = RunTable()
    old = now() - timedelta(seconds=3600)
    gone, crashed, fresh_crash, live = (f"00000000-0000-4000-8000-00000000001{i}" for i in range(4))
    table.observe_job("ADDED", job_json(gone, "g-1", active=1))
    table.observe_job("DELETED", job_json(gone, "g-1", active=1))
    table.observe_job("MODIFIED", job_json(crashed, "c-1", created=old, failed=1))
    table.observe_job("MODIFIED", job_json(fresh_crash, "f-1", failed=1))
    table.observe_job("ADDED", job_json(live, "l-1", created=old, active=1))
    table.forget_finished(now(), keep_seconds=600)
    assert table.get(gone) is None
    assert table.get(crashed) is None
    assert table.get(fresh_crash) is not None
    assert table.get(live) is not None
    assert len(table) == 2


def test_delayed_infrastructure_pending_only_for_pods_that_keep_waiting() -> None:
    table = RunTable(infra_pending_after=5)
    created = now() - timedelta(seconds=2)
    table.observe_job("ADDED", job_json(RUN, JOB, created=created))
    assert table.observe_pod("ADDED", pod_json(RUN, JOB, phase="Pending", created=created)) == []
    assert table.check_deadlines(now()) == []  # waited 2 s: a fast pod costs no proposal
    later = [a for a in table.check_deadlines(now() + timedelta(seconds=4)) if a]
    assert [type(a) for a in later] == [InfrastructurePending]
    assert table.check_deadlines(now() + timedelta(seconds=6)) == []  # reported once


def test_only_the_run_table_writes_the_protocol_flags() -> None:
    """The four flags of a run record change through named RunTable methods only."""
    package = Path(__file__).resolve().parents[2] / "operator" / "prefect_job_operator"
    flag = re.compile(
        r"\.(outcome_reported|infra_pending_reported|pid_recorded|pid_queued)\b[^=\n]*=(?!=)"
    )
    writers = {
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if flag.search(path.read_text())
    }
    assert writers == {"tracking/runs.py"}, writers

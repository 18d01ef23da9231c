"""PoolReport → status patch: conditions, Ready's rule, transition times, identity fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from prefect_job_operator.api import conditions as c
from prefect_job_operator.api.job_namespaces import NamespaceReport
from prefect_job_operator.writeback.cr_status import (
    MAX_MESSAGE_LENGTH,
    STATUS_REFRESH_SECONDS,
    rfc3339,
    set_condition,
    status_due,
    status_patch,
)
from prefect_job_operator.writeback.outcomes import Condition, PoolReport, RunCounts

T0 = datetime(2026, 11, 28, 12, 0, 0, tzinfo=UTC)
T1 = T0 + timedelta(minutes=5)

HEALTHY = PoolReport(
    pool_id="11111111-2222-3333-4444-555555555555",
    pool_name="demo-pool",
    pool_type="kubernetes",
    worker_name="prefect-job-operator:default:demo-pool",
    lease_holder="pjo-0",
    api=Condition(True),
    sync=Condition(True),
    poll=Condition(True),
    last_poll_time=T0 - timedelta(seconds=3),
    last_heartbeat_time=T0 - timedelta(seconds=20),
    counts=RunCounts(pending=2, running=5, submitted=40, crashed=1, cancelled=3),
    oldest_pending_since=T0 - timedelta(seconds=42),
    job_namespaces=NamespaceReport(True, "Allowed", "Jobs may be created in: default.", False),
)


def by_type(patch: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {cond["type"]: cond for cond in patch["conditions"]}


def summary(patch: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {kind: (cond["status"], cond["reason"]) for kind, cond in by_type(patch).items()}


def test_healthy_report() -> None:
    patch = status_patch(HEALTHY, previous={}, generation=3, now=T0)
    assert patch == {
        "observedGeneration": 3,
        "conditions": patch["conditions"],
        "poolId": "11111111-2222-3333-4444-555555555555",
        "poolName": "demo-pool",
        "poolType": "kubernetes",
        "workerName": "prefect-job-operator:default:demo-pool",
        "leaseHolder": "pjo-0",
        "lastPollTime": "2026-11-28T11:59:57Z",
        "lastHeartbeatTime": "2026-11-28T11:59:40Z",
        "counts": {"pending": 2, "running": 5, "submitted": 40, "crashed": 1, "cancelled": 3},
        "oldestPendingAgeSeconds": 42,
        "message": None,
    }
    assert [cond["type"] for cond in patch["conditions"]] == list(c.CONDITION_TYPES)
    assert summary(patch) == {
        "Ready": ("True", "Ready"),
        "PoolSynced": ("True", "Synced"),
        "APIReachable": ("True", "Reachable"),
        "Polling": ("True", "Polling"),
        "JobNamespaces": ("True", "Allowed"),
    }
    for cond in patch["conditions"]:
        assert cond["lastTransitionTime"] == "2026-11-28T12:00:00Z"
        assert cond["observedGeneration"] == 3


@pytest.mark.parametrize(
    ("changes", "ready", "expected"),
    [
        pytest.param(
            {"api": Condition(False, None, "connect refused")},
            ("False", "Unreachable", "connect refused"),
            {"APIReachable": ("False", "Unreachable")},
            id="unreachable",
        ),
        pytest.param(
            {"api": Condition(False, c.REASON_UNAUTHORIZED, "401")},
            ("False", "Unauthorized", "401"),
            {"APIReachable": ("False", "Unauthorized")},
            id="unauthorized",
        ),
        pytest.param(
            {"sync": Condition(False, c.REASON_POOL_NOT_FOUND, "gone")},
            ("False", "PoolNotFound", "gone"),
            {"PoolSynced": ("False", "PoolNotFound")},
            id="pool-not-found",
        ),
        pytest.param(
            {"sync": Condition(False, None, "boom")},
            ("False", "SyncFailed", "boom"),
            {"PoolSynced": ("False", "SyncFailed")},
            id="sync-default-reason",
        ),
        pytest.param(
            {"poll": Condition(False, c.REASON_STALE, "no poll in 5m")},
            ("False", "Stale", "no poll in 5m"),
            {"Polling": ("False", "Stale")},
            id="stale",
        ),
        pytest.param(
            {"api": Condition(False), "sync": Condition(False), "poll": Condition(False)},
            ("False", "Unreachable", "Unreachable"),
            {
                "APIReachable": ("False", "Unreachable"),
                "PoolSynced": ("False", "SyncFailed"),
                "Polling": ("False", "PollFailed"),
            },
            id="api-is-the-first-culprit",
        ),
        pytest.param(
            {"poll": Condition(None)},
            ("Unknown", "Pending", "Waiting for the first sync and poll."),
            {"Polling": ("Unknown", "Pending")},
            id="not-polled-yet",
        ),
        pytest.param(
            {"invalid_spec": "spec.worker.pollIntervalSeconds: too small"},
            ("False", "InvalidSpec", "spec.worker.pollIntervalSeconds: too small"),
            {
                "PoolSynced": ("False", "InvalidSpec"),
                "Polling": ("False", "InvalidSpec"),
                "JobNamespaces": ("False", "InvalidSpec"),
            },
            id="invalid-spec",
        ),
        pytest.param(
            {"job_namespaces": NamespaceReport(False, "NamespaceForbidden", "no rights", True)},
            ("False", "NamespaceForbidden", "no rights"),
            {"JobNamespaces": ("False", "NamespaceForbidden")},
            id="no-usable-namespace-blocks-ready",
        ),
    ],
)
def test_ready_follows_the_three_conditions(
    changes: dict[str, Any],
    ready: tuple[str, str, str],
    expected: dict[str, tuple[str, str]],
) -> None:
    report = PoolReport(**{**HEALTHY.__dict__, **changes})
    patch = status_patch(report, previous={}, generation=1, now=T0)
    got = by_type(patch)
    assert (got["Ready"]["status"], got["Ready"]["reason"], got["Ready"]["message"]) == ready
    healthy = summary(status_patch(HEALTHY, previous={}, generation=1, now=T0))
    assert summary(patch) == {**healthy, "Ready": ready[:2], **expected}
    assert patch["message"] == ready[2]


@pytest.mark.parametrize(
    ("namespaces", "expected", "message"),
    [
        (
            NamespaceReport(False, "NamespaceNotPermitted", "'etl' is not allowed", False),
            ("False", "NamespaceNotPermitted"),
            "'etl' is not allowed",
        ),
        (None, ("Unknown", "Pending"), None),
    ],
    ids=["some-namespace-refused", "not-checked-yet"],
)
def test_namespace_problems_that_leave_a_usable_namespace_keep_ready(
    namespaces: NamespaceReport | None, expected: tuple[str, str], message: str | None
) -> None:
    """The pool still works in its other namespaces: Ready stays True, the condition and the
    status message say what is refused."""
    report = PoolReport(**{**HEALTHY.__dict__, "job_namespaces": namespaces})
    got = summary(status_patch(report, previous={}, generation=1, now=T0))
    assert got["Ready"] == ("True", "Ready")
    assert got["JobNamespaces"] == expected
    assert status_patch(report, previous={}, generation=1, now=T0)["message"] == message


def test_transition_time_moves_only_when_status_changes() -> None:
    first = status_patch(HEALTHY, previous={}, generation=1, now=T0)
    broken = PoolReport(**{**HEALTHY.__dict__, "poll": Condition(False, None, "x")})
    second = status_patch(broken, previous=first, generation=2, now=T1)
    got = by_type(second)
    assert got["APIReachable"]["lastTransitionTime"] == rfc3339(T0)
    assert got["PoolSynced"]["lastTransitionTime"] == rfc3339(T0)
    assert got["Polling"]["lastTransitionTime"] == rfc3339(T1)
    assert got["Ready"]["lastTransitionTime"] == rfc3339(T1)
    assert all(cond["observedGeneration"] == 2 for cond in second["conditions"])


def test_unknown_fields_are_left_alone_and_problems_are_cleared() -> None:
    report = PoolReport(api=Condition(True))
    patch = status_patch(report, previous={"poolId": "keep"}, generation=1, now=T0)
    for key in ("poolId", "poolName", "lastPollTime", "lastHeartbeatTime", "leaseHolder"):
        assert key not in patch  # merge patch: absent keeps the previous value
    assert patch["oldestPendingAgeSeconds"] is None  # None deletes
    assert patch["counts"] == {
        "pending": 0,
        "running": 0,
        "submitted": 0,
        "crashed": 0,
        "cancelled": 0,
    }


def test_foreign_conditions_are_kept_after_ours() -> None:
    previous = {"conditions": [{"type": "Custom", "status": "True", "reason": "X"}]}
    patch = status_patch(HEALTHY, previous=previous, generation=1, now=T0)
    assert [cond["type"] for cond in patch["conditions"]] == [*c.CONDITION_TYPES, "Custom"]


@pytest.mark.parametrize(
    ("status", "word"),
    [(True, "True"), (False, "False"), (None, "Unknown"), ("Unknown", "Unknown")],
)
def test_set_condition_status_words(status: bool | str | None, word: str) -> None:
    conds = set_condition([], "Ready", status, "R", "m", T0, 1)
    assert conds == [
        {
            "type": "Ready",
            "status": word,
            "reason": "R",
            "message": "m",
            "lastTransitionTime": "2026-11-28T12:00:00Z",
            "observedGeneration": 1,
        }
    ]


def test_set_condition_rejects_bad_words_and_keeps_input_unchanged() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        set_condition([], "Ready", "yes", "R", "m", T0, 1)
    original = [{"type": "Ready", "status": "True", "reason": "A", "lastTransitionTime": "t"}]
    updated = set_condition(original, "Ready", True, "B", "m", T1, 2)
    assert original[0]["reason"] == "A"
    assert updated[0]["reason"] == "B" and updated[0]["lastTransitionTime"] == "t"


def test_long_messages_are_truncated() -> None:
    conds = set_condition([], "Ready", False, "R", "x" * 5000, T0, 1)
    assert len(conds[0]["message"]) == MAX_MESSAGE_LENGTH
    assert conds[0]["message"].endswith("...")


def test_naive_and_offset_times_become_utc_z() -> None:
    assert rfc3339(datetime(2026, 1, 2, 3, 4, 5, 999)) == "2026-01-02T03:04:05Z"
    plus_two = timezone(timedelta(hours=2))
    assert rfc3339(datetime(2026, 1, 2, 7, 4, 5, tzinfo=plus_two)) == "2026-01-02T05:04:05Z"


def test_pending_age_is_never_negative() -> None:
    report = PoolReport(oldest_pending_since=T1)
    assert status_patch(report, previous={}, generation=1, now=T0)["oldestPendingAgeSeconds"] == 0


def test_live_pause_and_limit_reach_the_status_only_when_read() -> None:
    from prefect_job_operator.dispatch.worker import live_pause_and_limit

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert live_pause_and_limit({}) == (None, None)
    assert live_pause_and_limit({"id": "p", "is_paused": True, "concurrency_limit": 3}) == (
        True,
        3,
    )
    paused, limit = live_pause_and_limit({"id": "p", "is_paused": False})
    assert (paused, limit) == (False, "Unlimited")
    patch = status_patch(
        PoolReport(pool_paused=paused, pool_concurrency_limit=limit),
        previous={},
        generation=1,
        now=now,
    )
    assert (patch["paused"], patch["concurrencyLimit"]) == (False, "Unlimited")
    unknown = status_patch(PoolReport(), previous={}, generation=1, now=now)
    assert "paused" not in unknown and "concurrencyLimit" not in unknown


@pytest.mark.parametrize(
    ("last", "since_last", "due"),
    [
        (None, 0.0, True),  # nothing written yet in this term
        ({"counts": {"pending": 1}}, 1.0, True),  # changed
        ({"counts": {"pending": 0}}, 1.0, False),  # unchanged, recent
        ({"counts": {"pending": 0}}, STATUS_REFRESH_SECONDS, True),  # unchanged, refreshed
    ],
)
def test_status_is_written_when_it_changed_or_once_a_minute(
    last: dict[str, Any] | None, since_last: float, due: bool
) -> None:
    assert status_due({"counts": {"pending": 0}}, last, since_last) is due

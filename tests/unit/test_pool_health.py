"""One condition type and one staleness rule: `Health.polling` decides the Polling condition
the CR status shows (pure, table-driven)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prefect_job_operator.api import conditions as c
from prefect_job_operator.dispatch.runtime import Health
from prefect_job_operator.writeback.outcomes import (
    POLL_STALE_FACTOR,
    Condition,
    poll_is_stale,
    stale_poll,
)

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
INTERVAL = 10.0
POLLING = Condition(True, c.REASON_POLLING)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("health", "expected"),
    [
        pytest.param(Health(leader=True), Condition(), id="not-polled-yet"),
        pytest.param(
            Health(leader=True, poll=POLLING, last_poll=ago(INTERVAL * 30)), POLLING, id="fresh"
        ),
        pytest.param(
            Health(leader=True, poll=POLLING, last_poll=ago(INTERVAL * 30 + 1)),
            Condition(False, c.REASON_STALE, "No successful poll for more than 300.0s."),
            id="stale",
        ),
        pytest.param(
            Health(leader=True, poll=Condition(False, c.REASON_POLL_FAILED, "500"), last_poll=None),
            Condition(False, c.REASON_POLL_FAILED, "500"),
            id="failed-poll-stays",
        ),
        pytest.param(
            Health(leader=False, lease_holder="pjo-1", poll=POLLING, last_poll=ago(1)),
            Condition(
                False, c.REASON_NOT_LEADER, "Another replica (pjo-1) holds this pool's Lease."
            ),
            id="standby",
        ),
        pytest.param(
            Health(
                leader=True,
                poll=POLLING,
                last_poll=ago(INTERVAL * 100),
                loop_errors={
                    "sweep": "The sweep loop failed: X",
                    "poll": "The poll loop failed: Y",
                },
            ),
            Condition(
                False,
                c.REASON_LOOP_FAILED,
                "The poll loop failed: Y; The sweep loop failed: X",
            ),
            id="loop-failure-before-staleness",
        ),
    ],
)
def test_polling_condition(health: Health, expected: Condition) -> None:
    assert health.polling(INTERVAL, NOW) == expected


@pytest.mark.parametrize(
    ("last_poll", "interval", "stale"),
    [
        (None, 10, False),
        (ago(10 * POLL_STALE_FACTOR), 10, False),
        (ago(10 * POLL_STALE_FACTOR + 1), 10, True),
        (ago(59), 2, False),
        (ago(61), 2, True),
    ],
)
def test_staleness_is_thirty_poll_intervals(
    last_poll: datetime | None, interval: float, stale: bool
) -> None:
    assert poll_is_stale(last_poll, interval, NOW) is stale
    assert stale_poll(interval).reason == c.REASON_STALE

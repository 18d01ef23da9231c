"""The clock seam of the unit tests: a test moves time forward instead of writing old
timestamps into the operator's state. Every module reads the time through `clock.now()`, so
replacing that one function moves it for all of them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from prefect_job_operator import clock


class FakeClock:
    """Stands still until told to move."""

    def __init__(self, start: datetime | None = None) -> None:
        self.moment = start or datetime.now(UTC)

    def now(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> datetime:
        self.moment += timedelta(seconds=seconds)
        return self.moment


def frozen(monkeypatch: pytest.MonkeyPatch, start: datetime | None = None) -> FakeClock:
    """Install a FakeClock as `clock.now` for the rest of the test."""
    fake = FakeClock(start)
    monkeypatch.setattr(clock, "now", fake.now)
    return fake

"""The Prefect client's retry policy as a pure function of one attempt's outcome.

It follows the Prefect client (``prefect/client/base.py``): transport errors and
408/429/502/503 back off exponentially with jitter and honour ``Retry-After``, at most
``max_retries`` times; a ``Prefect-Maintenance: true`` response is retried until a long
deadline. SQLite maps ``SQLITE_BUSY`` to 503, so every write can need a retry. The client's
loop only sends, asks :func:`retry_delay` and sleeps.
"""

from __future__ import annotations

import email.utils
import random
from dataclasses import dataclass
from datetime import UTC
from typing import Final

from prefect_job_operator import clock

RETRYABLE_STATUSES: Final = frozenset({408, 429, 502, 503})
MAX_MAINTENANCE_EXPONENT: Final = 20
"""Maintenance retries go on past ``max_retries``; the backoff exponent stops growing here."""


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to retry (the defaults are the operator's, not Prefect's)."""

    max_retries: int = 6
    backoff_base: float = 0.25
    backoff_cap: float = 10.0
    jitter: float = 0.2
    retry_after_cap: float = 60.0
    maintenance_deadline: float = 900.0

    def backoff(self, attempt: int, draw: float | None = None) -> float:
        """Seconds before retry number ``attempt`` (0-based): base·2^n, capped, plus jitter.

        ``draw`` in [0, 1] picks the jitter (random when None), so tests can pin it.
        """
        delay: float = min(self.backoff_cap, self.backoff_base * 2.0**attempt)
        fraction = random.random() if draw is None else draw
        return delay * (1 + fraction * self.jitter)


@dataclass(frozen=True)
class Outcome:
    """What one attempt saw: a status (None: a transport error) and the retry headers."""

    status: int | None
    maintenance: bool = False
    retry_after: float | None = None


def retry_delay(
    policy: RetryPolicy, attempt: int, outcome: Outcome, elapsed: float, draw: float | None = None
) -> float | None:
    """Seconds to wait before attempt ``attempt + 1``, or None: do not retry.

    ``elapsed`` is the time since the first attempt (the maintenance deadline's clock).
    """
    if outcome.maintenance:
        if elapsed >= policy.maintenance_deadline:
            return None
        if outcome.retry_after is not None:
            return min(outcome.retry_after, policy.retry_after_cap)
        return policy.backoff(min(attempt, MAX_MAINTENANCE_EXPONENT), draw)
    retryable = outcome.status is None or outcome.status in RETRYABLE_STATUSES
    if not retryable or attempt >= policy.max_retries:
        return None
    if outcome.retry_after is not None:
        return min(outcome.retry_after, policy.retry_after_cap)
    return policy.backoff(attempt, draw)


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` as seconds from now: delta-seconds or an HTTP date; None if absent."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - clock.now()).total_seconds())

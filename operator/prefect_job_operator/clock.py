"""The current time, defined once: timezone-aware UTC, the zone of every Kubernetes and Prefect
timestamp the operator reads or writes.

The lowest layer (imports nothing of ours), so every module may use it; call it as
`clock.now()` so a test can replace the one function instead of each module's copy.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current moment, timezone-aware in UTC."""
    return datetime.now(UTC)

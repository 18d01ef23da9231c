"""One definition of "now": aware UTC, and no module keeps its own copy."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

from prefect_job_operator import clock

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "prefect_job_operator"
_COPY = re.compile(r"datetime\.(now|utcnow)\(|\btime\.time\(\)")


def test_now_is_aware_utc_and_current() -> None:
    before = datetime.now(UTC)
    moment = clock.now()
    after = datetime.now(UTC)
    assert moment.utcoffset() == timedelta(0)
    assert before <= moment <= after


def test_no_module_defines_its_own_now() -> None:
    copies = {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if path.name != "clock.py" and _COPY.search(path.read_text())
    }
    assert not copies, f"use clock.now() in {sorted(copies)}"

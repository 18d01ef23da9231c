"""Loaded by a subject's interpreter when this folder is on its PYTHONPATH (memory scenario).

With ``PJO_BENCH_TRACEMALLOC_DIR`` set: ``tracemalloc`` starts before anything is imported,
and each SIGUSR1 dumps a snapshot to ``<dir>/snapshot-<n>.pickle`` (then touches
``<n>.done``), which the harness compares between sizes. Never loaded by the operator's image.
"""

from __future__ import annotations

import os
import signal
import tracemalloc
from pathlib import Path
from types import FrameType

_DIR = os.environ.get("PJO_BENCH_TRACEMALLOC_DIR")


def _dump(signum: int, frame: FrameType | None) -> None:
    assert _DIR is not None
    out = Path(_DIR)
    n = len(list(out.glob("snapshot-*.pickle")))
    snap = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(False, tracemalloc.__file__)]
    )
    snap.dump(str(out / f"snapshot-{n}.pickle"))
    (out / f"{n}.done").touch()


if _DIR:
    tracemalloc.start(int(os.environ.get("PJO_BENCH_TRACEMALLOC_FRAMES", "8")))
    signal.signal(signal.SIGUSR1, _dump)

"""The README's main command, as written: `make demo` completes a real flow run.

It builds (or reuses) everything on a fresh machine, installs the chart on the real node, and
the operator Pod dispatches a flow run that executes in a container of the flow-run image.
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]


def test_make_demo_completes_a_flow_run_in_a_container() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PJO_", "PREFECT_"))}
    started = time.monotonic()
    proc = subprocess.run(
        ["make", "demo"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=1800
    )
    elapsed = time.monotonic() - started
    print(proc.stdout[-4000:])
    print(f"make demo: exit {proc.returncode} in {elapsed:.1f}s")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert re.search(r"Flow run COMPLETED in [\d.]+s since the demo started — OK", proc.stdout)
    # the flow ran in a container of the flow-run image, and exited 0 there
    assert re.search(r"image \S*prefecthq/prefect:\S+ +exit code 0", proc.stdout), proc.stdout[
        -4000:
    ]

#!/usr/bin/env python3
"""Regenerate the files derived from the code: the WorkPool CRD in crds/ and its chart copy.

Run after changing `operator/prefect_job_operator/api/`; `tests/unit/test_crdgen.py` fails
until you do. The chart copy is written only when the chart directory exists.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "operator"))

from prefect_job_operator.api.crdgen import CRD_FILENAME, render_crd_yaml  # noqa: E402

CHART_CRDS = ROOT / "charts" / "prefect-job-operator" / "crds"


def main() -> int:
    """Write every generated file; print the ones that changed."""
    text = render_crd_yaml()
    targets = [ROOT / "crds" / CRD_FILENAME]
    if CHART_CRDS.parent.is_dir():
        targets.append(CHART_CRDS / CRD_FILENAME)
    for path in targets:
        if path.exists() and path.read_text() == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

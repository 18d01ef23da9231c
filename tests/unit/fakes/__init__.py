"""In-memory stand-ins for the Prefect API and the Kubernetes API, for fast unit tests.

Both are injected into the pool's `Ports` (never monkeypatched) and implement the ports
(`PrefectPort`, `KubePort`) as subclasses, so mypy checks every signature against the
Protocol the operator is written to. The JSON they hand out has the shape the real APIs
return. One module each: ``prefect`` (the Prefect fake), ``kube`` (the Kubernetes fake),
``builders`` (CR, runtime, Job and Pod JSON); every name is re-exported here.
"""

from __future__ import annotations

from tests.unit.fakes.builders import (
    POOL_ID,
    job_condition,
    job_json,
    make_runtime,
    pod_json,
    workpool_body,
)
from tests.unit.fakes.clock import iso, now
from tests.unit.fakes.kube import FakeKube
from tests.unit.fakes.prefect import TERMINAL, FakePrefectClient, state_json

__all__ = [
    "POOL_ID",
    "TERMINAL",
    "FakeKube",
    "FakePrefectClient",
    "iso",
    "job_condition",
    "job_json",
    "make_runtime",
    "now",
    "pod_json",
    "state_json",
    "workpool_body",
]

"""Pure Job rendering: work pool template + deployment + flow run → Kubernetes Job.

Reproduces prefect-kubernetes 0.8.0 (docs/compatibility.md lists the deliberate
differences). No I/O: block documents and variables come in as `ResolvedReferences`.
"""

from prefect_job_operator.rendering.contracts import (
    References,
    RenderedJob,
    ResolvedReferences,
    SecretKeyRef,
    WorkerContext,
)
from prefect_job_operator.rendering.default_template import (
    default_base_job_template,
    default_job_namespace,
    is_stock_template,
)
from prefect_job_operator.rendering.errors import RenderError
from prefect_job_operator.rendering.naming import job_name
from prefect_job_operator.rendering.render import collect_references, render_job

__all__ = [
    "References",
    "RenderError",
    "RenderedJob",
    "ResolvedReferences",
    "SecretKeyRef",
    "WorkerContext",
    "collect_references",
    "default_base_job_template",
    "default_job_namespace",
    "is_stock_template",
    "job_name",
    "render_job",
]

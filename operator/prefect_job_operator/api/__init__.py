"""The WorkPool custom resource: models, condition names and CRD generation (pure)."""

from prefect_job_operator.api.v1alpha1 import (
    InvalidSpecError,
    WorkPoolSpec,
    WorkPoolStatus,
)

__all__ = ["InvalidSpecError", "WorkPoolSpec", "WorkPoolStatus"]

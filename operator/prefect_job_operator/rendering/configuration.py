"""The resolved job configuration, validated like `KubernetesWorkerJobConfiguration`.

The pydantic field types are upstream's, so coercion (`"60"` → 60, env values → str) and
type errors are the same; the manifest check reports upstream's messages.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator

from prefect_job_operator.api.v1alpha1 import JOB_CONTAINER_NAME
from prefect_job_operator.rendering.errors import RenderError

_REQUIRED_MANIFEST: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"annotations": {}, "labels": {}},
    "spec": {
        "template": {
            "spec": {
                "parallelism": 1,
                "completions": 1,
                "restartPolicy": "Never",
                "containers": [{"name": JOB_CONTAINER_NAME}],
            }
        }
    },
}


class JobConfiguration(BaseModel):
    """The fields of a Kubernetes work pool's job configuration (unknown keys are ignored)."""

    command: str | None = None
    env: dict[str, str | None] | list[dict[str, Any]] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    name: str | None = None
    annotations: dict[str, str] = Field(default_factory=dict)
    namespace: str = "default"
    job_manifest: dict[str, Any]
    cluster_config: Any = None
    job_watch_timeout_seconds: int | None = None
    pod_watch_timeout_seconds: int = 60
    stream_output: bool = True

    @field_validator("command")
    @classmethod
    def _empty_command_is_none(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("env", mode="before")
    @classmethod
    def _stringify_env(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {k: None if v is None else str(v) for k, v in value.items()}
        return value


def _describe(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        where = ".".join(str(p) for p in item["loc"]) or "job configuration"
        parts.append(f"{where}: {item['msg']}")
    return "; ".join(parts)


def validate_configuration(data: dict[str, Any]) -> JobConfiguration:
    """Build the configuration; any type problem becomes a RenderError naming the field."""
    try:
        config = JobConfiguration(**data)
    except ValidationError as exc:
        raise RenderError(f"invalid job configuration: {_describe(exc)}") from None
    if config.cluster_config is not None:
        raise RenderError(
            "job variable 'cluster_config' is not supported: the operator creates Jobs in "
            "its own cluster (remove cluster_config from the deployment or work pool)"
        )
    complete_manifest(config.job_manifest, config.namespace)
    return config


def complete_manifest(manifest: dict[str, Any], namespace: str) -> None:
    """Add empty metadata/annotations/labels and the namespace, then check required values."""
    metadata = manifest.setdefault("metadata", {})
    if not isinstance(metadata, dict):
        raise RenderError(
            f"Job has incompatible values for the following attributes: /metadata must be "
            f"an object, got {type(metadata).__name__}"
        )
    metadata.setdefault("annotations", {})
    metadata.setdefault("labels", {})
    metadata.setdefault("namespace", namespace)

    missing: list[str] = []
    incompatible: list[str] = []
    _compare(manifest, _REQUIRED_MANIFEST, "", missing, incompatible)
    if missing:
        raise RenderError(
            "Job is missing required attributes at the following paths: "
            + ", ".join(sorted(missing))
        )
    if incompatible:
        raise RenderError(
            "Job has incompatible values for the following attributes: "
            + ", ".join(sorted(incompatible))
        )


def _compare(
    actual: Any, required: Any, path: str, missing: list[str], incompatible: list[str]
) -> None:
    """Like upstream's JSON-patch diff against the required skeleton: add → missing,
    replace → incompatible. Lists compare their first item (the Prefect container)."""
    if isinstance(required, dict):
        if not isinstance(actual, dict):
            incompatible.append(f"{path} must have value {required!r}")
            return
        for key, sub in required.items():
            if key not in actual:
                missing.append(f"{path}/{key}")
            else:
                _compare(actual[key], sub, f"{path}/{key}", missing, incompatible)
    elif isinstance(required, list):
        if not isinstance(actual, list):
            incompatible.append(f"{path} must have value {required!r}")
        elif not actual:
            missing.append(f"{path}/0")
        elif not isinstance(actual[0], dict):
            incompatible.append(f"{path}/0 must have value {required[0]!r}")
        else:
            _compare(actual[0], required[0], f"{path}/0", missing, incompatible)
    elif json.dumps(actual, sort_keys=True, default=str) != json.dumps(required):
        incompatible.append(f"{path} must have value {required!r}")

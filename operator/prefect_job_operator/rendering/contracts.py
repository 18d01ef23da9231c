"""The data that goes into and comes out of rendering (frozen, plain, JSON-friendly)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

DEFAULT_PREFECT_VERSION = "3.9.1"
DEFAULT_IMAGE = "prefecthq/prefect:3.9.1-python3.11"


@dataclass(frozen=True)
class SecretKeyRef:
    """A key of a Kubernetes Secret in the Job's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class WorkerContext:
    """What upstream takes from the worker process; here it is explicit input.

    `prefect_env` are the plain settings the worker copies into every Job (upstream: the
    explicitly set Prefect settings). Credentials never travel as plain values: they go in
    `secret_env` and become `valueFrom.secretKeyRef` entries.
    `template_env` answers `{{ $NAME }}` placeholders (upstream reads the worker's
    `os.environ`); it is empty unless the caller decides what a template may read.
    """

    worker_name: str
    work_pool_name: str
    work_pool_id: str
    prefect_env: Mapping[str, str]
    secret_env: Mapping[str, SecretKeyRef]
    default_image: str = DEFAULT_IMAGE
    operator_labels: Mapping[str, str] = field(default_factory=dict)
    operator_annotations: Mapping[str, str] = field(default_factory=dict)
    worker_id: str | None = None
    prefect_version: str = DEFAULT_PREFECT_VERSION
    template_env: Mapping[str, str] = field(default_factory=dict)
    store_env_as_secret: bool = False
    strict_template_env: bool = False
    """A `{{ $NAME }}` whose NAME is not in `template_env` is a RenderError (the operator's
    rule), not "" (upstream's, kept for the oracle cases)."""
    credential_secrets: Mapping[str, str] = field(default_factory=dict)
    """Credentials (PREFECT_API_KEY / PREFECT_API_AUTH_STRING → value) that go into a per-Job
    Secret (`create_secret_for_api_key`); the Job reads them by secretKeyRef."""


@dataclass(frozen=True)
class References:
    """What a template plus job variables refer to, found by a pure scan."""

    blocks: frozenset[tuple[str, str]] = frozenset()
    block_ids: frozenset[str] = frozenset()
    variables: frozenset[str] = frozenset()


@dataclass(frozen=True)
class ResolvedReferences:
    """The answers: block document `data` by (type slug, name) or id, variable values.

    Leave out what does not exist: a missing variable renders as "" (like upstream), a
    missing block is a RenderError only if the rendered configuration really uses it.
    """

    blocks: Mapping[tuple[str, str], Any] = field(default_factory=dict)
    block_ids: Mapping[str, Any] = field(default_factory=dict)
    variables: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RenderedJob:
    """A Job ready to POST, and the Secrets that must exist before it.

    When `secrets` is not empty, create them first, then the Job, then patch each Secret
    with an ownerReference to the Job so that Kubernetes deletes them together.
    """

    manifest: dict[str, Any]
    namespace: str
    name: str
    secrets: list[dict[str, Any]]
    pod_watch_timeout_seconds: int | None
    job_watch_timeout_seconds: int | None
    stream_output: bool

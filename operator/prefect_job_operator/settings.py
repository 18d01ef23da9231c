"""Operator-wide settings, read once from the environment by the CLI.

Environment variables use the prefix ``PJO_``. The Prefect connection falls back to the
variables Prefect users already set (``PREFECT_API_URL``, ``PREFECT_API_KEY``,
``PREFECT_API_AUTH_STRING``), so the operator drops in where a worker ran.
"""

from __future__ import annotations

import json
from functools import cached_property
from typing import Annotated

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from prefect_job_operator.api.job_namespaces import NamespacePolicy, parse_policy
from prefect_job_operator.security.job_credentials import parse_namespaces
from prefect_job_operator.security.urls import UnsafeURLError, parse_allowlist


def split_list(value: object) -> object:
    """`a,b` or `["a","b"]` from the environment; other inputs pass through to validation."""
    if not isinstance(value, str):
        return value
    text = value.strip()
    if text.startswith("["):
        return json.loads(text)  # a JSONDecodeError is a ValueError: a validation error
    return [item.strip() for item in text.split(",") if item.strip()]


# A list setting: comma-separated (PJO_NAMESPACES=a,b) or JSON (PJO_NAMESPACES='["a","b"]').
CommaList = Annotated[list[str], NoDecode, BeforeValidator(split_list)]


class OperatorSettings(BaseSettings):
    """Defaults for every WorkPool; a WorkPool's spec overrides them."""

    model_config = SettingsConfigDict(env_prefix="PJO_", extra="ignore")

    instance: str = Field(
        "prefect-job-operator",
        description="Name of this operator installation; the server-side label selector of its "
        "Job and Pod watches, so two installations never see each other's Jobs.",
    )
    api_url: str | None = Field(
        None,
        validation_alias=AliasChoices("PJO_API_URL", "PREFECT_API_URL"),
        description="Default Prefect API URL, e.g. http://prefect-server:4200/api.",
    )
    api_key: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("PJO_API_KEY", "PREFECT_API_KEY"),
        description="Default Prefect Cloud API key of the operator's own calls.",
    )
    api_auth_string: SecretStr | None = Field(
        None,
        validation_alias=AliasChoices("PJO_API_AUTH_STRING", "PREFECT_API_AUTH_STRING"),
        description="Default basic-auth string `user:password` of a self-hosted Prefect server.",
    )
    api_ssl_cert_file: str | None = Field(
        None,
        validation_alias=AliasChoices("PJO_API_SSL_CERT_FILE", "PREFECT_API_SSL_CERT_FILE"),
        description="PEM file of the CAs that verify the Prefect API's certificate (mount it "
        "with the chart's extraVolumes); default: the system's CAs (SSL_CERT_FILE). A "
        "WorkPool's spec.api.tls overrides it.",
    )
    api_tls_insecure_skip_verify: bool = Field(
        False,
        validation_alias=AliasChoices(
            "PJO_API_TLS_INSECURE_SKIP_VERIFY", "PREFECT_API_TLS_INSECURE_SKIP_VERIFY"
        ),
        description="Do not verify the Prefect API's certificate (development only).",
    )
    client_custom_headers: dict[str, str] = Field(
        default_factory=dict,
        validation_alias=AliasChoices("PJO_CLIENT_CUSTOM_HEADERS", "PREFECT_CLIENT_CUSTOM_HEADERS"),
        description="Extra headers on every Prefect API request, a JSON object such as "
        '{"X-Proxy-Token": "abc"}. Authorization only without an API key or auth string; '
        "never User-Agent or the CSRF headers. A WorkPool's spec.api.headers are added on top.",
    )
    api_request_timeout: float = Field(
        30.0,
        gt=0,
        le=600,
        validation_alias=AliasChoices("PJO_API_REQUEST_TIMEOUT", "PREFECT_API_REQUEST_TIMEOUT"),
        description="Seconds one Prefect API request may take.",
    )
    client_max_retries: int = Field(
        6,
        ge=0,
        le=20,
        validation_alias=AliasChoices("PJO_CLIENT_MAX_RETRIES", "PREFECT_CLIENT_MAX_RETRIES"),
        description="Retries of a Prefect API request after a transport error or 408/429/502/503 "
        "(with backoff; Retry-After honoured).",
    )
    allowed_api_urls: str = Field(
        "",
        description="Comma-separated Prefect API URL prefixes (scheme, host, port and leading "
        "path segments) that a WorkPool's spec.api.url may name besides api_url; '*' allows any. "
        "Such pools get only their own credentials, never api_key/api_auth_string. Default: "
        "none (WorkPools use api_url only).",
    )
    operator_key_namespaces: str = Field(
        "",
        description="Comma-separated namespaces (or patterns, '*' matching any characters) "
        "whose WorkPools may have the operator-wide api_key/api_auth_string copied into "
        "per-Job Secrets (worker.createSecretForApiKey); both the WorkPool's and the Job's "
        "namespace must match. Default: none (the chart: its own namespace). A WorkPool "
        "with its own apiKeySecretRef is not affected.",
    )
    api_key_secret_name: str | None = Field(
        None,
        description="Kubernetes Secret (in each Job namespace) holding the API key that Jobs "
        "receive as a secretKeyRef; the key is never written into a Job in plain text.",
    )
    api_key_secret_key: str = Field("api-key", description="Key of the API key in that Secret.")
    api_auth_string_secret_name: str | None = Field(
        None,
        description="Kubernetes Secret (in each Job namespace) holding the basic-auth string "
        "that Jobs receive as PREFECT_API_AUTH_STRING (a secretKeyRef).",
    )
    api_auth_string_secret_key: str = Field(
        "auth-string", description="Key of the basic-auth string in that Secret."
    )
    namespaces: CommaList = Field(
        default_factory=list,
        description="Namespaces whose WorkPools, Jobs and Pods this operator watches; empty means "
        "cluster-wide.",
    )
    job_namespace_policy: str = Field(
        "",
        description="Which other namespaces the Jobs of WorkPools in a namespace may go to "
        "(a WorkPool's own namespace is always allowed; nothing else by default): "
        '\'data=data,etl-*;ops=*\' or JSON {"data": ["etl-*"], "ops": ["*"]}. '
        "Keys and targets are namespaces; '*' matches any characters ('*=*' opens every "
        "namespace to every WorkPool: single-tenant clusters only).",
    )
    workpool_selector: str | None = Field(
        None,
        description="Label selector of the WorkPools this installation runs (server-side), e.g. "
        "'team=data'; default: every WorkPool it can see. Lets several installations share a "
        "cluster.",
    )
    webhook_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="HTTPS port of the WorkPool validating admission webhook (the author's "
        "rights, checked with SubjectAccessReviews); unset: no webhook.",
    )
    webhook_host: str = Field("0.0.0.0", description="Address the webhook listens on.")
    webhook_cert_dir: str | None = Field(
        None,
        description="Directory with the webhook's tls.crt and tls.key (a mounted "
        "kubernetes.io/tls Secret; re-read when they change). Required with webhook_port.",
    )
    health_host: str = Field("0.0.0.0", description="Address of /healthz, /readyz and /metrics.")
    health_port: int = Field(
        8080, ge=0, le=65535, description="Port of /healthz, /readyz and /metrics."
    )
    liveness_stall_seconds: float = Field(
        900.0,
        gt=0,
        description="/healthz fails when a pool's loop (poll, heartbeat, sweep, status, lease) has "
        "not finished an iteration for its interval plus this long: the operator itself is "
        "stuck. A Prefect outage never trips it (calls time out and the loops go on).",
    )
    liveness_loop_lag_seconds: float = Field(
        30.0,
        gt=0,
        description="/healthz fails when the event loop was blocked for longer than this.",
    )
    default_image: str = Field(
        "prefecthq/prefect:3.9.1-python3.11",
        description="Image of a Job whose template and job variables name none (upstream's rule).",
    )
    lease_duration_seconds: int = Field(
        15,
        ge=5,
        description="Lifetime of a WorkPool's Lease: a standby replica takes the pool over this "
        "long after its holder stopped renewing it.",
    )
    identity: str | None = Field(
        None,
        validation_alias=AliasChoices("PJO_IDENTITY", "POD_NAME"),
        description="This replica's Lease holder identity; default: the host name.",
    )
    cancel_grace_seconds: float = Field(
        30.0,
        ge=0,
        description="How long a running flow may take to cancel itself before its Job is deleted.",
    )
    crash_log_tail_lines: int = Field(
        500,
        ge=0,
        validation_alias=AliasChoices(
            "PJO_CRASH_LOG_TAIL_LINES",
            "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_FORWARD_CRASHED_RUN_LOGS_TAIL_LINES",
        ),
        description="Lines of a crashed pod's log forwarded to the flow run's logs (upstream's "
        "forward_crashed_run_logs_tail_lines, same default); 0 turns forwarding off.",
    )
    infrastructure_pending_after_seconds: float = Field(
        5.0,
        ge=0,
        description="Propose Pending 'InfrastructurePending' for a pod still waiting after this "
        "long (0: as soon as a pod is Pending, like the upstream observer; that costs one state "
        "proposal per run).",
    )
    sweep_interval_seconds: float = Field(
        10.0, gt=0, description="Seconds between two sweeps for cancelling runs."
    )
    recovery_sweep_interval_seconds: float = Field(
        30.0,
        gt=0,
        description="Seconds between two recovery sweeps (Pending runs without a Job, Running "
        "runs whose Job is gone). Each lists every such run of the pool, so it is the most "
        "expensive call the operator makes; the first one runs as soon as a replica leads.",
    )
    submit_retry_seconds: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="How long a claimed run's Job create is retried while the Kubernetes API is "
        "unreachable or failing (5xx/429); after that the run stays Pending for the recovery "
        "sweep. Such a fault never crashes a run.",
    )
    status_interval_seconds: float = Field(
        5.0,
        gt=0,
        description="Seconds between two checks of a WorkPool's status; it is written when it "
        "changed, and at least once a minute.",
    )
    log_format: str = Field(
        "json", pattern="^(json|plain)$", description="Log format: `json` or `plain`."
    )

    @field_validator("operator_key_namespaces")
    @classmethod
    def _check_operator_key_namespaces(cls, value: str) -> str:
        parse_namespaces(value)
        return value

    @cached_property
    def operator_key_namespace_list(self) -> tuple[str, ...]:
        """`operator_key_namespaces`, parsed."""
        return parse_namespaces(self.operator_key_namespaces)

    @field_validator("job_namespace_policy")
    @classmethod
    def _policy(cls, value: str) -> str:
        parse_policy(value)  # a bad policy stops the operator at startup, with the form
        return value

    @cached_property
    def namespace_policy(self) -> NamespacePolicy:
        """`job_namespace_policy`, parsed."""
        return parse_policy(self.job_namespace_policy)

    @field_validator("allowed_api_urls")
    @classmethod
    def _check_allowlist(cls, value: str) -> str:
        try:
            parse_allowlist(value.split(","))
        except UnsafeURLError as exc:
            raise ValueError(f"PJO_ALLOWED_API_URLS: {exc}") from None
        return value

    @property
    def allowed_api_url_list(self) -> list[str]:
        """`allowed_api_urls` split on commas, blanks dropped."""
        return [u.strip() for u in self.allowed_api_urls.split(",") if u.strip()]

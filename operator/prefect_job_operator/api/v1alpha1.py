"""The WorkPool custom resource, version v1alpha1: spec/status models and the keys we stamp.

The pydantic models are the single source of truth: `api.crdgen` turns them (descriptions,
defaults, bounds and the CEL rules in ``x-kubernetes-validations``) into the CRD, and the
handlers parse every CR body through `WorkPoolSpec.from_cr`, which applies the defaults that
depend on metadata and re-checks what CEL cannot.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Final, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict, JsonValue

GROUP: Final = "prefect-job-operator.dev"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
KIND: Final = "WorkPool"
PLURAL: Final = "workpools"
SINGULAR: Final = "workpool"
SHORT_NAMES: Final = ("wp",)
CATEGORIES: Final = ("prefect",)
CRD_NAME: Final = f"{PLURAL}.{GROUP}"

# Labels and annotations on the Jobs and Pods we create (one place, so watches and sweeps agree).
LABEL_OPERATOR: Final = "prefect-job-operator.dev/operator"
"""Value: the operator instance; the server-side selector of our Job and Pod watches."""
LABEL_WORKPOOL: Final = "prefect-job-operator.dev/workpool"
"""Value: the WorkPool CR's name."""
ANNOTATION_WORKPOOL: Final = "prefect-job-operator.dev/workpool-ref"
"""Value: "<namespace>/<name>" of the WorkPool CR (labels cannot hold a slash)."""
LABEL_FLOW_RUN_ID: Final = "prefect.io/flow-run-id"
LABEL_WORK_POOL_ID: Final = "prefect.io/work-pool-id"
ANNOTATION_CLAIM: Final = "prefect-job-operator.dev/claim-id"
"""Value: id of the Pending state our claim won; part of the deterministic Job name."""
ANNOTATION_POD_WATCH_TIMEOUT: Final = "prefect-job-operator.dev/pod-watch-timeout-seconds"
ANNOTATION_JOB_WATCH_TIMEOUT: Final = "prefect-job-operator.dev/job-watch-timeout-seconds"
"""Values: the run's watch timeouts, so a restarted operator keeps enforcing them."""

DEFAULT_POOL_TYPE: Final = "kubernetes"
ALL_NAMESPACES: Final = "*"
RESERVED_POOL_PREFIX: Final = "prefect"
"""Prefect rejects pool names starting with this (case-insensitively)."""
JOB_CONTAINER_NAME: Final = "prefect-job"
"""The container Prefect's templates and job variables address by name."""


def cel(rule: str, message: str, *, field_path: str | None = None) -> JsonDict:
    """One ``x-kubernetes-validations`` entry; the message is what `kubectl apply` prints."""
    entry: JsonDict = {"rule": rule, "message": message}
    if field_path is not None:
        entry["fieldPath"] = field_path
    return entry


def _has_path(root: str, *keys: str) -> str:
    """CEL guard ``has(a.b) && has(a.b.c) ...`` so partial templates fail on the rule, not CEL."""
    parts, current = [], root
    for key in keys:
        current = f"{current}.{key}"
        parts.append(f"has({current})")
    return " && ".join(parts)


_MANIFEST = "self.job_configuration.job_manifest"
_POD_SPEC_KEYS = ("spec", "template", "spec")
_POD_SPEC = f"{_MANIFEST}.spec.template.spec"

TEMPLATE_SHAPE_MESSAGE: Final = (
    "baseJobTemplate must have both 'job_configuration' and 'variables' "
    "(the shape of a Prefect base job template)"
)
RESTART_POLICY_MESSAGE: Final = (
    "baseJobTemplate.job_configuration.job_manifest.spec.template.spec.restartPolicy "
    "must be 'Never': Prefect retries flow runs itself, Kubernetes must not restart the pod"
)
CONTAINER_MESSAGE: Final = (
    "baseJobTemplate.job_configuration.job_manifest.spec.template.spec.containers must contain "
    "a container named 'prefect-job' (Prefect puts the image, command and env there)"
)
POOL_NAME_PREFIX_MESSAGE: Final = (
    "poolName must not start with 'prefect' (Prefect reserves such pool names)"
)
METADATA_NAME_PREFIX_MESSAGE: Final = (
    "Prefect reserves pool names starting with 'prefect': set spec.poolName to another name"
)
CONCURRENCY_LIMIT_MESSAGE: Final = (
    "concurrencyLimit must be a number >= 0 or 'Unlimited' (leave it unset to manage it in Prefect)"
)
UNLIMITED: Final = "Unlimited"
"""spec.concurrencyLimit / status.concurrencyLimit: the pool has no concurrency limit."""
NAME_CHARS_MESSAGE: Final = "must not contain '/' or '%' (Prefect rejects them in names)"

_TEMPLATE_RULES: list[JsonValue] = [
    cel("has(self.job_configuration) && has(self.variables)", TEMPLATE_SHAPE_MESSAGE),
    cel(
        f"!has(self.job_configuration) || !has({_MANIFEST}) || "
        f"({_has_path(_MANIFEST, *_POD_SPEC_KEYS, 'restartPolicy')} "
        f"&& {_POD_SPEC}.restartPolicy == 'Never')",
        RESTART_POLICY_MESSAGE,
    ),
    cel(
        f"!has(self.job_configuration) || !has({_MANIFEST}) || "
        f"({_has_path(_MANIFEST, *_POD_SPEC_KEYS, 'containers')} "
        f"&& {_POD_SPEC}.containers.exists(c, has(c.name) && c.name == 'prefect-job'))",
        CONTAINER_MESSAGE,
    ),
]


def _open_object(description: str, **properties: JsonValue) -> JsonDict:
    """A free-form object that still declares the few keys our CEL rules read.

    CEL cannot see fields that the schema does not declare, even under
    ``x-kubernetes-preserve-unknown-fields``; everything else in the object is kept as is.
    """
    node: JsonDict = {
        "type": "object",
        "description": description,
        "x-kubernetes-preserve-unknown-fields": True,
    }
    if properties:
        node["properties"] = dict(properties)
    return node


_POD_SPEC_SCHEMA = _open_object(
    "Pod spec of the flow run's pod.",
    restartPolicy={"type": "string", "description": "Must be Never."},
    containers={
        "type": "array",
        "description": "Must include the container named prefect-job.",
        "items": _open_object(
            "A container.", name={"type": "string", "description": "Container name."}
        ),
    },
)
_TEMPLATE_PROPERTIES: JsonDict = {
    "job_configuration": _open_object(
        "Values of the job configuration; strings may hold {{ placeholders }} of variables.",
        job_manifest=_open_object(
            "The batch/v1 Job to create per flow run.",
            spec=_open_object(
                "Job spec.",
                template=_open_object("Pod template.", spec=_POD_SPEC_SCHEMA),
            ),
        ),
    ),
    "variables": _open_object(
        "JSON schema of the job variables deployments may set (Prefect's 'variables')."
    ),
}


class _Spec(BaseModel):
    """Base of the spec models: camelCase in YAML, snake_case in Python, typos rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )


class SecretKeyRef(_Spec):
    """A key of a Secret in the WorkPool's namespace."""

    name: str = Field(min_length=1, description="Name of the Secret.")
    key: str = Field(min_length=1, description="Key inside the Secret.")


class ApiKeySecretRef(SecretKeyRef):
    """The Secret key that holds a Prefect Cloud API key."""

    key: str = Field("api-key", min_length=1, description="Key inside the Secret.")


class AuthStringSecretRef(SecretKeyRef):
    """The Secret key that holds a self-hosted server's basic-auth string ("user:password")."""

    key: str = Field("auth-string", min_length=1, description="Key inside the Secret.")


class ConfigMapKeyRef(_Spec):
    """A key of a ConfigMap in the WorkPool's namespace."""

    name: str = Field(min_length=1, description="Name of the ConfigMap.")
    key: str = Field(min_length=1, description="Key inside the ConfigMap; its value is JSON.")


class BaseJobTemplateFrom(_Spec):
    """Where to read the base job template from instead of writing it inline."""

    config_map_key_ref: ConfigMapKeyRef = Field(
        description="A ConfigMap key in the WorkPool's namespace holding the base job template "
        "as JSON ({job_configuration, variables}). The operator re-reads it on change."
    )


class CaBundleFrom(_Spec):
    """Where the PEM CA bundle that verifies the Prefect API's certificate lives."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.secretKeyRef) != has(self.configMapKeyRef)",
                    "caBundleFrom: set exactly one of secretKeyRef and configMapKeyRef",
                )
            ]
        }
    )

    secret_key_ref: SecretKeyRef | None = Field(
        None, description="A Secret key (in the WorkPool's namespace) holding PEM certificates."
    )
    config_map_key_ref: ConfigMapKeyRef | None = Field(
        None,
        description="A ConfigMap key (in the WorkPool's namespace) holding PEM certificates.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> CaBundleFrom:
        if (self.secret_key_ref is None) == (self.config_map_key_ref is None):
            raise ValueError("set exactly one of secretKeyRef and configMapKeyRef")
        return self


class ApiTlsSpec(_Spec):
    """TLS towards the Prefect API (PREFECT_API_SSL_CERT_FILE, ..._TLS_INSECURE_SKIP_VERIFY)."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.caBundleFrom) && has(self.insecureSkipVerify) "
                    "&& self.insecureSkipVerify)",
                    "api.tls: set caBundleFrom or insecureSkipVerify, not both",
                )
            ]
        }
    )

    ca_bundle_from: CaBundleFrom | None = Field(
        None,
        description="Verify the API's certificate against these CAs instead of the operator's "
        "(the PREFECT_API_SSL_CERT_FILE equivalent). Re-read when the pool restarts.",
    )
    insecure_skip_verify: bool = Field(
        False,
        description="Do not verify the API's certificate (PREFECT_API_TLS_INSECURE_SKIP_VERIFY). "
        "For development only: anyone on the path can read the API key.",
    )

    @model_validator(mode="after")
    def _one_mode(self) -> ApiTlsSpec:
        if self.ca_bundle_from is not None and self.insecure_skip_verify:
            raise ValueError("set caBundleFrom or insecureSkipVerify, not both")
        return self


PROTECTED_HEADERS: Final = frozenset({"user-agent", "prefect-csrf-token", "prefect-csrf-client"})
"""Headers the client manages itself (Prefect's own list); custom headers may not set them."""
HEADERS_MESSAGE: Final = (
    "api.headers must not set User-Agent, Prefect-Csrf-Token or Prefect-Csrf-Client "
    "(managed by the operator)"
)
HEADER_NAME_PATTERN: Final = r"^[!#$%&*+.^_|~0-9A-Za-z-]+$"


class ApiSpec(_Spec):
    """How to reach the Prefect API."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.apiKeySecretRef) && has(self.authStringSecretRef))",
                    "set at most one of api.apiKeySecretRef (Prefect Cloud) and "
                    "api.authStringSecretRef (self-hosted basic auth)",
                )
            ]
        }
    )

    url: str | None = Field(
        None,
        pattern=r"^https?://",
        description="Prefect API URL, e.g. http://prefect-server.prefect:4200/api. Default: the "
        "operator's PJO_API_URL (or PREFECT_API_URL) setting, with the operator's credentials. "
        "Any other URL must be on the operator's allowlist (PJO_ALLOWED_API_URLS, chart value "
        "security.allowedApiUrls) and gets only this WorkPool's own credentials, never the "
        "operator's; otherwise the WorkPool is refused (reason APIURLNotAllowed).",
    )
    api_key_secret_ref: ApiKeySecretRef | None = Field(
        None,
        description="Secret (in the WorkPool's namespace) holding a Prefect Cloud API key; the "
        "admission webhook admits it only if you may read it yourself. The operator reads it "
        "for its own calls; Jobs get it as an env secretKeyRef, so a Secret "
        "with the same name and key must exist in every Job namespace.",
    )
    auth_string_secret_ref: AuthStringSecretRef | None = Field(
        None,
        description="Secret (in the WorkPool's namespace) holding a self-hosted server's auth "
        "string. Read by the operator; Jobs get it as an env secretKeyRef, so the Secret must "
        "also exist in every Job namespace.",
    )

    tls: ApiTlsSpec | None = Field(
        None, description="TLS settings for an https:// API: a private CA, or no verification."
    )
    headers: dict[str, Annotated[str, StringConstraints(max_length=8192)]] = Field(
        default_factory=dict,
        max_length=32,
        description="Extra HTTP headers on every request to the API "
        "(PREFECT_CLIENT_CUSTOM_HEADERS), e.g. for an authenticating proxy. Authorization is "
        "allowed only when no credentials Secret is set (it would replace the credentials); "
        "User-Agent and the CSRF headers cannot be set.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "self.all(k, !(k.lowerAscii() in "
                    "['user-agent', 'prefect-csrf-token', 'prefect-csrf-client']))",
                    HEADERS_MESSAGE,
                ),
                cel(
                    f"self.all(k, size(k) <= 256 && k.matches('{HEADER_NAME_PATTERN}'))",
                    "api.headers: each name must be an HTTP header name (letters, digits, '-', "
                    "at most 256 characters)",
                ),
            ]
        },
    )
    request_timeout_seconds: float | None = Field(
        None,
        ge=1,
        le=600,
        description="Timeout of one API request (PREFECT_API_REQUEST_TIMEOUT). Default: the "
        "operator's PJO_API_REQUEST_TIMEOUT.",
    )
    max_retries: int | None = Field(
        None,
        ge=0,
        le=20,
        description="Retries of a request that failed with a transport error or 408/429/502/503 "
        "(PREFECT_CLIENT_MAX_RETRIES). Default: the operator's PJO_CLIENT_MAX_RETRIES.",
    )

    @field_validator("headers")
    @classmethod
    def _headers(cls, value: dict[str, str]) -> dict[str, str]:
        if any(k.lower() in PROTECTED_HEADERS for k in value):
            raise ValueError(HEADERS_MESSAGE)
        bad = [k for k in value if len(k) > 256 or not re.match(HEADER_NAME_PATTERN, k)]
        if bad:
            raise ValueError(f"not HTTP header names: {', '.join(sorted(bad))}")
        return value

    @model_validator(mode="after")
    def _one_credential(self) -> ApiSpec:
        if self.api_key_secret_ref is not None and self.auth_string_secret_ref is not None:
            raise ValueError("set at most one of apiKeySecretRef and authStringSecretRef")
        return self


class WorkerSpec(_Spec):
    """How the operator acts as this pool's worker."""

    name: str | None = Field(
        None,
        min_length=1,
        pattern=r"^[^/%]+$",
        description="Worker name shown in the Prefect UI. Default: "
        "'prefect-job-operator:<namespace>:<name>'. Must not contain '/' or '%'.",
    )
    poll_interval_seconds: int = Field(
        10, ge=1, le=3600, description="Seconds between two polls for scheduled flow runs."
    )
    prefetch_seconds: int = Field(
        10,
        ge=0,
        le=86400,
        description="Submit flow runs scheduled up to this many seconds in the future, so pods "
        "have time to start (at most a day).",
    )
    heartbeat_interval_seconds: int = Field(
        30, ge=5, le=3600, description="Seconds between two worker heartbeats to Prefect."
    )
    submit_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Flow runs submitted in parallel per poll. The Prefect server is CPU-bound; "
        "raising this beyond a few rarely helps.",
    )
    run_labels: bool = Field(
        True,
        description="Add the worker's labels to each flow run (best-effort, like the upstream "
        "worker). Written after the Job exists, off the dispatch path.",
    )
    submitting_state: bool = Field(
        False,
        description="Propose the Pending 'Submitting' state before creating the Job, as the "
        "upstream worker does. Display only, and one more orchestrated state write per run "
        "(the Prefect server's most expensive call), so off by default.",
    )
    emit_events: bool = Field(
        True,
        description="Emit the upstream worker's Prefect events (worker started, flow run "
        "submitted and executed, ...). Two events per run, which the Prefect server persists "
        "and evaluates: turning this off raises burst throughput on a busy server by about a "
        "quarter (docs/benchmarks.md).",
    )

    pod_events: bool = Field(
        True,
        description="Emit the upstream observer's prefect.kubernetes.pod.* events (pending, "
        "running, succeeded, failed, evicted) for the pods of this pool's Jobs, batched with "
        "the worker events, so automations written for the kubernetes worker keep firing. "
        "One event per pod phase.",
    )
    store_env_as_secret: bool = Field(
        False,
        description="Move each Job's plain env into a per-Job Secret read through envFrom "
        "(upstream's PREFECT_INTEGRATIONS_KUBERNETES_WORKER_STORE_ENV_AS_SECRET). The Secret "
        "is owned by its Job, so deleting the Job deletes it. Needs the chart's "
        "rbac.createSecrets.",
    )
    create_secret_for_api_key: bool = Field(
        False,
        description="Give each Job the operator's Prefect API key (or auth string) through a "
        "Secret the operator creates next to the Job, owned by it (upstream's "
        "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_CREATE_SECRET_FOR_API_KEY, one Secret per Job "
        "instead of one per worker). Ignored when api.apiKeySecretRef/authStringSecretRef or "
        "PJO_API_KEY_SECRET_NAME already name a Secret. Needs the chart's rbac.createSecrets. "
        "The operator-wide key is copied only when the cluster admin allows both the "
        "WorkPool's and the Job's namespace (PJO_OPERATOR_KEY_NAMESPACES / chart "
        "security.operatorKeyNamespaces, default: the operator's namespace); otherwise the "
        "JobNamespaces condition says OperatorKeyNotAllowed and runs are Crashed.",
    )

    @field_validator("name")
    @classmethod
    def _name_chars(cls, value: str | None) -> str | None:
        if value is not None and ("/" in value or "%" in value):
            raise ValueError(NAME_CHARS_MESSAGE)
        return value


ENV_NAME_PATTERN: Final = r"^[A-Za-z_][A-Za-z0-9_]*$"
EnvName = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=ENV_NAME_PATTERN)]
CREDENTIAL_ENV: Final = frozenset({"PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"})


class EnvVarSource(_Spec):
    """Where a Job env value comes from (a subset of Kubernetes' EnvVarSource)."""

    secret_key_ref: SecretKeyRef = Field(
        description="A key of a Secret that must exist in every Job namespace."
    )


class JobEnvVar(_Spec):
    """One env var added to every Job, like a worker setting upstream copies into Jobs."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "has(self.value) != has(self.valueFrom)",
                    "jobEnv: set exactly one of value and valueFrom",
                ),
                cel(
                    "has(self.valueFrom) || "
                    "!(self.name in ['PREFECT_API_KEY', 'PREFECT_API_AUTH_STRING'])",
                    "jobEnv: PREFECT_API_KEY and PREFECT_API_AUTH_STRING may only come from "
                    "valueFrom.secretKeyRef, never as a plain value",
                ),
            ]
        }
    )

    name: EnvName = Field(description="Variable name.")
    value: str | None = Field(None, max_length=32768, description="A literal value.")
    value_from: EnvVarSource | None = Field(None, description="A Secret key instead of a value.")

    @model_validator(mode="after")
    def _one_source(self) -> JobEnvVar:
        if (self.value is None) == (self.value_from is None):
            raise ValueError("set exactly one of value and valueFrom")
        if self.value is not None and self.name in CREDENTIAL_ENV:
            raise ValueError(
                f"{self.name} may only come from valueFrom.secretKeyRef, never as a plain value"
            )
        return self


class RecoverySpec(_Spec):
    """How the operator repairs runs after a restart or a lost Job."""

    pending_grace_seconds: int = Field(
        60,
        ge=0,
        le=86400,
        description="A flow run that stays Pending with no Job for this long (after an operator "
        "restart or a Kubernetes API outage) is submitted again (at most a day).",
    )
    finished_job_ttl_seconds: int | None = Field(
        None,
        ge=0,
        le=2147483647,
        description="ttlSecondsAfterFinished for Jobs whose template and job variables set none. "
        "Default: keep finished Jobs.",
    )


DeletionPolicy = Literal["Retain", "Delete"]
NamespaceName = Annotated[
    str, StringConstraints(pattern=r"^(\*|[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?)$")
]
"""A namespace (DNS label) or '*' for any."""
QueueName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class WorkPoolSpec(_Spec):
    """The desired state of a Prefect work pool and of its worker, run by the operator."""

    model_config = ConfigDict(
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!(has(self.baseJobTemplate) && has(self.baseJobTemplateFrom))",
                    "set at most one of baseJobTemplate and baseJobTemplateFrom",
                ),
            ]
        }
    )

    pool_name: str | None = Field(
        None,
        min_length=1,
        max_length=256,
        pattern=r"^[^/%]+$",
        description="Name of the Prefect work pool. Default: the WorkPool's metadata.name. "
        "Must not start with 'prefect' and must not contain '/' or '%'.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel("!self.lowerAscii().startsWith('prefect')", POOL_NAME_PREFIX_MESSAGE)
            ]
        },
    )
    type: str = Field(
        DEFAULT_POOL_TYPE,
        min_length=1,
        description="Prefect work pool type. Deployments target pools by name; the type only "
        "matters for the UI and for Prefect's default template.",
    )
    description: str | None = Field(None, description="Description of the Prefect work pool.")
    api: ApiSpec = Field(
        default_factory=ApiSpec,
        description="Prefect API connection; empty means the operator's defaults.",
        json_schema_extra={"default": {}},
    )
    base_job_template: dict[str, Any] | None = Field(
        None,
        description="Inline Prefect base job template: {job_configuration, variables}, as "
        "`prefect work-pool get-default-base-job-template --type kubernetes` prints it. Default: "
        "the kubernetes worker's default template. Mutually exclusive with baseJobTemplateFrom.",
        json_schema_extra={
            "x-kubernetes-validations": _TEMPLATE_RULES,
            "properties": _TEMPLATE_PROPERTIES,
        },
    )
    base_job_template_from: BaseJobTemplateFrom | None = Field(
        None,
        description="Read the base job template from a ConfigMap key instead. Mutually "
        "exclusive with baseJobTemplate.",
    )
    work_queues: list[QueueName] = Field(
        default_factory=list,
        max_length=100,
        description="Work queues to poll. Empty means every queue of the pool.",
    )
    limit: int | None = Field(
        None,
        ge=1,
        le=1000000,
        description="Most flow runs in flight on Kubernetes for this pool (Jobs that are Pending "
        "or Running). Default: no limit.",
    )
    concurrency_limit: int | Literal["Unlimited"] | None = Field(
        None,
        description="The Prefect work pool's concurrency limit (Prefect then stops handing out "
        "runs): a number (0 holds every run), or 'Unlimited' to enforce no limit. Unset: not "
        "managed, whatever is set in the Prefect UI or CLI stays (status.concurrencyLimit "
        "shows it). A value set here is enforced: an edit in Prefect is put back.",
        json_schema_extra={
            "x-kubernetes-int-or-string": True,
            "x-kubernetes-validations": [
                cel(
                    "type(self) == string ? self == 'Unlimited' : self >= 0",
                    CONCURRENCY_LIMIT_MESSAGE,
                )
            ],
        },
    )
    paused: bool | None = Field(
        None,
        description="Pause (true) or unpause (false) the Prefect work pool, enforced. Unset: "
        "not managed, pausing in the Prefect UI or CLI stays (status.paused shows it).",
    )
    create_if_missing: bool = Field(
        True, description="Create the Prefect work pool if it does not exist."
    )
    deletion_policy: DeletionPolicy = Field(
        "Retain",
        description="What happens to the Prefect work pool when this WorkPool is deleted: "
        "Retain keeps it, Delete deletes it.",
    )
    job_namespaces: list[NamespaceName] = Field(
        default_factory=list,
        max_length=100,
        description="Namespaces Jobs may be created in (a job variable 'namespace' outside this "
        "list fails the run). Default: only the WorkPool's namespace. ['*'] allows any. "
        "Namespaces other than the WorkPool's own also need the cluster admin's leave "
        "(operator setting PJO_JOB_NAMESPACE_POLICY); a refused entry is reported on the "
        "JobNamespaces condition.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    "!('*' in self) || size(self) == 1",
                    "jobNamespaces: '*' (any namespace) must be the only entry",
                )
            ],
        },
    )
    job_env: list[JobEnvVar] = Field(
        default_factory=list,
        max_length=100,
        description="Env vars added to every Job, where the upstream worker puts its own "
        "Prefect settings (after PREFECT_API_URL and the credentials; the template, "
        "deployment and flow run can override them). The operator's own environment is never "
        "copied into Jobs: list here what Jobs need (PREFECT_LOGGING_LEVEL, ...).",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["name"],
        },
    )
    template_env: dict[str, Annotated[str, StringConstraints(max_length=32768)]] = Field(
        default_factory=dict,
        max_length=100,
        description="The values that {{ $NAME }} placeholders of the base job template and job "
        "variables read (upstream reads the worker's environment). A placeholder naming a "
        "variable not listed here is an error (PoolSynced=False, reason TemplateEnvUndeclared), "
        "never an empty string.",
        json_schema_extra={
            "x-kubernetes-validations": [
                cel(
                    f"self.all(k, size(k) <= 253 && k.matches('{ENV_NAME_PATTERN}'))",
                    "templateEnv: each name must be an env var name ([A-Za-z_][A-Za-z0-9_]*)",
                )
            ]
        },
    )

    @field_validator("template_env")
    @classmethod
    def _template_env_names(cls, value: dict[str, str]) -> dict[str, str]:
        bad = [k for k in value if len(k) > 253 or not re.match(ENV_NAME_PATTERN, k)]
        if bad:
            raise ValueError(f"not env var names: {', '.join(sorted(bad))}")
        return value

    worker: WorkerSpec = Field(
        default_factory=WorkerSpec,
        description="Worker behaviour: polling, heartbeats, submission.",
        json_schema_extra={"default": {}},
    )
    recovery: RecoverySpec = Field(
        default_factory=RecoverySpec,
        description="Repair after restarts and lost Jobs.",
        json_schema_extra={"default": {}},
    )

    @field_validator("pool_name")
    @classmethod
    def _pool_name(cls, value: str | None) -> str | None:
        if value is not None:
            _check_pool_name(value)
        return value

    @field_validator("base_job_template")
    @classmethod
    def _template_shape(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            problem = template_problem(value)
            if problem is not None:
                raise ValueError(problem)
        return value

    @field_validator("concurrency_limit")
    @classmethod
    def _limit(cls, value: int | str | None) -> int | str | None:
        if isinstance(value, int) and value < 0:
            raise ValueError(CONCURRENCY_LIMIT_MESSAGE)
        return value

    @property
    def managed_concurrency_limit(self) -> tuple[bool, int | None]:
        """(managed, limit): unset is not managed; 'Unlimited' enforces None (no limit)."""
        if self.concurrency_limit is None:
            return False, None
        if self.concurrency_limit == UNLIMITED:
            return True, None
        return True, int(self.concurrency_limit)

    @model_validator(mode="after")
    def _one_template_source(self) -> WorkPoolSpec:
        if self.base_job_template is not None and self.base_job_template_from is not None:
            raise ValueError("set at most one of baseJobTemplate and baseJobTemplateFrom")
        if ALL_NAMESPACES in self.job_namespaces and len(self.job_namespaces) > 1:
            raise ValueError("jobNamespaces: '*' (any namespace) must be the only entry")
        names = [e.name for e in self.job_env]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"jobEnv names must be unique: {', '.join(dupes)}")
        return self

    @property
    def any_job_namespace(self) -> bool:
        """True when Jobs may go to any namespace (``jobNamespaces: ['*']``)."""
        return self.job_namespaces == [ALL_NAMESPACES]

    @classmethod
    def from_cr(cls, body: Mapping[str, Any]) -> WorkPoolSpec:
        """Parse a WorkPool body (as kopf or the API returns it) with metadata-based defaults.

        Fills poolName from metadata.name, jobNamespaces from metadata.namespace and the worker
        name from both.

        Raises:
            InvalidSpecError: the spec is invalid; the message names every bad field.
        """
        metadata = body.get("metadata") or {}
        name = str(metadata.get("name") or "")
        namespace = str(metadata.get("namespace") or "default")
        raw = dict(body.get("spec") or {})
        try:
            spec = cls.model_validate(raw)
        except ValidationError as exc:
            raise InvalidSpecError(summarize_validation_error(exc, prefix="spec")) from exc
        updates: dict[str, Any] = {}
        if spec.pool_name is None:
            try:
                _check_pool_name(name)
            except ValueError as exc:
                raise InvalidSpecError(f"metadata.name: {exc}; set spec.poolName") from exc
            updates["pool_name"] = name
        if not spec.job_namespaces:
            updates["job_namespaces"] = [namespace]
        if spec.worker.name is None:
            worker = spec.worker.model_copy(update={"name": default_worker_name(namespace, name)})
            updates["worker"] = worker
        return spec.model_copy(update=updates) if updates else spec

    @property
    def resolved_pool_name(self) -> str:
        """The pool name after `from_cr` filled the default."""
        if self.pool_name is None:
            raise ValueError("pool_name is unset; parse the CR with WorkPoolSpec.from_cr")
        return self.pool_name

    @property
    def resolved_worker_name(self) -> str:
        """The worker name after `from_cr` filled the default."""
        if self.worker.name is None:
            raise ValueError("worker.name is unset; parse the CR with WorkPoolSpec.from_cr")
        return self.worker.name


class InvalidSpecError(ValueError):
    """The WorkPool spec is invalid in a way the CRD schema could not catch."""


def default_worker_name(namespace: str, name: str) -> str:
    """Stable across restarts and replicas, so Prefect sees one worker per WorkPool."""
    return f"prefect-job-operator:{namespace}:{name}"


def _check_pool_name(name: str) -> None:
    if not name:
        raise ValueError("pool name must not be empty")
    if name.lower().startswith(RESERVED_POOL_PREFIX):
        raise ValueError("must not start with 'prefect' (Prefect reserves such pool names)")
    if "/" in name or "%" in name:
        raise ValueError(NAME_CHARS_MESSAGE)


def template_problem(template: Mapping[str, Any]) -> str | None:
    """The first reason a base job template is unusable, in the CRD's words; None if fine.

    Mirrors the CEL rules on `baseJobTemplate`, so a template read from a ConfigMap gets the
    same checks as an inline one.
    """
    if "job_configuration" not in template or "variables" not in template:
        return TEMPLATE_SHAPE_MESSAGE
    config = template["job_configuration"]
    if not isinstance(config, Mapping) or "job_manifest" not in config:
        return None
    pod_spec: Any = config["job_manifest"]
    for key in _POD_SPEC_KEYS:
        pod_spec = pod_spec.get(key) if isinstance(pod_spec, Mapping) else None
    if not isinstance(pod_spec, Mapping) or pod_spec.get("restartPolicy") != "Never":
        return RESTART_POLICY_MESSAGE
    containers = pod_spec.get("containers")
    if not isinstance(containers, list) or not any(
        isinstance(c, Mapping) and c.get("name") == JOB_CONTAINER_NAME for c in containers
    ):
        return CONTAINER_MESSAGE
    return None


def summarize_validation_error(exc: ValidationError, *, prefix: str) -> str:
    """One line per error, each with the camelCase path a user sees in YAML."""
    lines = []
    for error in exc.errors():
        path = prefix
        for part in error["loc"]:
            path += f"[{part}]" if isinstance(part, int) else f".{to_camel(part)}"
        message = error["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    return "; ".join(lines)


# ---- status ---------------------------------------------------------------------------


class _Status(BaseModel):
    """Base of the status models: camelCase, unknown fields kept (kopf adds its own)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")


class Condition(_Status):
    """A metav1.Condition: the latest observation of one aspect of the WorkPool."""

    type: str = Field(description="Ready, PoolSynced, APIReachable, Polling or JobNamespaces.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    reason: str = Field(description="CamelCase reason of the last transition.")
    message: str = Field("", description="Human-readable detail.")
    last_transition_time: str = Field(
        description="When the status last changed (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    observed_generation: int | None = Field(
        None, description="metadata.generation the condition was computed for."
    )


class RunCounts(_Status):
    """Flow runs of this pool on Kubernetes."""

    pending: int = Field(0, description="Jobs whose pod is not running yet (now).")
    running: int = Field(0, description="Jobs with a running pod (now).")
    submitted: int = Field(
        0, description="Jobs created since this operator replica took the pool (cumulative)."
    )
    crashed: int = Field(
        0, description="Runs marked Crashed since this replica took the pool (cumulative)."
    )
    cancelled: int = Field(
        0, description="Runs cancelled since this replica took the pool (cumulative)."
    )


class WorkPoolStatus(_Status):
    """Observed state, written by the operator."""

    observed_generation: int | None = Field(
        None, description="metadata.generation of the spec last acted on."
    )
    conditions: list[Condition] = Field(
        default_factory=list,
        description="Ready, PoolSynced, APIReachable, Polling and JobNamespaces.",
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["type"],
        },
    )
    pool_id: str | None = Field(None, description="Prefect work pool id.")
    pool_name: str | None = Field(None, description="Prefect work pool name.")
    pool_type: str | None = Field(None, description="Prefect work pool type.")
    worker_name: str | None = Field(None, description="Worker name used in heartbeats.")
    lease_holder: str | None = Field(
        None, description="Operator replica that holds this pool's Lease and dispatches."
    )
    paused: bool | None = Field(
        None, description="Whether the Prefect work pool is paused (live, read from Prefect)."
    )
    concurrency_limit: int | Literal["Unlimited"] | None = Field(
        None,
        description="The Prefect work pool's concurrency limit (live, read from Prefect): a "
        "number or 'Unlimited'.",
        json_schema_extra={"x-kubernetes-int-or-string": True},
    )
    last_poll_time: str | None = Field(
        None,
        description="Last successful poll for scheduled runs (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    last_heartbeat_time: str | None = Field(
        None,
        description="Last worker heartbeat accepted by Prefect (RFC 3339).",
        json_schema_extra={"format": "date-time"},
    )
    counts: RunCounts | None = Field(None, description="Flow runs of this pool on Kubernetes.")
    oldest_pending_age_seconds: int | None = Field(
        None, description="Age of the oldest Job whose pod is not running yet."
    )
    message: str | None = Field(None, description="Summary of the last problem, if any.")

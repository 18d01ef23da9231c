"""Build a Pool from a WorkPool body: parse the spec, resolve credentials, clients."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from prefect_job_operator import __version__
from prefect_job_operator.api.v1alpha1 import InvalidSpecError, WorkPoolSpec
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.runtime import PoolConfig, Ports
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.prefect_api.client import HeaderConflict, PrefectClient, TlsOptions
from prefect_job_operator.registry import OperatorContext
from prefect_job_operator.rendering import SecretKeyRef, WorkerContext
from prefect_job_operator.security.job_credentials import (
    OperatorKeyUse,
    operator_key_refusal,
    operator_key_use,
)
from prefect_job_operator.security.urls import decide
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.writeback.prefect_states import StateWriter


class PolicyRefusal(InvalidSpecError):
    """The spec is valid but the admin's policy refuses it; `reason` is the condition reason."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class _Credentials:
    """What the pool authenticates with, and how its Jobs get the same credentials."""

    api_key: str | None = None
    auth_string: str | None = None
    secret_env: dict[str, SecretKeyRef] = field(default_factory=dict)
    """Job env vars read from Secrets (``secretKeyRef``)."""
    copied: dict[str, str] = field(default_factory=dict)
    """Credentials copied into a per-Job Secret (spec.worker.createSecretForApiKey)."""


async def build_runtime(ctx: OperatorContext, body: Mapping[str, Any]) -> Pool:
    """Raises InvalidSpecError with a user-facing message when the spec cannot work."""
    meta = body.get("metadata") or {}
    spec = WorkPoolSpec.from_cr(body)
    settings = ctx.settings
    namespace = str(meta.get("namespace"))
    # Credentials follow their URL: decided before any Secret is read or request is made.
    decision = decide(spec.api.url, settings.api_url, settings.allowed_api_url_list)
    if decision.url is None:
        message = decision.refusal or "spec.api.url refused"
        if decision.reason == "InvalidSpec":
            raise InvalidSpecError(message)
        raise PolicyRefusal(message, decision.reason)
    creds = await _credentials(ctx, spec, namespace, decision.operator_credentials)
    client = await _client(ctx, spec, namespace, decision.url, creds, decision.operator_credentials)
    job_env = _job_env(spec, creds)  # before the copies: a jobEnv Secret ref wins over them
    key_use = _job_credentials(settings, spec, namespace, creds, decision.operator_credentials)
    cfg = PoolConfig(
        namespace=namespace,
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        body=dict(body),
        spec=spec,
        generation=int(meta.get("generation") or 0),
        settings=settings,
        operator_key=key_use,
    )
    ports = Ports(cfg, client, StateWriter(client), ctx.kube, ctx.metrics, events=ctx.events)
    worker_ctx = WorkerContext(
        worker_name=cfg.worker_name,
        work_pool_name=cfg.pool_name,
        work_pool_id="",
        prefect_env={"PREFECT_API_URL": decision.url, **job_env},
        secret_env=creds.secret_env,
        default_image=settings.default_image,
        template_env=dict(spec.template_env),
        strict_template_env=True,
        store_env_as_secret=spec.worker.store_env_as_secret,
        credential_secrets=creds.copied,
    )
    return Pool.assemble(cfg, ports, worker_ctx)


async def _credentials(
    ctx: OperatorContext, spec: WorkPoolSpec, namespace: str, operator_credentials: bool
) -> _Credentials:
    """The pool's own Secret, else the operator's credentials (when its URL allows them)."""
    settings = ctx.settings
    creds = _Credentials()
    if operator_credentials:
        creds.api_key = settings.api_key.get_secret_value() if settings.api_key else None
        if settings.api_auth_string:
            creds.auth_string = settings.api_auth_string.get_secret_value()
    try:
        if spec.api.api_key_secret_ref is not None:
            ref = spec.api.api_key_secret_ref
            creds.api_key = await ctx.kube.read_secret_value(namespace, ref.name, ref.key)
            creds.auth_string = None
            creds.secret_env["PREFECT_API_KEY"] = SecretKeyRef(ref.name, ref.key)
        elif spec.api.auth_string_secret_ref is not None:
            ref2 = spec.api.auth_string_secret_ref
            creds.auth_string = await ctx.kube.read_secret_value(namespace, ref2.name, ref2.key)
            creds.api_key = None
            creds.secret_env["PREFECT_API_AUTH_STRING"] = SecretKeyRef(ref2.name, ref2.key)
    except KubeError as exc:
        raise InvalidSpecError(f"spec.api: cannot read the credentials Secret: {exc}") from None
    if not creds.secret_env and operator_credentials:
        if creds.api_key and settings.api_key_secret_name:
            creds.secret_env["PREFECT_API_KEY"] = SecretKeyRef(
                settings.api_key_secret_name, settings.api_key_secret_key
            )
        if creds.auth_string and settings.api_auth_string_secret_name:
            creds.secret_env["PREFECT_API_AUTH_STRING"] = SecretKeyRef(
                settings.api_auth_string_secret_name, settings.api_auth_string_secret_key
            )
    return creds


async def _client(
    ctx: OperatorContext,
    spec: WorkPoolSpec,
    namespace: str,
    api_url: str,
    creds: _Credentials,
    operator_credentials: bool,
) -> PrefectClient:
    """The pool's one Prefect client; a bad header or TLS setting is an InvalidSpec."""
    settings, api = ctx.settings, spec.api
    tls = await _tls_options(ctx, spec, namespace)
    try:
        return PrefectClient(
            api_url,
            api_key=creds.api_key,
            auth_string=creds.auth_string,
            user_agent=f"prefect-job-operator/{__version__}",
            on_request=ctx.metrics.on_api_request,
            tls=tls,
            # the operator's own headers (proxy tokens) follow its URL like its credentials
            custom_headers={
                **(settings.client_custom_headers if operator_credentials else {}),
                **api.headers,
            },
            timeout=api.request_timeout_seconds or settings.api_request_timeout,
            max_retries=(
                api.max_retries if api.max_retries is not None else settings.client_max_retries
            ),
        )
    except HeaderConflict as exc:
        raise InvalidSpecError(f"spec.api.headers / PJO_CLIENT_CUSTOM_HEADERS: {exc}") from None
    except ValueError as exc:
        raise InvalidSpecError(f"spec.api.tls: {exc}") from None


def _job_env(spec: WorkPoolSpec, creds: _Credentials) -> dict[str, str]:
    """spec.jobEnv: plain values returned, Secret references added to ``creds.secret_env``."""
    for entry in spec.job_env:
        if entry.value_from is not None:
            ref = entry.value_from.secret_key_ref
            creds.secret_env[entry.name] = SecretKeyRef(ref.name, ref.key)
    return {e.name: e.value for e in spec.job_env if e.value is not None}


def _job_credentials(
    settings: OperatorSettings,
    spec: WorkPoolSpec,
    namespace: str,
    creds: _Credentials,
    operator_credentials: bool,
) -> OperatorKeyUse | None:
    """Which credentials Jobs get a copy of (``creds.copied``), and whether that is the
    operator-wide key (admin-gated: refused, nothing is copied)."""
    copied: dict[str, str] = {}
    if spec.worker.create_secret_for_api_key:
        if creds.api_key and "PREFECT_API_KEY" not in creds.secret_env:
            copied["PREFECT_API_KEY"] = creds.api_key
        elif (
            creds.auth_string
            and not creds.api_key
            and "PREFECT_API_AUTH_STRING" not in creds.secret_env
        ):
            copied["PREFECT_API_AUTH_STRING"] = creds.auth_string
    own_credentials = spec.api.api_key_secret_ref or spec.api.auth_string_secret_ref
    key_use = operator_key_use(
        workpool_namespace=namespace,
        create_secret_for_api_key=spec.worker.create_secret_for_api_key,
        copied=copied,
        operator_wide=operator_credentials and own_credentials is None,
        allowed=settings.operator_key_namespace_list,
    )
    # Its namespace may not receive the operator's key: no Job of it ever will, so the key is
    # not even kept for rendering (every submission is refused, with the reason).
    refused = operator_key_refusal(key_use, namespace) is not None
    creds.copied = {} if refused else copied
    return key_use


async def _tls_options(ctx: OperatorContext, spec: WorkPoolSpec, namespace: str) -> TlsOptions:
    """The pool's TLS settings, else the operator's (PJO_API_SSL_CERT_FILE, ...)."""
    tls = spec.api.tls
    if tls is None:
        return TlsOptions(
            ca_file=ctx.settings.api_ssl_cert_file,
            insecure_skip_verify=ctx.settings.api_tls_insecure_skip_verify,
        )
    source = tls.ca_bundle_from
    if source is None:
        return TlsOptions(insecure_skip_verify=tls.insecure_skip_verify)
    try:
        if source.secret_key_ref is not None:
            ref = source.secret_key_ref
            pem = await ctx.kube.read_secret_value(namespace, ref.name, ref.key)
        else:
            assert source.config_map_key_ref is not None
            cm = source.config_map_key_ref
            pem = await ctx.kube.read_configmap_value(namespace, cm.name, cm.key)
    except KubeError as exc:
        raise InvalidSpecError(
            f"spec.api.tls.caBundleFrom: cannot read the CA bundle: {exc}"
        ) from None
    return TlsOptions(ca_pem=pem)


def bind_pool_id(ctx: OperatorContext, pool: Pool) -> None:
    """After a sync the pool id is known: route Job events here and label Jobs with it."""
    synced = pool.synced
    if synced.worker_ctx.work_pool_id != (synced.pool_id or ""):
        synced.worker_ctx = replace(synced.worker_ctx, work_pool_id=synced.pool_id or "")
    ctx.register(pool)

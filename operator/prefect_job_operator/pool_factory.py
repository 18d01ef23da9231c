"""Build a PoolRuntime from a WorkPool body: parse the spec, resolve credentials, clients."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from prefect_job_operator import __version__
from prefect_job_operator.api.v1alpha1 import InvalidSpecError, WorkPoolSpec
from prefect_job_operator.dispatch.runtime import PoolRuntime
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.prefect_api.client import HeaderConflict, PrefectClient, TlsOptions
from prefect_job_operator.registry import OperatorContext
from prefect_job_operator.rendering import SecretKeyRef, WorkerContext
from prefect_job_operator.security.job_credentials import (
    operator_key_refusal,
    operator_key_use,
)
from prefect_job_operator.security.urls import decide
from prefect_job_operator.writeback.prefect_states import StateWriter


class PolicyRefusal(InvalidSpecError):
    """The spec is valid but the admin's policy refuses it; `reason` is the condition reason."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


async def build_runtime(ctx: OperatorContext, body: Mapping[str, Any]) -> PoolRuntime:
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
    api_url = decision.url
    api_key: str | None = None
    auth_string: str | None = None
    if decision.operator_credentials:
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        if settings.api_auth_string:
            auth_string = settings.api_auth_string.get_secret_value()
    secret_env: dict[str, SecretKeyRef] = {}
    try:
        if spec.api.api_key_secret_ref is not None:
            ref = spec.api.api_key_secret_ref
            api_key = await ctx.kube.read_secret_value(namespace, ref.name, ref.key)
            auth_string = None
            secret_env["PREFECT_API_KEY"] = SecretKeyRef(ref.name, ref.key)
        elif spec.api.auth_string_secret_ref is not None:
            ref2 = spec.api.auth_string_secret_ref
            auth_string = await ctx.kube.read_secret_value(namespace, ref2.name, ref2.key)
            api_key = None
            secret_env["PREFECT_API_AUTH_STRING"] = SecretKeyRef(ref2.name, ref2.key)
    except KubeError as exc:
        raise InvalidSpecError(f"spec.api: cannot read the credentials Secret: {exc}") from None
    if not secret_env and decision.operator_credentials:
        if api_key and settings.api_key_secret_name:
            secret_env["PREFECT_API_KEY"] = SecretKeyRef(
                settings.api_key_secret_name, settings.api_key_secret_key
            )
        if auth_string and settings.api_auth_string_secret_name:
            secret_env["PREFECT_API_AUTH_STRING"] = SecretKeyRef(
                settings.api_auth_string_secret_name, settings.api_auth_string_secret_key
            )
    tls = await _tls_options(ctx, spec, namespace)
    api = spec.api
    try:
        client = PrefectClient(
            api_url,
            api_key=api_key,
            auth_string=auth_string,
            user_agent=f"prefect-job-operator/{__version__}",
            on_request=ctx.metrics.on_api_request,
            tls=tls,
            # the operator's own headers (proxy tokens) follow its URL like its credentials
            custom_headers={
                **(settings.client_custom_headers if decision.operator_credentials else {}),
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
    job_env = {e.name: e.value for e in spec.job_env if e.value is not None}
    for entry in spec.job_env:
        if entry.value_from is not None:
            ref3 = entry.value_from.secret_key_ref
            secret_env[entry.name] = SecretKeyRef(ref3.name, ref3.key)
    credential_secrets: dict[str, str] = {}
    if spec.worker.create_secret_for_api_key:
        if api_key and "PREFECT_API_KEY" not in secret_env:
            credential_secrets["PREFECT_API_KEY"] = api_key
        elif auth_string and not api_key and "PREFECT_API_AUTH_STRING" not in secret_env:
            credential_secrets["PREFECT_API_AUTH_STRING"] = auth_string
    own_credentials = spec.api.api_key_secret_ref or spec.api.auth_string_secret_ref
    key_use = operator_key_use(
        workpool_namespace=namespace,
        create_secret_for_api_key=spec.worker.create_secret_for_api_key,
        copied=credential_secrets,
        operator_wide=decision.operator_credentials and own_credentials is None,
        allowed=settings.operator_key_namespace_list,
    )
    if operator_key_refusal(key_use, namespace) is not None:
        # Its namespace may not receive the operator's key: no Job of it ever will, so the
        # key is not even kept for rendering (every submission is refused, with the reason).
        credential_secrets = {}
    rt = PoolRuntime(
        namespace=namespace,
        name=str(meta.get("name")),
        uid=str(meta.get("uid")),
        body=dict(body),
        spec=spec,
        generation=int(meta.get("generation") or 0),
        settings=settings,
        kube=ctx.kube,
        metrics=ctx.metrics,
        client=client,
        writer=StateWriter(client),
        events=ctx.events,
        operator_key=key_use,
    )
    rt.worker_ctx = WorkerContext(
        worker_name=rt.worker_name,
        work_pool_name=rt.pool_name,
        work_pool_id="",
        prefect_env={"PREFECT_API_URL": api_url, **job_env},
        secret_env=secret_env,
        default_image=settings.default_image,
        template_env=dict(spec.template_env),
        strict_template_env=True,
        store_env_as_secret=spec.worker.store_env_as_secret,
        credential_secrets=credential_secrets,
    )
    return rt


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


def bind_pool_id(ctx: OperatorContext, rt: PoolRuntime) -> None:
    """After a sync the pool id is known: route Job events here and label Jobs with it."""
    if rt.worker_ctx is not None and rt.worker_ctx.work_pool_id != (rt.pool_id or ""):
        from dataclasses import replace

        rt.worker_ctx = replace(rt.worker_ctx, work_pool_id=rt.pool_id or "")
    ctx.register(rt)

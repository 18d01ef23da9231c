"""The `render` command: a case in the oracle's format → the Job and Secrets we would create.

A case (see /work/shared/oracle/render_job.py) describes the worker's environment, the
work pool, deployment, flow, flow run and the answers for blocks and variables. The
worker's `PREFECT_INTEGRATIONS_KUBERNETES_WORKER_*` settings map as documented in
docs/compatibility.md; credentials always end up as secretKeyRefs, never as plain values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from pydantic import TypeAdapter, ValidationError

from prefect_job_operator.rendering.contracts import (
    RenderedJob,
    ResolvedReferences,
    SecretKeyRef,
    WorkerContext,
)
from prefect_job_operator.rendering.kubernetes_job import NEVER_INJECTED, NEVER_PLAIN
from prefect_job_operator.rendering.render import render_job
from prefect_job_operator.rendering.slugs import slugify_name

_WORKER: Final = "PREFECT_INTEGRATIONS_KUBERNETES_WORKER_"
_NOT_SETTINGS: Final = ("PREFECT_INTEGRATIONS_", "PREFECT_KUBERNETES_")
REDACTED: Final = "<redacted: the worker's {}>"
_BOOL = TypeAdapter(bool)


class CaseError(ValueError):
    """The case file itself is malformed (not a rendering problem)."""


def _flag(env: Mapping[str, str], *names: str) -> bool:
    for name in names:
        if name in env:
            try:
                return _BOOL.validate_python(env[name])
            except ValidationError:
                raise CaseError(f"worker_env {name}={env[name]!r} is not a boolean") from None
    return False


def _worker_slug(worker_name: str) -> str:
    return slugify_name(worker_name) or "worker"


_CREDENTIALS: Final = {
    # variable: (explicit secret name setting, explicit key setting, generated Secret suffix)
    "PREFECT_API_KEY": ("API_KEY_SECRET_NAME", "API_KEY_SECRET_KEY", "api-key"),
    "PREFECT_API_AUTH_STRING": (
        "API_AUTH_STRING_SECRET_NAME",
        "API_AUTH_STRING_SECRET_KEY",
        "api-auth-string",
    ),
}


def credential_refs(
    worker_env: Mapping[str, str], worker_name: str
) -> tuple[dict[str, SecretKeyRef], set[str]]:
    """Where the Job reads PREFECT_API_KEY / PREFECT_API_AUTH_STRING from.

    An explicit `..._SECRET_NAME` (and `..._SECRET_KEY`, default "value") is used as is.
    Otherwise the Secret that upstream's `create_secret_for_api_key` would create,
    `prefect-<worker>-api-key` (`-api-auth-string` for the auth string), which the second
    return value lists so that the command can print it.
    """
    refs: dict[str, SecretKeyRef] = {}
    generated: set[str] = set()
    for variable, (name_setting, key_setting, suffix) in _CREDENTIALS.items():
        if not worker_env.get(variable):
            continue
        name = worker_env.get(f"{_WORKER}{name_setting}")
        if name:
            refs[variable] = SecretKeyRef(
                name, worker_env.get(f"{_WORKER}{key_setting}") or "value"
            )
        else:
            refs[variable] = SecretKeyRef(f"prefect-{_worker_slug(worker_name)}-{suffix}", "value")
            generated.add(variable)
    return refs, generated


def worker_context(case: Mapping[str, Any]) -> WorkerContext:
    """WorkerContext for a case: PREFECT_* settings become plain env, credentials refs."""
    env = {str(k): str(v) for k, v in (case.get("worker_env") or {}).items()}
    worker_name = _required(case, "worker_name")
    pool = _required(case, "work_pool")
    prefect_env = {
        k: v
        for k, v in env.items()
        if k.startswith("PREFECT_")
        and not k.startswith(_NOT_SETTINGS)
        and k not in NEVER_PLAIN
        and k not in NEVER_INJECTED
    }
    return WorkerContext(
        worker_name=worker_name,
        work_pool_name=_required(pool, "name", "work_pool"),
        work_pool_id=_required(pool, "id", "work_pool"),
        prefect_env=prefect_env,
        secret_env=credential_refs(env, worker_name)[0],
        template_env=env,
        store_env_as_secret=_flag(env, f"{_WORKER}STORE_ENV_AS_SECRET"),
    )


def _required(data: Mapping[str, Any], key: str, where: str = "case") -> Any:
    if not isinstance(data, Mapping) or key not in data:
        raise CaseError(f"{where} has no {key!r}")
    return data[key]


def _references(case: Mapping[str, Any]) -> ResolvedReferences:
    blocks: dict[tuple[str, str], Any] = {}
    for address, data in (case.get("blocks") or {}).items():
        slug, sep, name = str(address).partition("/")
        if not sep:
            raise CaseError(f"blocks key {address!r} must be 'type-slug/name'")
        blocks[(slug, name)] = data
    return ResolvedReferences(
        blocks=blocks,
        block_ids=dict(case.get("block_documents") or {}),
        variables=dict(case.get("variables") or {}),
    )


def _credential_secrets(
    job: RenderedJob, generated: Mapping[str, SecretKeyRef]
) -> list[dict[str, Any]]:
    """The credential Secrets the worker would upsert, for those the Job really uses."""
    env = job.manifest["spec"]["template"]["spec"]["containers"][0].get("env") or []
    used = {
        entry["valueFrom"]["secretKeyRef"]["name"]
        for entry in env
        if isinstance(entry, dict) and "secretKeyRef" in (entry.get("valueFrom") or {})
    }
    return [
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ref.name, "namespace": job.namespace},
            "stringData": {ref.key: REDACTED.format(variable)},
        }
        for variable, ref in generated.items()
        if ref.name in used
    ]


def render_case(case: Mapping[str, Any]) -> dict[str, Any]:
    """`{"job": manifest, "secrets": [...]}` for a case (RenderError / CaseError on failure)."""
    worker = worker_context(case)
    pool = case["work_pool"]
    flow_run = _required(case, "flow_run")
    state = flow_run.get("state") if isinstance(flow_run, Mapping) else None
    claim_id = str(state["id"]) if isinstance(state, Mapping) and state.get("id") else None
    job = render_job(
        pool.get("base_job_template") or None,
        deployment=case.get("deployment") or None,
        flow=_required(case, "flow"),
        flow_run=flow_run,
        worker=worker,
        references=_references(case),
        claim_id=claim_id,
    )
    env = {str(k): str(v) for k, v in (case.get("worker_env") or {}).items()}
    _, generated = credential_refs(env, worker.worker_name)
    to_create = {var: worker.secret_env[var] for var in sorted(generated)}
    return {"job": job.manifest, "secrets": [*_credential_secrets(job, to_create), *job.secrets]}

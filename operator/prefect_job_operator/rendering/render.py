"""`render_job`: template + deployment + flow run → the Job to create (pure).

The steps and their order are upstream's (`BaseJobConfiguration.resolve_for_flow_run`,
`KubernetesWorkerJobConfiguration.prepare_for_flow_run`, `KubernetesWorker._create_job`);
docs/compatibility.md lists the few places where we deliberately differ.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from prefect_job_operator.rendering import kubernetes_job as k8s
from prefect_job_operator.rendering.configuration import JobConfiguration, validate_configuration
from prefect_job_operator.rendering.contracts import (
    References,
    RenderedJob,
    ResolvedReferences,
    SecretKeyRef,
    WorkerContext,
)
from prefect_job_operator.rendering.default_template import default_base_job_template
from prefect_job_operator.rendering.errors import RenderError
from prefect_job_operator.rendering.job_variables import (
    merge_job_variables,
    templated_configuration,
)
from prefect_job_operator.rendering.naming import job_name
from prefect_job_operator.rendering.references import (
    resolve_blocks,
    resolve_variables,
    scan_references,
)
from prefect_job_operator.rendering.templating import (
    MISSING,
    apply_values,
    undeclared_env_placeholders,
)

# Stands in for secret-backed env values until they become secretKeyRefs; never emitted.
_SECRET_STAND_IN = "\x00secret-stand-in\x00"


def _template_or_default(base_job_template: Mapping[str, Any] | None) -> Mapping[str, Any]:
    return base_job_template or default_base_job_template()


def collect_references(
    base_job_template: dict[str, Any] | None,
    deployment: dict[str, Any] | None,
    flow_run: dict[str, Any],
) -> References:
    """The blocks and variables that rendering this flow run will need.

    It scans the configuration after job variables are applied, so a reference in a job
    variable that no template field uses is not fetched (upstream does not read it either).
    Variables used only inside a block's data are not seen here and render as "".
    """
    values = merge_job_variables(deployment, flow_run)
    config = templated_configuration(_template_or_default(base_job_template), values, {})
    return scan_references(config)


def _render_name(
    name: str | None, flow: Mapping[str, Any], flow_run: Mapping[str, Any], env: Mapping[str, str]
) -> str:
    """`{{ ctx.flow.* }}` / `{{ ctx.flow_run.* }}` in `name`; empty → the flow run's name."""
    rendered: Any = name
    if name:
        filled = apply_values(name, {"ctx": {"flow": flow, "flow_run": flow_run}}, env)
        if filled is not MISSING:
            rendered = filled
    rendered = rendered or flow_run["name"]
    if not isinstance(rendered, str):
        raise RenderError(f"job variable 'name' must render to a string, got {rendered!r}")
    return rendered


def check_template_env(
    job_configuration: Any, job_variables: Mapping[str, Any], declared: Mapping[str, str]
) -> None:
    """RenderError naming every `{{ $NAME }}` that the WorkPool's templateEnv does not declare."""
    missing = undeclared_env_placeholders([job_configuration, dict(job_variables)], declared)
    if missing:
        names = ", ".join(missing)
        raise RenderError(
            f"the job template or job variables read {{{{ $NAME }}}} placeholders that "
            f"spec.templateEnv of the WorkPool does not declare: {names} (add them to "
            "spec.templateEnv; the operator never reads its own environment into Jobs)"
        )


def render_job(
    base_job_template: dict[str, Any] | None,
    *,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any],
    flow_run: dict[str, Any],
    worker: WorkerContext,
    references: ResolvedReferences,
    claim_id: str | None,
) -> RenderedJob:
    """The Job (and Secrets) for one claimed flow run; RenderError names what is wrong."""
    try:
        template = _template_or_default(base_job_template)
        config = _configuration(template, deployment, flow_run, worker, references)
        manifest, generate_name = _manifest(config, deployment, flow, flow_run, worker)
        final_name = job_name(flow_run, generate_name, claim_id)
        metadata = manifest["metadata"]
        metadata.pop("generateName", None)
        manifest["metadata"] = {"name": final_name, **metadata}
        rendered_secrets = _secrets(manifest, final_name, config.namespace, worker)

        return RenderedJob(
            manifest=manifest,
            namespace=config.namespace,
            name=final_name,
            secrets=rendered_secrets,
            pod_watch_timeout_seconds=config.pod_watch_timeout_seconds,
            job_watch_timeout_seconds=config.job_watch_timeout_seconds,
            stream_output=config.stream_output,
        )
    except RenderError:
        raise
    except (KeyError, TypeError, AttributeError, IndexError, ValueError) as exc:
        raise RenderError(f"cannot render the Job: {type(exc).__name__}: {exc}") from exc


def _configuration(
    template: Mapping[str, Any],
    deployment: dict[str, Any] | None,
    flow_run: dict[str, Any],
    worker: WorkerContext,
    references: ResolvedReferences,
) -> JobConfiguration:
    """The job configuration: job variables merged, templated, references resolved."""
    values = merge_job_variables(deployment, flow_run)
    if worker.strict_template_env:
        check_template_env(template.get("job_configuration"), values, worker.template_env)
    populated = templated_configuration(template, values, worker.template_env)
    populated = resolve_blocks(populated, references)
    populated = resolve_variables(populated, references.variables)
    return validate_configuration(populated)


def _manifest(
    config: JobConfiguration,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any],
    flow_run: dict[str, Any],
    worker: WorkerContext,
) -> tuple[dict[str, Any], str]:
    """Upstream's Job manifest, credentials still stand-ins, and the ``generateName``
    upstream would send (kept only to derive our Job name)."""
    manifest: dict[str, Any] = copy.deepcopy(config.job_manifest)
    # Credentials moved into a per-Job Secret need their env slot now; the ref follows the name.
    stand_ins = {var: SecretKeyRef("", "") for var in worker.credential_secrets}
    base_worker = replace(worker, secret_env={**worker.secret_env, **stand_ins})
    env = k8s.merge_environment(
        config.env, k8s.base_environment(base_worker, flow_run, flow, deployment, _SECRET_STAND_IN)
    )
    labels = {**k8s.base_labels(worker, flow_run, flow, deployment), **config.labels}
    name = _render_name(config.name, flow, flow_run, worker.template_env)

    env = k8s.configure_eviction(manifest, env)
    k8s.populate_env(manifest, env)
    k8s.apply_labels_and_annotations(manifest, labels, config.annotations)
    k8s.populate_image(manifest, worker.default_image)
    k8s.populate_args(manifest)
    generate_name = k8s.upstream_generate_name(manifest, name)
    k8s.propagate_to_pod(manifest, labels)
    k8s.add_operator_metadata(manifest, worker.operator_labels, worker.operator_annotations)
    return manifest, generate_name


def _secrets(
    manifest: dict[str, Any], final_name: str, namespace: str, worker: WorkerContext
) -> list[dict[str, Any]]:
    """The Job's Secrets (credentials, and the env when stored as a Secret), refs set."""
    credential_refs, rendered_secrets = k8s.credential_secrets(
        final_name, namespace, worker.credential_secrets, worker.operator_labels
    )
    k8s.use_secret_refs(manifest, {**worker.secret_env, **credential_refs}, _SECRET_STAND_IN)
    if worker.store_env_as_secret:
        secret = k8s.move_env_to_secret(
            manifest, f"{final_name}-env", namespace, worker.operator_labels
        )
        if secret is not None:
            rendered_secrets.append(secret)
    return rendered_secrets

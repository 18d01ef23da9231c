"""prefect-kubernetes' `prepare_for_flow_run` and `_create_job` steps, on plain dicts.

Each function is one upstream step, applied in upstream's order by `render.py`.
"""

from __future__ import annotations

import shlex
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Final

from prefect_job_operator.api.v1alpha1 import LABEL_FLOW_RUN_ID, LABEL_WORK_POOL_ID
from prefect_job_operator.rendering.contracts import SecretKeyRef, WorkerContext
from prefect_job_operator.rendering.errors import RenderError
from prefect_job_operator.rendering.prefect_settings_order import SETTINGS_ENV_ORDER
from prefect_job_operator.rendering.slugs import (
    slugify_label_key,
    slugify_label_value,
    slugify_name,
)
from prefect_job_operator.rendering.templating import find_placeholders

SIGTERM_BEHAVIOR: Final = "PREFECT_FLOW_RUN_EXECUTE_SIGTERM_BEHAVIOR"
DEFAULT_COMMAND: Final = "prefect flow-run execute"
Env = dict[str, Any] | list[dict[str, Any]]


def container(manifest: dict[str, Any]) -> dict[str, Any]:
    """The Prefect container (`spec.template.spec.containers[0]`, checked to exist)."""
    first: dict[str, Any] = manifest["spec"]["template"]["spec"]["containers"][0]
    return first


def _iso_utc(timestamp: Any) -> str:
    if isinstance(timestamp, datetime):
        parsed = timestamp
    else:
        try:
            parsed = datetime.fromisoformat(str(timestamp))
        except ValueError:
            raise RenderError(
                f"deployment 'updated' is not an ISO timestamp: {timestamp!r}"
            ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat()


def base_labels(
    worker: WorkerContext,
    flow_run: Mapping[str, Any],
    flow: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
) -> dict[str, str]:
    """The labels every Prefect Job gets, in upstream's order (user labels go on top)."""
    version = slugify_label_value(worker.prefect_version.split("+")[0])
    labels = {
        LABEL_FLOW_RUN_ID: str(flow_run["id"]),
        "prefect.io/flow-run-name": flow_run["name"],
        "prefect.io/version": version,
        "app.kubernetes.io/managed-by": "prefect",
        "app.kubernetes.io/part-of": "prefect",
        "app.kubernetes.io/version": version,
        "prefect.io/work-pool-name": worker.work_pool_name,
        LABEL_WORK_POOL_ID: str(worker.work_pool_id),
        "prefect.io/worker-name": worker.worker_name,
        "prefect.io/flow-id": str(flow["id"]),
        "prefect.io/flow-name": flow["name"],
        "app.kubernetes.io/name": slugify_label_value(flow["name"]),
    }
    if deployment is not None:
        labels["prefect.io/deployment-id"] = str(deployment["id"])
        labels["prefect.io/deployment-name"] = deployment["name"]
        if deployment.get("updated") is not None:
            labels["prefect.io/deployment-updated"] = _iso_utc(deployment["updated"])
        labels["app.kubernetes.io/name"] = slugify_label_value(deployment["name"])
    return labels


def base_environment(
    worker: WorkerContext,
    flow_run: Mapping[str, Any],
    flow: Mapping[str, Any],
    deployment: Mapping[str, Any] | None,
    secret_marker: str,
) -> dict[str, str]:
    """Worker settings, the flow run id and attribution variables (config env goes on top).

    Secret-backed variables get `secret_marker` as a stand-in value; `use_secret_refs`
    swaps them for `secretKeyRef`s once the env list is final.
    """
    settings: dict[str, str] = {}
    for key, value in worker.prefect_env.items():
        if key in worker.secret_env or key in NEVER_PLAIN or key in NEVER_INJECTED:
            continue
        settings[key] = value
    for key in worker.secret_env:
        settings[key] = secret_marker
    env = {key: settings[key] for key in settings_order(settings)}
    env["PREFECT__FLOW_RUN_ID"] = str(flow_run["id"])
    if worker.worker_id is not None:
        env["PREFECT__WORKER_ID"] = str(worker.worker_id)
    env["PREFECT__WORKER_NAME"] = worker.worker_name
    if flow_run.get("flow_id"):
        env["PREFECT__FLOW_ID"] = str(flow_run["flow_id"])
    if flow.get("name"):
        env["PREFECT__FLOW_NAME"] = flow["name"]
    if flow_run.get("deployment_id"):
        env["PREFECT__DEPLOYMENT_ID"] = str(flow_run["deployment_id"])
    if deployment is not None and deployment.get("name"):
        env["PREFECT__DEPLOYMENT_NAME"] = deployment["name"]
    return env


_SETTINGS_INDEX: Final = {name: i for i, name in enumerate(SETTINGS_ENV_ORDER)}


def settings_order(names: Iterable[str]) -> list[str]:
    """Prefect settings in the order upstream's worker copies them into a Job (the order of
    Prefect's `Settings` model); names Prefect does not know keep their order, after those."""
    given = list(names)
    known = sorted((n for n in given if n in _SETTINGS_INDEX), key=_SETTINGS_INDEX.__getitem__)
    return known + [n for n in given if n not in _SETTINGS_INDEX]


NEVER_PLAIN: Final = frozenset({"PREFECT_API_KEY", "PREFECT_API_AUTH_STRING"})
NEVER_INJECTED: Final = frozenset({"PREFECT_SERVER_EPHEMERAL_ENABLED"})


def merge_environment(config_env: Env, base_env: Mapping[str, str]) -> Env:
    """Base env under the configuration's env; None drops a variable; `valueFrom` entries of
    a list-form env are kept aside and appended after the plain ones."""
    special: list[dict[str, Any]] = []
    plain: dict[str, Any]
    if isinstance(config_env, list):
        special = [item for item in config_env if "valueFrom" in item]
        plain = {
            item["name"]: item.get("value")
            for item in config_env
            if "name" in item and "value" in item
        }
    else:
        plain = dict(config_env)
    merged = {k: v for k, v in {**base_env, **plain}.items() if v is not None}
    if special:
        return [*({"name": k, "value": v} for k, v in merged.items()), *special]
    return merged


def configure_eviction(manifest: dict[str, Any], env: Env) -> Env:
    """backoffLimit 0 → reschedule on SIGTERM (unless set); anything else → relinquish."""
    if manifest["spec"].get("backoffLimit") == 0:
        if isinstance(env, dict):
            if not env.get(SIGTERM_BEHAVIOR):
                env[SIGTERM_BEHAVIOR] = "reschedule"
        elif not any(item.get("name") == SIGTERM_BEHAVIOR for item in env):
            env.append({"name": SIGTERM_BEHAVIOR, "value": "reschedule"})
    elif isinstance(env, dict):
        env[SIGTERM_BEHAVIOR] = "relinquish"
    else:
        env = [item for item in env if item.get("name") != SIGTERM_BEHAVIOR]
        env.append({"name": SIGTERM_BEHAVIOR, "value": "relinquish"})
    return env


def populate_env(manifest: dict[str, Any], env: Env) -> None:
    """Env as a k8s list; a hard-coded template env list keeps its entries after ours."""
    entries = [{"name": k, "value": v} for k, v in env.items()] if isinstance(env, dict) else env
    target = container(manifest)
    template_env = target.get("env")
    if isinstance(template_env, list):
        try:
            ours = {item["name"] for item in entries}
            kept = [item for item in template_env if item.get("name") not in ours]
        except (KeyError, AttributeError, TypeError):
            raise RenderError(
                "container env: every entry must be an object with a 'name'"
            ) from None
        target["env"] = [*entries, *kept]
    else:
        target["env"] = entries


def _slug_labels(labels: Mapping[str, Any]) -> dict[str, str]:
    return {slugify_label_key(k): slugify_label_value(v) for k, v in labels.items()}


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise RenderError(f"{where} must be an object, got {type(value).__name__}")
    return value


def apply_labels_and_annotations(
    manifest: dict[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> None:
    """Job labels = template + config, slugified; annotations: only keys slugified."""
    metadata = manifest["metadata"]
    template_labels = _mapping(metadata.get("labels", {}), "metadata.labels")
    metadata["labels"] = _slug_labels({**template_labels, **labels})
    template_annotations = _mapping(metadata.get("annotations", {}), "metadata.annotations")
    metadata["annotations"] = {
        slugify_label_key(k): v for k, v in {**template_annotations, **annotations}.items()
    }


def populate_image(manifest: dict[str, Any], default_image: str) -> None:
    """No `image` key → the default Prefect image.

    Deviation: an explicit null is treated as absent (upstream sends null; Kubernetes
    rejects the Job).
    """
    target = container(manifest)
    if target.get("image") is None:
        target["image"] = default_image


def populate_args(manifest: dict[str, Any]) -> None:
    """`args` absent/null → `prefect flow-run execute`; a string is split like a POSIX shell."""
    target = container(manifest)
    args = target.get("args")
    if args is None:
        target["args"] = shlex.split(DEFAULT_COMMAND)
    elif isinstance(args, str):
        try:
            target["args"] = shlex.split(args, posix=True)
        except ValueError as exc:
            raise RenderError(f"job variable 'command' {args!r} cannot be split: {exc}") from None
    elif not isinstance(args, list):
        raise RenderError("Invalid job manifest template: 'command' must be a string or list.")


def upstream_generate_name(manifest: dict[str, Any], config_name: str | None) -> str:
    """What upstream would send as `generateName` (kept only to derive our Job name)."""
    current = manifest["metadata"].get("generateName") or ""
    if not isinstance(current, str):
        raise RenderError(f"metadata.generateName must be a string, got {current!r}")
    if not current or find_placeholders(current) or current in ("-", "None-"):
        slug = slugify_name(config_name) if config_name else None
        return f"{slug or 'prefect-job'}-"
    return current


def propagate_to_pod(manifest: dict[str, Any], labels: Mapping[str, str]) -> None:
    """Pod template labels = its own + config labels (slugified); annotations when any."""
    template = manifest["spec"]["template"]
    pod_metadata = _mapping(template.get("metadata", {}), "spec.template.metadata")
    pod_labels = _mapping(pod_metadata.get("labels", {}), "spec.template.metadata.labels")
    pod_metadata["labels"] = _slug_labels({**pod_labels, **labels})
    template["metadata"] = pod_metadata
    merged = manifest["metadata"].get("annotations", {})
    if merged:
        pod_annotations = _mapping(
            pod_metadata.get("annotations", {}), "spec.template.metadata.annotations"
        )
        pod_metadata["annotations"] = {**pod_annotations, **merged}


def add_operator_metadata(
    manifest: dict[str, Any], labels: Mapping[str, str], annotations: Mapping[str, str]
) -> None:
    """Operator labels on the Job and its pods, annotations on the Job; they win."""
    if labels:
        manifest["metadata"]["labels"].update(labels)
        manifest["spec"]["template"]["metadata"]["labels"].update(labels)
    if annotations:
        manifest["metadata"]["annotations"].update(annotations)


def use_secret_refs(
    manifest: dict[str, Any], secret_env: Mapping[str, SecretKeyRef], marker: str
) -> None:
    """Every entry of a secret-backed variable becomes a `secretKeyRef` (upstream's
    `_replace_env_variable_with_secret`); no stand-in value may survive."""
    target = container(manifest)
    entries = target.get("env") or []
    replaced = []
    for entry in entries:
        name = entry.get("name") if isinstance(entry, dict) else None
        if isinstance(name, str) and name in secret_env:
            ref = secret_env[name]
            key_ref = {"name": ref.name, "key": ref.key}
            entry = {"name": name, "valueFrom": {"secretKeyRef": key_ref}}
        replaced.append(entry)
    if any(isinstance(e, dict) and e.get("value") == marker for e in replaced):  # pragma: no cover
        raise AssertionError("a secret stand-in value survived rendering")
    target["env"] = replaced


CREDENTIAL_SECRET_SUFFIX: Final = {
    "PREFECT_API_KEY": "api-key",
    "PREFECT_API_AUTH_STRING": "api-auth-string",
}
CREDENTIAL_SECRET_KEY: Final = "value"


def credential_secrets(
    job_name: str,
    namespace: str,
    credentials: Mapping[str, str],
    extra_labels: Mapping[str, str],
) -> tuple[dict[str, SecretKeyRef], list[dict[str, Any]]]:
    """`create_secret_for_api_key`, one Secret per Job: `<job>-api-key` (key `value`, as
    upstream's `prefect-<worker>-api-key`), owned by the Job once it exists."""
    refs: dict[str, SecretKeyRef] = {}
    secrets: list[dict[str, Any]] = []
    for variable, value in sorted(credentials.items()):
        suffix = CREDENTIAL_SECRET_SUFFIX.get(variable)
        if suffix is None:
            raise RenderError(f"{variable} is not a Prefect credential variable")
        name = f"{job_name}-{suffix}"
        refs[variable] = SecretKeyRef(name, CREDENTIAL_SECRET_KEY)
        secrets.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "type": "Opaque",
                "metadata": {
                    "name": name,
                    "namespace": namespace,
                    "labels": {"app.kubernetes.io/managed-by": "prefect", **extra_labels},
                },
                "stringData": {CREDENTIAL_SECRET_KEY: value},
            }
        )
    return refs, secrets


def move_env_to_secret(
    manifest: dict[str, Any], secret_name: str, namespace: str, extra_labels: Mapping[str, str]
) -> dict[str, Any] | None:
    """`store_env_as_secret`: plain env entries move into a Secret used via `envFrom`."""
    target = container(manifest)
    plain: dict[str, Any] = {}
    value_from: list[dict[str, Any]] = []
    for entry in target.get("env") or []:
        if "valueFrom" in entry:
            value_from.append(entry)
        elif "value" in entry and entry.get("name"):
            plain[entry["name"]] = entry["value"]
    if not plain:
        return None
    labels = {"app.kubernetes.io/managed-by": "prefect"}
    run_id = manifest["metadata"].get("labels", {}).get(LABEL_FLOW_RUN_ID)
    if run_id:
        labels[LABEL_FLOW_RUN_ID] = run_id
    labels.update(extra_labels)
    target["env"] = value_from
    target["envFrom"] = [*(target.get("envFrom") or []), {"secretRef": {"name": secret_name}}]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": secret_name, "namespace": namespace, "labels": labels},
        "stringData": plain,
    }

"""Job variables → the templated job configuration (upstream's `resolve_for_flow_run` and
`from_template_and_values`, before any reference is resolved).

Order matters and is upstream's: deployment variables, then the flow run's (env merged,
everything else replaced wholesale), then the pool's variable defaults underneath, dotted
keys nested, env merged once more, and finally `apply_values`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from prefect_job_operator.rendering.errors import RenderError
from prefect_job_operator.rendering.templating import (
    apply_values,
    deep_merge,
    set_in_dict,
)


def merge_job_variables(
    deployment: Mapping[str, Any] | None, flow_run: Mapping[str, Any]
) -> dict[str, Any]:
    """Deployment job variables overridden by the flow run's; `env` is merged, not replaced."""
    deployment_vars = copy.deepcopy((deployment or {}).get("job_variables") or {})
    flow_run_vars = copy.deepcopy(flow_run.get("job_variables") or {})
    if not isinstance(deployment_vars, dict):
        raise RenderError("deployment job_variables must be an object")
    if not isinstance(flow_run_vars, dict):
        raise RenderError("flow run job_variables must be an object")
    merged = dict(deployment_vars)
    if isinstance(merged.get("env"), dict):
        run_env = flow_run_vars.pop("env", {})
        if not isinstance(run_env, Mapping):
            raise RenderError(
                f"job variable 'env' of the flow run must be an object to merge with the "
                f"deployment's env, got {type(run_env).__name__}"
            )
        merged["env"].update(run_env)
    merged.update(flow_run_vars)
    return merged


def variable_defaults(variables_schema: Mapping[str, Any]) -> dict[str, Any]:
    """Defaults of the pool's variables; null defaults count as "no value"."""
    properties = variables_schema.get("properties", {}) or {}
    return {
        name: attrs["default"]
        for name, attrs in properties.items()
        if isinstance(attrs, Mapping) and attrs.get("default") is not None
    }


def nest_dotted_keys(values: Mapping[str, Any]) -> dict[str, Any]:
    """`{"env.FOO": "x"}` → `{"env": {"FOO": "x"}}`; plain keys win, dicts deep-merged."""
    nested: dict[str, Any] = {}
    for key, value in values.items():
        if "." in key:
            set_in_dict(nested, key, value)
    for key, value in values.items():
        if "." not in key:
            if key in nested and isinstance(nested[key], dict) and isinstance(value, dict):
                nested[key] = deep_merge(nested[key], value)
            else:
                nested[key] = value
    return nested


def _merge_env(base: dict[str, Any], extra: Any, source: str) -> dict[str, Any]:
    if not isinstance(extra, Mapping):
        raise RenderError(
            f"{source} 'env' must be an object to merge with the template's env, "
            f"got {type(extra).__name__}"
        )
    return base | dict(extra)


def templated_configuration(
    base_job_template: Mapping[str, Any],
    job_variables: Mapping[str, Any],
    template_env: Mapping[str, str],
) -> dict[str, Any]:
    """The job configuration with standard and `$ENV` placeholders filled in."""
    if not isinstance(base_job_template.get("job_configuration"), dict):
        raise RenderError("base job template has no 'job_configuration' object")
    config: dict[str, Any] = copy.deepcopy(base_job_template["job_configuration"])
    schema = base_job_template.get("variables") or {}
    if not isinstance(schema, Mapping):
        raise RenderError("base job template 'variables' must be an object")
    values = variable_defaults(schema)

    if values.get("env"):
        if isinstance(config.get("env"), dict):
            config["env"] = _merge_env(config["env"], values["env"], "the default of variable")
        else:
            config["env"] = values["env"]

    values.update(nest_dotted_keys(job_variables))

    if isinstance(config.get("env"), dict) and (env := values.get("env")):
        config["env"] = _merge_env(config["env"], env, "job variable")

    filled = apply_values(config, values, template_env)
    assert isinstance(filled, dict)
    return filled

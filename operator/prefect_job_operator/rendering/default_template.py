"""The default base job template of prefect-kubernetes 0.8.0 (a pool with an empty template).

One deliberate difference: the operator's copy defaults the ``namespace`` variable to the
WorkPool's namespace instead of ``default`` (docs/compatibility.md), so a run without job
variables lands where the WorkPool lives, and the Prefect UI shows that default.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any, Final

from prefect_job_operator.rendering.errors import RenderError
from prefect_job_operator.rendering.job_variables import templated_configuration

UPSTREAM_DEFAULT_NAMESPACE: Final = "default"
"""Upstream's placeholder default of the ``namespace`` variable (and of the configuration)."""


@cache
def _load() -> dict[str, Any]:
    text = (
        resources.files("prefect_job_operator.rendering")
        .joinpath("data/default-base-job-template.json")
        .read_text(encoding="utf-8")
    )
    data: dict[str, Any] = json.loads(text)
    return data


def default_base_job_template(namespace: str | None = None) -> dict[str, Any]:
    """A fresh deep copy, so callers may mutate it; `namespace` becomes the variable's default."""
    template = copy.deepcopy(_load())
    if namespace:
        template["variables"]["properties"]["namespace"]["default"] = namespace
    return template


def _without_namespace_default(template: Mapping[str, Any]) -> Any:
    stripped = copy.deepcopy(dict(template))
    props = (stripped.get("variables") or {}).get("properties") or {}
    if isinstance(props.get("namespace"), dict):
        props["namespace"].pop("default", None)
    return stripped


def is_stock_template(template: Mapping[str, Any]) -> bool:
    """Whether `template` is the kubernetes worker's default, whatever its namespace default.

    Such a template was written by a worker or by the operator, not by a user, so the
    operator may set its namespace default to the WorkPool's namespace.
    """
    return bool(_without_namespace_default(template) == _without_namespace_default(_load()))


def default_job_namespace(template: Mapping[str, Any]) -> str | None:
    """The namespace a run without a 'namespace' job variable goes to; None if unknowable."""
    try:
        config = templated_configuration(template, {}, {})
    except RenderError:
        return None
    namespace = config.get("namespace")
    if namespace is None:
        return UPSTREAM_DEFAULT_NAMESPACE  # the configuration's own default, as upstream
    return namespace if isinstance(namespace, str) else None

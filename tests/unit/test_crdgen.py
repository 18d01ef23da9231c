"""The generated CRD: committed copies are current, the schema is structural, YAML is exact."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from prefect_job_operator import cli
from prefect_job_operator.api import crdgen, v1alpha1

ROOT = Path(__file__).resolve().parents[2]
CRD_FILE = ROOT / "crds" / crdgen.CRD_FILENAME
CHART_TEMPLATE = ROOT / "charts" / "prefect-job-operator" / "templates" / "crds.yaml"


def test_committed_crd_is_current() -> None:
    assert CRD_FILE.read_text() == crdgen.render_crd_yaml(), "run scripts/generate.py"


def test_chart_template_is_current() -> None:
    from scripts.generate import render_chart_crd_template

    assert CHART_TEMPLATE.exists(), "the chart has no CRD template: run scripts/generate.py"
    assert CHART_TEMPLATE.read_text() == render_chart_crd_template(), "run scripts/generate.py"


def test_check_mode(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.crds_command(str(tmp_path)) == 1  # missing file
    (tmp_path / crdgen.CRD_FILENAME).write_text(crdgen.render_crd_yaml())
    assert cli.crds_command(str(tmp_path)) == 0
    (tmp_path / crdgen.CRD_FILENAME).write_text(crdgen.render_crd_yaml().replace("wp", "xx"))
    capsys.readouterr()
    assert cli.crds_command(str(tmp_path)) == 1
    err = capsys.readouterr().err
    assert "out of date" in err and "-      - xx" in err and "+      - wp" in err


def test_print_mode(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.crds_command(None) == 0
    assert capsys.readouterr().out == crdgen.render_crd_yaml()


def test_yaml_parses_back_to_the_dict() -> None:
    assert yaml.safe_load(crdgen.render_crd_yaml()) == crdgen.build_crd()


def _schemas(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return
    yield path, node
    for name, sub in (node.get("properties") or {}).items():
        yield from _schemas(sub, f"{path}.{name}")
    if "items" in node:
        yield from _schemas(node["items"], f"{path}[]")


def _root() -> dict[str, Any]:
    root: dict[str, Any] = crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return root


def test_schema_is_structural() -> None:
    for path, node in _schemas(_root()):
        for forbidden in ("$ref", "$defs", "anyOf", "allOf", "oneOf", "title", "nullable"):
            assert forbidden not in node, f"{path} has {forbidden}"
        # int-or-string is the one structural node without a type (the API server's rule)
        assert "type" in node or node.get("x-kubernetes-int-or-string") is True, (
            f"{path} has no type"
        )
        assert node.get("additionalProperties") in (None,) or isinstance(
            node["additionalProperties"], dict
        ), path
        if node.get("default") is None:
            assert "default" not in node, f"{path} has default null"


def test_every_spec_and_status_field_is_described() -> None:
    root = _root()
    for top in ("spec", "status"):
        for path, node in _schemas(root["properties"][top], top):
            if path.endswith("[]"):
                continue
            assert node.get("description"), f"{path} has no description"


def test_names_scope_and_subresources() -> None:
    crd = crdgen.build_crd()
    assert crd["metadata"]["name"] == "workpools.prefect-job-operator.dev"
    spec = crd["spec"]
    assert spec["group"] == v1alpha1.GROUP and spec["scope"] == "Namespaced"
    assert spec["names"] == {
        "kind": "WorkPool",
        "listKind": "WorkPoolList",
        "plural": "workpools",
        "singular": "workpool",
        "shortNames": ["wp"],
        "categories": ["prefect"],
    }
    version = spec["versions"][0]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"]: c for c in version["additionalPrinterColumns"]}
    assert list(columns) == [
        "Pool",
        "Type",
        "Ready",
        "Paused",
        "Running",
        "Pending",
        "Last Poll",
        "Age",
    ]
    assert columns["Ready"]["jsonPath"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["Last Poll"]["type"] == "date"


def test_defaults_and_bounds_reach_the_schema() -> None:
    spec = _root()["properties"]["spec"]
    props = spec["properties"]
    assert spec["default"] == {}
    assert props["type"]["default"] == "kubernetes"
    assert props["deletionPolicy"] == {
        "default": "Retain",
        "description": props["deletionPolicy"]["description"],
        "enum": ["Retain", "Delete"],
        "type": "string",
    }
    worker = props["worker"]
    assert worker["default"] == {}
    poll = worker["properties"]["pollIntervalSeconds"]
    assert (poll["default"], poll["minimum"], poll["maximum"]) == (10, 1, 3600)
    assert worker["properties"]["submitConcurrency"]["maximum"] == 64
    assert props["limit"]["minimum"] == 1 and "default" not in props["limit"]
    assert props["api"]["properties"]["apiKeySecretRef"]["properties"]["key"]["default"] == (
        "api-key"
    )
    assert props["jobNamespaces"]["items"]["pattern"].startswith("^(\\*|")


def test_free_form_and_status_fields_are_preserved() -> None:
    root = _root()
    template = root["properties"]["spec"]["properties"]["baseJobTemplate"]
    assert template["type"] == "object"
    assert template["x-kubernetes-preserve-unknown-fields"] is True
    status = root["properties"]["status"]
    assert status["x-kubernetes-preserve-unknown-fields"] is True  # kopf's progress records
    conditions = status["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert set(conditions["items"]["required"]) >= {"type", "status", "reason"}


def test_cel_rules_sit_on_the_right_nodes() -> None:
    root = _root()
    spec = root["properties"]["spec"]
    rules = {
        path: [r["rule"] for r in node.get("x-kubernetes-validations", [])]
        for path, node in _schemas(root)
    }
    assert any("metadata.name" in r for r in rules[""])
    assert any("baseJobTemplateFrom" in r for r in rules[".spec"])
    assert any("apiKeySecretRef" in r for r in rules[".spec.api"])
    assert any("startsWith('prefect')" in r for r in rules[".spec.poolName"])
    assert len(rules[".spec.baseJobTemplate"]) == 3
    assert any("'*' in self" in r for r in rules[".spec.jobNamespaces"])
    for node in (spec, spec["properties"]["baseJobTemplate"]):
        for rule in node["x-kubernetes-validations"]:
            assert rule["message"], rule


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.sampled_from([".inf", "-.Inf", ".NaN", "a\nb", "x\n", " lead\n  trail \n", "{{ x }}"]),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_emitter_round_trips_through_a_real_yaml_parser(value: Any) -> None:
    assert yaml.safe_load(crdgen.to_yaml(value)) == value


@pytest.mark.parametrize(
    "text",
    [
        *("true", "No", "10", "1e3", "", " x", "a: b", "- x", "#c", "~", "null", "0x1F", "'q'"),
        # The hand-written emitter wrote these unquoted; YAML reads them back as floats.
        *(".inf", ".Inf", "-.inf", "+.INF", ".nan", ".NaN"),
    ],
)
def test_ambiguous_strings_stay_strings(text: str) -> None:
    assert yaml.safe_load(crdgen.to_yaml({"k": text})) == {"k": text}


def test_infinite_numbers_stay_numbers() -> None:
    # json.dumps wrote `Infinity`, which YAML reads back as a string.
    assert yaml.safe_load(crdgen.to_yaml({"max": float("inf"), "min": -float("inf")})) == {
        "max": float("inf"),
        "min": -float("inf"),
    }


def test_layout_block_style_sorted_keys_indented_lists() -> None:
    text = crdgen.to_yaml({"b": {"z": [{"y": 1, "x": []}], "e": {}}, "a": "one line"})
    assert text == "a: one line\nb:\n  e: {}\n  z:\n    - x: []\n      y: 1\n"


def test_multi_line_strings_are_literal_blocks() -> None:
    text = crdgen.to_yaml({"description": "first\nsecond"})
    assert text == "description: |-\n  first\n  second\n"


def test_shared_sub_schemas_are_written_out_not_aliased() -> None:
    shared = {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''"}]}
    text = crdgen.to_yaml({"a": shared, "b": shared})
    assert "&" not in text and "*" not in text
    assert yaml.safe_load(text) == {"a": shared, "b": shared}


def test_long_descriptions_are_not_folded() -> None:
    description = "word " * 100 + "end"
    text = crdgen.to_yaml({"description": description})
    assert text == f"description: {description}\n"


def test_committed_crd_parses_back_to_exactly_the_schema() -> None:
    """The committed file (not only the text rendered now) is the CRD dict, key for key."""
    loaded = yaml.safe_load(CRD_FILE.read_text())
    assert loaded == crdgen.build_crd()
    root = loaded["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert root == crdgen.build_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]

"""Table-driven tests of Prefect's templating rules as we reproduce them (pure)."""

from __future__ import annotations

from typing import Any

import pytest

from prefect_job_operator.rendering import RenderError
from prefect_job_operator.rendering.job_variables import (
    merge_job_variables,
    nest_dotted_keys,
    templated_configuration,
)
from prefect_job_operator.rendering.templating import MISSING, apply_values, get_from_dict

VALUES: dict[str, Any] = {
    "n": 3,
    "s": "text",
    "flag": True,
    "nothing": None,
    "d": {"k": 1},
    "lst": ["a", {"b": "deep"}],
    "years": {"2026": "numeric-key"},
    "tpl": "{{ s }}",
}
ENV = {"HOME_DIR": "/home/w"}


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        # a whole-string placeholder keeps the value's type
        ("{{ n }}", 3),
        ("{{n}}", 3),
        ("{{ d }}", {"k": 1}),
        ("{{ lst }}", ["a", {"b": "deep"}]),
        ("{{ flag }}", True),
        ("{{ nothing }}", None),  # an explicit null stays null
        # inside other text: Python's str() of the value
        ("n={{ n }}", "n=3"),
        ("{{ flag }}!", "True!"),
        ("{{ nothing }}-x", "None-x"),
        ("d={{ d }}", "d={'k': 1}"),
        ("{{ s }}-{{ n }}", "text-3"),
        ("a-{{ missing }}-b", "a--b"),
        # paths
        ("{{ lst[1].b }}", "deep"),
        ("{{ lst.0 }}", "a"),
        ("{{ years.2026 }}", "numeric-key"),
        ("{{ d.k }}", 1),
        # single pass: an inserted value is never templated again
        ("{{ tpl }}", "{{ s }}"),
        ("x{{ tpl }}", "x{{ s }}"),
        # worker environment: always a string, missing → ""
        ("{{ $HOME_DIR }}", "/home/w"),
        ("{{ $HOME_DIR }}/bin", "/home/w/bin"),
        ("{{ $NOPE }}", ""),
        # block and variable placeholders are left for the reference resolvers
        ("{{ prefect.variables.v }}", "{{ prefect.variables.v }}"),
        ("{{ s }}-{{ prefect.blocks.a.b }}", "text-{{ prefect.blocks.a.b }}"),
        ("no placeholders", "no placeholders"),
        (7, 7),
        (None, None),
    ],
)
def test_apply_values(template: Any, expected: Any) -> None:
    assert apply_values(template, VALUES, ENV) == expected


def test_missing_whole_placeholder_removes_the_key_or_list_item() -> None:
    template = {"keep": "{{ s }}", "drop": "{{ missing }}", "items": ["{{ missing }}", "{{ n }}"]}
    assert apply_values(template, VALUES, {}) == {"keep": "text", "items": [3]}
    assert apply_values("{{ missing }}", VALUES, {}) is MISSING


def test_empty_parents_are_kept() -> None:
    template = {"resources": {"limits": {"cpu": "{{ missing }}"}, "requests": {}}}
    assert apply_values(template, VALUES, {}) == {"resources": {"limits": {}, "requests": {}}}


@pytest.mark.parametrize(
    ("path", "expected"),
    [("d.k", 1), ("d.x", MISSING), ("lst[5]", MISSING), ("s.0", "t"), ("n.x", MISSING)],
)
def test_get_from_dict(path: str, expected: Any) -> None:
    assert get_from_dict(VALUES, path) == expected


def test_env_merge_deployment_then_flow_run_and_wholesale_replace_of_other_keys() -> None:
    deployment = {"job_variables": {"env": {"A": "1", "REGION": "eu"}, "labels": {"team": "data"}}}
    flow_run = {"job_variables": {"env": {"REGION": "us", "B": "2"}, "labels": {"run": "x"}}}
    merged = merge_job_variables(deployment, flow_run)
    assert merged["env"] == {"A": "1", "REGION": "us", "B": "2"}
    assert list(merged["env"]) == ["A", "REGION", "B"]
    assert merged["labels"] == {"run": "x"}  # replaced, not merged
    assert deployment["job_variables"]["env"] == {"A": "1", "REGION": "eu"}  # inputs untouched


def test_flow_run_env_replaces_when_the_deployment_has_none() -> None:
    merged = merge_job_variables({"job_variables": {}}, {"job_variables": {"env": {"B": "2"}}})
    assert merged == {"env": {"B": "2"}}
    assert merge_job_variables(None, {"job_variables": None}) == {}


def test_dotted_keys_nest_and_plain_keys_win() -> None:
    nested = nest_dotted_keys({"env.FOO": "dotted", "env": {"FOO": "plain", "BAR": "b"}, "x": 1})
    assert nested == {"env": {"FOO": "plain", "BAR": "b"}, "x": 1}
    assert nest_dotted_keys({"a.b.c": 1}) == {"a": {"b": {"c": 1}}}


def test_dotted_key_under_a_scalar_names_the_key() -> None:
    with pytest.raises(RenderError, match=r"'env.FOO.BAR'"):
        nest_dotted_keys({"env.FOO": "x", "env.FOO.BAR": "y"})


def _template(env_default: Any = None, env_template: Any = "{{ env }}") -> dict[str, Any]:
    props: dict[str, Any] = {"env": {"type": "object"}, "image": {"default": None}}
    if env_default is not None:
        props["env"]["default"] = env_default
    return {
        "job_configuration": {"env": env_template, "image": "{{ image }}"},
        "variables": {"properties": props},
    }


def test_pool_default_env_merges_under_job_variable_env() -> None:
    config = templated_configuration(
        _template(env_default={"POOL_DEFAULT": "yes", "X": "pool"}), {"env": {"X": "job"}}, {}
    )
    assert config["env"] == {"POOL_DEFAULT": "yes", "X": "job"}


def test_without_a_default_the_job_variable_env_replaces_the_placeholder() -> None:
    config = templated_configuration(_template(), {"env": {"X": "{{ image }}"}}, {})
    # a whole-placeholder value is inserted as is: env values are not templated
    assert config["env"] == {"X": "{{ image }}"}


def test_null_defaults_count_as_missing() -> None:
    assert "image" not in templated_configuration(_template(), {}, {})
    assert templated_configuration(_template(), {"image": None}, {})["image"] is None

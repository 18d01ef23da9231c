"""WorkPoolSpec parsing: defaults from metadata, field-path errors, parity with the CEL rules."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from prefect_job_operator.api.job_namespaces import NamespaceScope, namespace_refusal, parse_policy
from prefect_job_operator.api.v1alpha1 import (
    CONTAINER_MESSAGE,
    RESTART_POLICY_MESSAGE,
    TEMPLATE_SHAPE_MESSAGE,
    InvalidSpecError,
    WorkPoolSpec,
    WorkPoolStatus,
    template_problem,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"


def cr(
    spec: dict[str, Any] | None = None, name: str = "demo-pool", ns: str = "team-a"
) -> dict[str, Any]:
    return {
        "apiVersion": "prefect-job-operator.dev/v1alpha1",
        "kind": "WorkPool",
        "metadata": {"name": name, "namespace": ns},
        "spec": spec if spec is not None else {},
    }


def test_empty_spec_gets_every_default() -> None:
    spec = WorkPoolSpec.from_cr(cr())
    assert spec.resolved_pool_name == "demo-pool"
    assert spec.job_namespaces == ["team-a"]
    assert spec.resolved_worker_name == "prefect-job-operator:team-a:demo-pool"
    assert spec.type == "kubernetes"
    assert spec.work_queues == []
    assert spec.limit is None and spec.concurrency_limit is None
    # paused and concurrencyLimit unset: not managed, the Prefect side decides (issue #10)
    assert (spec.paused, spec.create_if_missing, spec.deletion_policy) == (None, True, "Retain")
    assert spec.managed_concurrency_limit == (False, None)
    assert spec.base_job_template is None and spec.base_job_template_from is None
    w = spec.worker
    assert (w.poll_interval_seconds, w.prefetch_seconds, w.heartbeat_interval_seconds) == (
        10,
        10,
        30,
    )
    assert (w.submit_concurrency, w.run_labels, w.submitting_state, w.emit_events) == (
        4,
        True,
        False,
        True,
    )
    assert spec.recovery.pending_grace_seconds == 60
    assert spec.recovery.finished_job_ttl_seconds is None
    assert spec.api.url is None and spec.api.api_key_secret_ref is None


def test_explicit_values_win_over_metadata_defaults() -> None:
    spec = WorkPoolSpec.from_cr(
        cr(
            {
                "poolName": "other",
                "jobNamespaces": ["x", "y"],
                "worker": {"name": "w1", "pollIntervalSeconds": 3},
                "api": {"url": "http://prefect:4200/api", "apiKeySecretRef": {"name": "s"}},
            }
        )
    )
    assert spec.pool_name == "other"
    assert spec.job_namespaces == ["x", "y"]
    assert spec.worker.name == "w1"
    assert spec.worker.poll_interval_seconds == 3
    assert spec.api.api_key_secret_ref is not None
    assert spec.api.api_key_secret_ref.key == "api-key"
    scope = NamespaceScope("ns", tuple(spec.job_namespaces), policy=parse_policy("*=*"))
    assert namespace_refusal("y", scope) is None and namespace_refusal("z", scope) is not None


def test_star_allows_any_namespace() -> None:
    spec = WorkPoolSpec.from_cr(cr({"jobNamespaces": ["*"]}))
    assert spec.any_job_namespace
    scope = NamespaceScope("ns", tuple(spec.job_namespaces), policy=parse_policy("*=*"))
    assert namespace_refusal("anything", scope) is None


def test_auth_string_ref_default_key() -> None:
    spec = WorkPoolSpec.from_cr(cr({"api": {"authStringSecretRef": {"name": "basic"}}}))
    assert spec.api.auth_string_secret_ref is not None
    assert spec.api.auth_string_secret_ref.key == "auth-string"


@pytest.mark.parametrize(
    ("spec", "name", "expected"),
    [
        pytest.param(
            {"worker": {"pollIntervalSeconds": 0}},
            "ok",
            "spec.worker.pollIntervalSeconds: Input should be greater than or equal to 1",
            id="poll-interval",
        ),
        pytest.param(
            {"worker": {"submitConcurrency": 65}},
            "ok",
            "spec.worker.submitConcurrency: Input should be less than or equal to 64",
            id="submit-concurrency",
        ),
        pytest.param({"limit": 0}, "ok", "spec.limit: Input should be greater", id="limit"),
        pytest.param({"poolName": "PREFECT-x"}, "ok", "spec.poolName: must not start", id="pfx"),
        pytest.param({}, "prefect-pool", "metadata.name: must not start with 'prefect'", id="md"),
        pytest.param({"poolName": "a%b"}, "ok", "spec.poolName: String should match", id="pct"),
        pytest.param({"unknownField": 1}, "ok", "spec.unknownField: Extra inputs", id="typo"),
        pytest.param(
            {"deletionPolicy": "Orphan"}, "ok", "spec.deletionPolicy: Input should be", id="enum"
        ),
        pytest.param(
            {"jobNamespaces": ["*", "a"]}, "ok", "'*' (any namespace) must be the only", id="star"
        ),
        pytest.param(
            {"jobNamespaces": ["Bad_NS"]}, "ok", "spec.jobNamespaces[0]: String should", id="ns"
        ),
        pytest.param(
            {"api": {"url": "prefect:4200"}}, "ok", "spec.api.url: String should match", id="url"
        ),
        pytest.param(
            {"baseJobTemplate": {"job_configuration": {}}},
            "ok",
            f"spec.baseJobTemplate: {TEMPLATE_SHAPE_MESSAGE}",
            id="template-shape",
        ),
    ],
)
def test_invalid_spec_messages_name_the_field(
    spec: dict[str, Any], name: str, expected: str
) -> None:
    with pytest.raises(InvalidSpecError) as info:
        WorkPoolSpec.from_cr(cr(spec, name=name))
    assert expected in str(info.value)


def _manifest(pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "variables": {"type": "object", "properties": {}},
        "job_configuration": {"job_manifest": {"spec": {"template": {"spec": pod_spec}}}},
    }


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        pytest.param({"job_configuration": {}, "variables": {}}, None, id="no-manifest"),
        pytest.param({"variables": {}}, TEMPLATE_SHAPE_MESSAGE, id="no-config"),
        pytest.param(
            _manifest({"restartPolicy": "Never", "containers": [{"name": "prefect-job"}]}),
            None,
            id="good",
        ),
        pytest.param(
            _manifest({"restartPolicy": "Always", "containers": [{"name": "prefect-job"}]}),
            RESTART_POLICY_MESSAGE,
            id="restart-always",
        ),
        pytest.param(
            _manifest({"containers": [{"name": "prefect-job"}]}),
            RESTART_POLICY_MESSAGE,
            id="restart-missing",
        ),
        pytest.param(
            _manifest({"restartPolicy": "Never", "containers": [{"name": "x"}, {}]}),
            CONTAINER_MESSAGE,
            id="no-prefect-job",
        ),
        pytest.param(
            _manifest({"restartPolicy": "Never", "containers": "{{ containers }}"}),
            CONTAINER_MESSAGE,
            id="containers-not-list",
        ),
        pytest.param(
            {"variables": {}, "job_configuration": {"job_manifest": {"kind": "Job"}}},
            RESTART_POLICY_MESSAGE,
            id="partial-manifest",
        ),
    ],
)
def test_template_problem(template: dict[str, Any], problem: str | None) -> None:
    assert template_problem(template) == problem


def _load(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_valid_examples_parse(path: Path) -> None:
    body = _load(path)
    body["metadata"].setdefault("namespace", "default")
    spec = WorkPoolSpec.from_cr(body)
    assert spec.resolved_pool_name


def test_custom_template_example_is_a_usable_template() -> None:
    spec = WorkPoolSpec.from_cr(_load(EXAMPLES / "workpool-custom-template.yaml"))
    assert spec.base_job_template is not None
    assert "node_selector" in spec.base_job_template["variables"]["properties"]
    assert spec.job_namespaces == ["default", "prefect-jobs"]


INVALID = sorted((EXAMPLES / "invalid").glob("*.yaml"))


def test_there_are_invalid_examples() -> None:
    assert len(INVALID) >= 8


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.name)
def test_invalid_examples_are_rejected_by_the_model_too(path: Path) -> None:
    """What CEL rejects at apply, the operator rejects too (e.g. with CEL off in old clusters)."""
    assert "# expect: " in path.read_text(), "each invalid example documents its message"
    body = _load(path)
    body["metadata"].setdefault("namespace", "default")
    with pytest.raises(InvalidSpecError):
        WorkPoolSpec.from_cr(body)


def test_status_model_reads_a_status_with_kopf_fields() -> None:
    status = WorkPoolStatus.model_validate(
        {
            "observedGeneration": 2,
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True",
                    "reason": "Ready",
                    "message": "",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "counts": {"running": 3},
            "kopf": {"progress": {}},
        }
    )
    assert status.conditions[0].type == "Ready"
    assert status.counts is not None and status.counts.running == 3


def test_concurrency_limit_unset_number_or_unlimited() -> None:
    """Unset: not managed; a number: enforced; 'Unlimited': enforce no limit."""
    assert WorkPoolSpec.from_cr(cr({"concurrencyLimit": 0})).managed_concurrency_limit == (True, 0)
    assert WorkPoolSpec.from_cr(cr({"concurrencyLimit": 7})).managed_concurrency_limit == (True, 7)
    unlimited = WorkPoolSpec.from_cr(cr({"concurrencyLimit": "Unlimited"}))
    assert unlimited.managed_concurrency_limit == (True, None)
    for bad in (-1, "unlimited", "none"):
        with pytest.raises(InvalidSpecError, match="concurrencyLimit"):
            WorkPoolSpec.from_cr(cr({"concurrencyLimit": bad}))

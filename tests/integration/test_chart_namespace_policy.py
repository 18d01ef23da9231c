"""The chart's `security.jobNamespacePolicy` reaches the operator as a policy it parses, and
the default adds nothing (own namespace only). `helm template` with the real helm binary."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from prefect_job_operator.api.job_namespaces import parse_policy
from tests.integration.test_chart import CHART, KUBE, NS, RELEASE, helm, helm_bin, one

__all__ = ["helm_bin"]  # the module-scoped fixture, shared


def operator_env(helm_bin: Path, *args: str) -> dict[str, str]:
    proc = helm(helm_bin, "template", RELEASE, str(CHART), "-n", NS, *KUBE, *args)
    assert proc.returncode == 0, proc.stderr
    objects = [d for d in yaml.safe_load_all(proc.stdout) if d]
    container = one(objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return {e["name"]: e.get("value", "") for e in container["env"]}


def test_default_chart_sets_no_policy(helm_bin: Path) -> None:
    env = operator_env(helm_bin)
    assert "PJO_JOB_NAMESPACE_POLICY" not in env
    assert not parse_policy(env.get("PJO_JOB_NAMESPACE_POLICY")).rules


def test_documented_set_json_becomes_the_policy(helm_bin: Path) -> None:
    """The command in docs/install.md and docs/security.md, as a user types it."""
    env = operator_env(
        helm_bin,
        "--set-json",
        'security.jobNamespacePolicy={"data": ["etl", "etl-*"], "ops": ["*"]}',
    )
    policy = parse_policy(env["PJO_JOB_NAMESPACE_POLICY"])
    assert policy.permits("data", "etl-7") and policy.permits("ops", "kube-system")
    assert not policy.permits("data", "ops") and not policy.permits("web", "etl")


@pytest.mark.parametrize(
    ("bad", "named"),
    [
        ('security.jobNamespacePolicy={"data": "etl"}', "jobNamespacePolicy"),  # not a list
        ('security.jobNamespacePolicy={"Data": ["etl"]}', "'Data'"),  # not a namespace name
        ('security.jobNamespacePolicy={"data": []}', "jobNamespacePolicy"),
    ],
)
def test_schema_rejects_a_malformed_policy(helm_bin: Path, bad: str, named: str) -> None:
    proc = helm(helm_bin, "template", RELEASE, str(CHART), "-n", NS, *KUBE, "--set-json", bad)
    assert proc.returncode != 0 and named in proc.stderr, proc.stderr

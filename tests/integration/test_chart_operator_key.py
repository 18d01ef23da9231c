"""The chart's `security.operatorKeyNamespaces` reaches the operator as a setting it parses;
the default is the release namespace only. `helm template` with the real helm binary."""

from __future__ import annotations

from pathlib import Path

from prefect_job_operator.settings import OperatorSettings
from tests.integration.test_chart import CHART, KUBE, NS, RELEASE, helm, helm_bin
from tests.integration.test_chart_namespace_policy import operator_env

__all__ = ["helm_bin"]  # the module-scoped fixture, shared


def _parsed(env: dict[str, str]) -> tuple[str, ...]:
    value = env["PJO_OPERATOR_KEY_NAMESPACES"]
    return OperatorSettings(operator_key_namespaces=value).operator_key_namespace_list


def test_the_default_is_the_release_namespace(helm_bin: Path) -> None:
    assert _parsed(operator_env(helm_bin)) == (NS,)


def test_the_documented_values_become_the_setting(helm_bin: Path) -> None:
    """The commands in docs/install.md and docs/security.md, as a user types them."""
    assert _parsed(operator_env(helm_bin, "--set", "security.operatorKeyNamespaces={default}")) == (
        "default",
    )
    env = operator_env(helm_bin, "--set", "security.operatorKeyNamespaces={data,team-*}")
    assert _parsed(env) == ("data", "team-*")
    assert _parsed(operator_env(helm_bin, "--set", "security.operatorKeyNamespaces={*}")) == ("*",)


def test_a_bad_namespace_fails_the_install_naming_the_value(helm_bin: Path) -> None:
    proc = helm(
        helm_bin, "template", RELEASE, str(CHART), "-n", NS, *KUBE,
        "--set", "security.operatorKeyNamespaces={Data}",
    )  # fmt: skip
    assert proc.returncode != 0
    assert "operatorKeyNamespaces" in proc.stderr, proc.stderr

"""The namespace rule (api.job_namespaces): listed, admin policy, watched, RBAC — table-driven."""

from __future__ import annotations

import pytest

from prefect_job_operator.api import job_namespaces as jn
from prefect_job_operator.api.job_namespaces import (
    NamespacePolicy,
    NamespaceScope,
    namespace_refusal,
    namespace_report,
    parse_policy,
)
from prefect_job_operator.settings import OperatorSettings

POLICY = parse_policy("data=data,etl-*;ops=*")


def scope(
    listed: tuple[str, ...] = ("data",),
    *,
    ns: str = "data",
    policy: NamespacePolicy = POLICY,
    watched: tuple[str, ...] = (),
    forbidden: dict[str, str] | None = None,
) -> NamespaceScope:
    return NamespaceScope(ns, listed, policy=policy, watched=watched, forbidden=forbidden)


@pytest.mark.parametrize(
    ("target", "sc", "reason"),
    [
        # own namespace: always fine, even with no policy at all
        ("data", scope(policy=NamespacePolicy()), None),
        # listed but the default (empty) policy refuses any other namespace
        ("etl-1", scope(("data", "etl-1"), policy=NamespacePolicy()), jn.REASON_NOT_PERMITTED),
        # the policy's glob opens it
        ("etl-1", scope(("data", "etl-1")), None),
        # not listed in jobNamespaces comes first
        ("etl-1", scope(("data",)), jn.REASON_NOT_LISTED),
        # '*' in jobNamespaces lists everything, the policy still decides
        ("etl-9", scope(("*",)), None),
        ("kube-system", scope(("*",)), jn.REASON_NOT_PERMITTED),
        # a '*' entry itself needs a '*' rule
        ("*", scope(("*",)), jn.REASON_NOT_PERMITTED),
        ("*", scope(("*",), ns="ops"), None),
        ("kube-system", scope(("*",), ns="ops"), None),
        # a rule keyed by another namespace does not apply
        ("etl-1", scope(("etl-1",), ns="web"), jn.REASON_NOT_PERMITTED),
        # watched namespaces: a Job the operator cannot see is refused
        ("data", scope(watched=("data",)), None),
        ("etl-1", scope(("data", "etl-1"), watched=("data",)), jn.REASON_NOT_WATCHED),
        ("*", scope(("*",), ns="ops", watched=("ops",)), jn.REASON_NOT_WATCHED),
        # RBAC observed: 403 on the listing
        ("data", scope(forbidden={"data": "no rights"}), jn.REASON_FORBIDDEN),
        ("data", scope(forbidden={"etl-1": "no rights"}), None),
        # '*=*' (single tenant) opens everything
        ("kube-system", scope(("*",), policy=parse_policy("*=*")), None),
        # an empty namespace (job variable namespace: "") is not listed
        ("", scope(), jn.REASON_NOT_LISTED),
    ],
)
def test_the_rule(target: str, sc: NamespaceScope, reason: str | None) -> None:
    refusal = namespace_refusal(target, sc)
    assert (refusal.reason if refusal else None) == reason


def test_refusal_messages_name_the_fix() -> None:
    policy = namespace_refusal("etl-1", scope(("data", "etl-1"), policy=NamespacePolicy()))
    assert policy is not None
    assert "PJO_JOB_NAMESPACE_POLICY" in policy.message
    assert "security.jobNamespacePolicy" in policy.message
    assert "'etl-1'" in policy.message and "allowed: data" in policy.message
    watched = namespace_refusal("etl-1", scope(("data", "etl-1"), watched=("data",)))
    assert watched is not None and "PJO_NAMESPACES" in watched.message
    assert "watchNamespaces" in watched.message
    listed = namespace_refusal("x", scope())
    assert listed is not None and "spec.jobNamespaces" in listed.message
    forbidden = jn.forbidden_message("list", "jobs.batch", "secret-ns")
    assert "cannot list jobs.batch in namespace 'secret-ns'" in forbidden
    assert "Role" in forbidden and "watchNamespaces" in forbidden


@pytest.mark.parametrize(
    ("text", "rules"),
    [
        ("", ()),
        ("  ", ()),
        ("data=data,etl-*;ops=*", (("data", ("data", "etl-*")), ("ops", ("*",)))),
        (" data = etl ; data = web ;", (("data", ("etl", "web")),)),
        (
            '{"data": ["data", "etl-*"], "ops": ["*"]}',
            (("data", ("data", "etl-*")), ("ops", ("*",))),
        ),
        ('{"ops": "*"}', (("ops", ("*",)),)),
        ("*=*", (("*", ("*",)),)),
    ],
)
def test_policy_syntax(text: str, rules: tuple[tuple[str, tuple[str, ...]], ...]) -> None:
    assert parse_policy(text).rules == rules


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("data", "'data' has no 'WORKPOOL_NS=TARGETS' form"),
        ("data=", "'data=' has no"),
        ("=etl", "'=etl' has no"),
        ("Data=etl", "'Data' is not a namespace name"),
        ("data=etl/x", "'etl/x' is not a namespace name"),
        ('{"data": ', "not valid JSON"),
        ('{"data": [1]}', "must be a list of namespaces"),
    ],
)
def test_bad_policy_is_one_line_with_the_form(text: str, fragment: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_policy(text)
    message = str(info.value)
    assert fragment in message and "data=data,etl-*;ops=*" in message and "\n" not in message


def test_bad_policy_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PJO_JOB_NAMESPACE_POLICY", "data")
    with pytest.raises(ValueError) as info:
        OperatorSettings()
    assert "job_namespace_policy" in str(info.value) and "WORKPOOL_NS=TARGET" in str(info.value)


def test_policy_setting_parsed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PJO_JOB_NAMESPACE_POLICY", '{"data": ["etl"]}')
    assert OperatorSettings().namespace_policy.permits("data", "etl")
    monkeypatch.delenv("PJO_JOB_NAMESPACE_POLICY")
    default = OperatorSettings().namespace_policy
    assert default.permits("data", "data") and not default.permits("data", "etl")


def test_report_all_good() -> None:
    report = namespace_report(scope(("data", "etl-1")), "data")
    assert report.ok and not report.blocking and report.reason == jn.REASON_ALLOWED
    assert "data, etl-1" in report.message


def test_report_one_bad_entry_is_not_blocking() -> None:
    report = namespace_report(scope(("data", "etl-1", "web")), "data")
    assert not report.ok and not report.blocking
    assert [r.namespace for r in report.refusals] == ["web"]


def test_report_no_usable_entry_is_blocking() -> None:
    report = namespace_report(scope(("data",), forbidden={"data": "no rights"}), "data")
    assert report.blocking and report.reason == jn.REASON_FORBIDDEN


def test_report_template_default_outside_names_the_template_fix() -> None:
    report = namespace_report(scope(("data",)), "default")
    assert not report.ok and not report.blocking
    first = report.refusals[0]
    assert first.namespace == "default"
    assert "variables.properties.namespace.default" in first.message
    assert "'data'" in first.message


def test_report_star_is_never_blocking() -> None:
    """'*' refused (no '*' rule, or a partial watch) still leaves concrete namespaces usable."""
    report = namespace_report(scope(("*",)), "data")
    assert not report.ok and report.reason == jn.REASON_NOT_PERMITTED and not report.blocking
    report = namespace_report(scope(("*",), ns="ops", watched=("ops", "x")), "ops")
    assert not report.ok and report.reason == jn.REASON_NOT_WATCHED and not report.blocking

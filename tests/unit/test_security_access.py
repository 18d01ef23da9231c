"""The author's rights (issue #15, finding 2 and 3): which permissions a WorkPool uses, the
SubjectAccessReviews asked for them and the refusal message (pure, plus a fake reviewer)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from prefect_job_operator.security.access import (
    AccessCheck,
    refusal,
    required_access,
    review_body,
)
from prefect_job_operator.security.admission import ReviewFailed, review_workpool


def body(spec: Mapping[str, Any], namespace: str = "team-a") -> dict[str, Any]:
    return {"metadata": {"name": "p", "namespace": namespace}, "spec": dict(spec)}


def test_a_bare_workpool_needs_create_jobs_in_its_own_namespace() -> None:
    assert required_access(body({})) == [
        AccessCheck("create", "batch", "jobs", "team-a", None, "spec.jobNamespaces (default)")
    ]


def test_every_reference_and_target_namespace_is_checked() -> None:
    spec = {
        "api": {"apiKeySecretRef": {"name": "db-password", "key": "password"}},
        "baseJobTemplateFrom": {"configMapKeyRef": {"name": "tmpl", "key": "t.json"}},
        "jobNamespaces": ["team-a", "kube-system", "team-a"],
    }
    checks = {(c.verb, c.resource, c.namespace, c.name) for c in required_access(body(spec))}
    assert checks == {
        ("get", "secrets", "team-a", "db-password"),
        ("get", "configmaps", "team-a", "tmpl"),
        ("create", "jobs", "team-a", None),
        ("create", "jobs", "kube-system", None),
    }
    auth = required_access(body({"api": {"authStringSecretRef": {"name": "basic"}}}))
    assert ("get", "secrets", "team-a", "basic") in {
        (c.verb, c.resource, c.namespace, c.name) for c in auth
    }


def test_any_namespace_needs_cluster_wide_create() -> None:
    [check] = required_access(body({"jobNamespaces": ["*"]}))
    assert (check.verb, check.namespace) == ("create", "")
    assert "in all namespaces" in check.describe()


def test_the_review_carries_the_whole_user_info() -> None:
    check = AccessCheck("get", "", "secrets", "team-a", "db", "spec.api.apiKeySecretRef")
    user = {"username": "alice", "groups": ["devs"], "uid": "u-1", "extra": {"scopes": ["x"]}}
    review = review_body(check, user)
    assert review["kind"] == "SubjectAccessReview"
    assert review["spec"] == {
        "user": "alice",
        "groups": ["devs"],
        "uid": "u-1",
        "extra": {"scopes": ["x"]},
        "resourceAttributes": {
            "verb": "get",
            "group": "",
            "resource": "secrets",
            "namespace": "team-a",
            "name": "db",
        },
    }


def test_the_refusal_names_verb_resource_namespace_and_name() -> None:
    denied = [
        AccessCheck("get", "", "secrets", "team-a", "db", "spec.api.apiKeySecretRef"),
        AccessCheck("create", "batch", "jobs", "kube-system", None, "spec.jobNamespaces"),
    ]
    message = refusal({"username": "alice"}, denied)
    assert message is not None
    assert "'alice' may not get secrets 'db' in namespace 'team-a'" in message
    assert "create jobs.batch in namespace 'kube-system' (needed by spec.jobNamespaces)" in message
    assert refusal({"username": "alice"}, []) is None


class Reviewer:
    def __init__(self, allowed: set[tuple[str, str, str]], fail: bool = False) -> None:
        self.allowed = allowed
        self.fail = fail
        self.asked: list[Mapping[str, Any]] = []

    async def subject_access_review(self, review: Mapping[str, Any]) -> bool:
        self.asked.append(review)
        if self.fail:
            raise RuntimeError("apiserver down")
        attrs = review["spec"]["resourceAttributes"]
        return (attrs["verb"], attrs["resource"], attrs["namespace"]) in self.allowed


USER = {"username": "alice", "groups": ["devs"]}


async def test_review_refuses_what_the_user_may_not_do_and_admits_the_rest() -> None:
    spec = {"api": {"apiKeySecretRef": {"name": "db"}}, "jobNamespaces": ["team-a", "team-b"]}
    reviewer = Reviewer({("create", "jobs", "team-a"), ("get", "secrets", "team-a")})
    message = await review_workpool(reviewer, body(spec), None, USER)
    assert message is not None and "create jobs.batch in namespace 'team-b'" in message
    assert "secrets" not in message
    assert len(reviewer.asked) == 3
    reviewer.allowed.add(("create", "jobs", "team-b"))
    assert await review_workpool(reviewer, body(spec), None, USER) is None


async def test_metadata_only_updates_are_not_reviewed() -> None:
    """kopf's own finalizer patches (the operator's identity) must never be refused."""
    reviewer = Reviewer(set())
    old = body({"jobNamespaces": ["*"]})
    new = {**old, "metadata": {**old["metadata"], "finalizers": ["x"]}}
    assert await review_workpool(reviewer, new, old, USER) is None
    assert reviewer.asked == []
    changed = body({"jobNamespaces": ["team-b"]})
    assert await review_workpool(reviewer, changed, old, USER) is not None


async def test_an_unanswered_review_fails_closed() -> None:
    with pytest.raises(ReviewFailed, match=r"could not check create jobs\.batch"):
        await review_workpool(Reviewer(set(), fail=True), body({}), None, USER)


def test_a_ca_bundle_from_a_secret_or_configmap_is_checked_too() -> None:
    for field, resource in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
        spec = {"api": {"tls": {"caBundleFrom": {field: {"name": "ca", "key": "ca.crt"}}}}}
        checks = required_access(body(spec))
        assert ("get", resource, "team-a", "ca") in {
            (c.verb, c.resource, c.namespace, c.name) for c in checks
        }

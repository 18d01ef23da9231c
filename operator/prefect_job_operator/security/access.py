"""What a WorkPool lets the operator do on its author's behalf, as access checks (pure).

The operator reads the Secrets and ConfigMaps a WorkPool names and creates Jobs in the
namespaces it targets, with its own rights. The admission webhook asks the API server, with
one SubjectAccessReview per check, whether the requesting user could do each of these
themselves; the WorkPool is refused otherwise, so a WorkPool gives its author no power they
did not already have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from prefect_job_operator.api.v1alpha1 import ALL_NAMESPACES


@dataclass(frozen=True)
class AccessCheck:
    """One permission the requesting user must hold; `field` is the spec field that needs it."""

    verb: str
    group: str
    resource: str
    namespace: str
    """Empty: every namespace (cluster-wide)."""
    name: str | None
    field: str

    def describe(self) -> str:
        """'get secrets "x" in namespace "ns"', the words `kubectl auth can-i` uses."""
        what = f"{self.resource}.{self.group}" if self.group else self.resource
        target = f" {self.name!r}" if self.name else ""
        where = f"in namespace {self.namespace!r}" if self.namespace else "in all namespaces"
        return f"{self.verb} {what}{target} {where} (needed by {self.field})"


def required_access(body: Mapping[str, Any]) -> list[AccessCheck]:
    """Every Secret/ConfigMap read and Job create the WorkPool `body` makes the operator do.

    Works on the raw body (not the validated model) so an invalid spec still gets its checks;
    the CRD schema and the operator report the rest.
    """
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    spec = body.get("spec") or {}
    checks: list[AccessCheck] = []
    api = spec.get("api") or {}
    for field in ("apiKeySecretRef", "authStringSecretRef"):
        ref = api.get(field)
        if isinstance(ref, Mapping) and ref.get("name"):
            checks.append(
                AccessCheck("get", "", "secrets", namespace, str(ref["name"]), f"spec.api.{field}")
            )
    tls = api.get("tls") or {}
    bundle = tls.get("caBundleFrom") if isinstance(tls, Mapping) else None
    for field, resource in (("secretKeyRef", "secrets"), ("configMapKeyRef", "configmaps")):
        ref = bundle.get(field) if isinstance(bundle, Mapping) else None
        if isinstance(ref, Mapping) and ref.get("name"):
            where = f"spec.api.tls.caBundleFrom.{field}"
            checks.append(AccessCheck("get", "", resource, namespace, str(ref["name"]), where))
    source = spec.get("baseJobTemplateFrom") or {}
    cm_ref = source.get("configMapKeyRef") if isinstance(source, Mapping) else None
    if isinstance(cm_ref, Mapping) and cm_ref.get("name"):
        checks.append(
            AccessCheck(
                "get",
                "",
                "configmaps",
                namespace,
                str(cm_ref["name"]),
                "spec.baseJobTemplateFrom.configMapKeyRef",
            )
        )
    targets: Sequence[Any] = spec.get("jobNamespaces") or [namespace]
    field = "spec.jobNamespaces" if spec.get("jobNamespaces") else "spec.jobNamespaces (default)"
    # Creating a Job covers everything its pod template may reference in that namespace
    # (Secrets, ConfigMaps, ServiceAccounts): Kubernetes lets whoever creates a Job do that.
    for target in dict.fromkeys(str(t) for t in targets):
        ns = "" if target == ALL_NAMESPACES else target
        checks.append(AccessCheck("create", "batch", "jobs", ns, None, field))
    return checks


def spec_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Only a new or changed spec needs checks: metadata updates (finalizers, labels) do not."""
    return old is None or (old.get("spec") or {}) != (new.get("spec") or {})


def review_body(check: AccessCheck, userinfo: Mapping[str, Any]) -> dict[str, Any]:
    """The authorization.k8s.io/v1 SubjectAccessReview of `check` for the admission userInfo."""
    spec: dict[str, Any] = {
        "user": str(userinfo.get("username") or ""),
        "groups": list(userinfo.get("groups") or []),
        "resourceAttributes": {
            "verb": check.verb,
            "group": check.group,
            "resource": check.resource,
            "namespace": check.namespace,
            **({"name": check.name} if check.name else {}),
        },
    }
    if userinfo.get("uid"):
        spec["uid"] = str(userinfo["uid"])
    if userinfo.get("extra"):
        spec["extra"] = {k: list(v) for k, v in dict(userinfo["extra"]).items()}
    return {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": spec}


def refusal(userinfo: Mapping[str, Any], denied: Sequence[AccessCheck]) -> str | None:
    """The admission message naming every missing permission; None when nothing is missing."""
    if not denied:
        return None
    user = str(userinfo.get("username") or "?")
    missing = "; ".join(check.describe() for check in denied)
    return (
        f"WorkPool refused: {user!r} may not {missing}. The operator would do this with its own "
        "rights on your behalf; ask a cluster admin for these permissions or change the spec."
    )

"""Which namespaces a WorkPool's Jobs may go to: the one rule, and the admin's policy.

`namespace_refusal` is the rule. It is called at reconcile time for every entry of
``spec.jobNamespaces`` and for the template's default namespace (the problems become the
JobNamespaces condition and Events), and again at every submission for the namespace the
rendered Job names (a refusal crashes that run with the same message). A namespace is usable
only when all of these hold:

1. the WorkPool lists it (``spec.jobNamespaces``; default: its own namespace; ``['*']``: any);
2. the cluster admin's policy (`NamespacePolicy`, ``PJO_JOB_NAMESPACE_POLICY``) lets WorkPools
   of that namespace target it; a WorkPool's own namespace is always allowed, nothing else is
   by default: whoever may create a WorkPool must not get Jobs elsewhere through the operator;
3. the operator watches it (``PJO_NAMESPACES``), otherwise it would never see the Job's events;
4. the operator's own RBAC lets it list Jobs there (learned by the first listing);
5. when the pool copies the operator-wide Prefect key into its Jobs
   (``worker.createSecretForApiKey``), the admin lets both namespaces receive it
   (`security.job_credentials.operator_key_refusal`, ``PJO_OPERATOR_KEY_NAMESPACES``).

Pure: no I/O; the callers pass what they observed.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

from prefect_job_operator.security.job_credentials import (
    ALL as ALL,  # re-exported: the "any namespace" entry of spec.jobNamespaces
)
from prefect_job_operator.security.job_credentials import (
    NAMESPACE_PATTERN,
    OperatorKeyUse,
    operator_key_refusal,
)
from prefect_job_operator.security.job_credentials import (
    REASON_NOT_ALLOWED as REASON_OPERATOR_KEY,
)

POLICY_SETTING: Final = "PJO_JOB_NAMESPACE_POLICY"
POLICY_CHART_VALUE: Final = "security.jobNamespacePolicy"
WATCH_SETTING: Final = "PJO_NAMESPACES"
WATCH_CHART_VALUE: Final = "watchNamespaces"

# Reasons (CamelCase, on the JobNamespaces condition and on Events).
REASON_NOT_LISTED: Final = "NamespaceNotListed"
REASON_NOT_PERMITTED: Final = "NamespaceNotPermitted"
REASON_NOT_WATCHED: Final = "NamespaceNotWatched"
REASON_FORBIDDEN: Final = "NamespaceForbidden"
REASON_ALLOWED: Final = "Allowed"

POLICY_FORM: Final = (
    "expected 'WORKPOOL_NS=TARGET,TARGET;WORKPOOL_NS=TARGET' (e.g. 'data=data,etl-*;ops=*') "
    'or JSON (e.g. {"data": ["data", "etl-*"], "ops": ["*"]}); names are namespaces, '
    "'*' matches any characters"
)


@dataclass(frozen=True)
class NamespacePolicy:
    """The admin's leave: WorkPool namespace pattern → namespace patterns its Jobs may target.

    Empty (the default) means every WorkPool's Jobs stay in its own namespace.
    """

    rules: tuple[tuple[str, tuple[str, ...]], ...] = ()

    def targets_for(self, workpool_namespace: str) -> tuple[str, ...]:
        """The target patterns of every rule whose key matches `workpool_namespace`."""
        out: list[str] = []
        for key, targets in self.rules:
            if fnmatchcase(workpool_namespace, key):
                out += [t for t in targets if t not in out]
        return tuple(out)

    def permits(self, workpool_namespace: str, target: str) -> bool:
        """Whether WorkPools in `workpool_namespace` may send Jobs to `target`.

        `target` may be ``'*'`` (a WorkPool's ``jobNamespaces: ['*']``): only a ``'*'`` rule
        permits that.
        """
        if target == workpool_namespace:
            return True
        return any(fnmatchcase(target, p) for p in self.targets_for(workpool_namespace))

    def describe(self, workpool_namespace: str) -> str:
        """What this policy allows for one WorkPool namespace, in the setting's syntax."""
        targets = [workpool_namespace, *self.targets_for(workpool_namespace)]
        return ",".join(dict.fromkeys(targets))

    def render(self) -> str:
        """The whole policy in the setting's syntax ('' when empty)."""
        return ";".join(f"{key}={','.join(targets)}" for key, targets in self.rules)


def parse_policy(text: str | Mapping[str, Sequence[str]] | None) -> NamespacePolicy:
    """Parse ``PJO_JOB_NAMESPACE_POLICY`` (the compact form or JSON, or an already-parsed map).

    Raises:
        ValueError: a one-line message naming the bad part and the expected form.
    """
    if text is None:
        return NamespacePolicy()
    mapping: Mapping[str, object]
    if isinstance(text, Mapping):
        mapping = text
    else:
        stripped = text.strip()
        if not stripped:
            return NamespacePolicy()
        if stripped.startswith("{"):
            try:
                loaded = json.loads(stripped)
            except ValueError as exc:
                raise ValueError(f"not valid JSON ({exc}); {POLICY_FORM}") from None
            if not isinstance(loaded, dict):
                raise ValueError(f"JSON must be an object; {POLICY_FORM}")
            mapping = loaded
        else:
            mapping = _parse_compact(stripped)
    rules: list[tuple[str, tuple[str, ...]]] = []
    for key, value in mapping.items():
        targets = [value] if isinstance(value, str) else value
        if not isinstance(targets, list | tuple) or not all(isinstance(t, str) for t in targets):
            raise ValueError(f"{key!r}: the targets must be a list of namespaces; {POLICY_FORM}")
        for name in (key, *targets):
            if not NAMESPACE_PATTERN.match(name):
                raise ValueError(f"{name!r} is not a namespace name or pattern; {POLICY_FORM}")
        rules.append((key, tuple(dict.fromkeys(targets))))
    return NamespacePolicy(tuple(rules))


def _parse_compact(text: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for part in filter(None, (p.strip() for p in text.split(";"))):
        key, sep, rest = part.partition("=")
        key = key.strip()
        targets = [t.strip() for t in rest.split(",") if t.strip()]
        if not sep or not key or not targets:
            raise ValueError(f"{part!r} has no 'WORKPOOL_NS=TARGETS' form; {POLICY_FORM}")
        out.setdefault(key, [])
        out[key] += targets
    return out


@dataclass(frozen=True)
class Refusal:
    """Why a namespace cannot take this WorkPool's Jobs; `message` names the fix."""

    namespace: str
    reason: str
    message: str


@dataclass(frozen=True)
class NamespaceScope:
    """Everything the rule needs about one WorkPool, its operator and what it observed."""

    workpool_namespace: str
    job_namespaces: tuple[str, ...]
    policy: NamespacePolicy = NamespacePolicy()
    watched: tuple[str, ...] = ()
    """The operator's watched namespaces; empty means cluster-wide."""
    forbidden: Mapping[str, str] | None = None
    """Namespace → the permission the operator lacks there (from a 403)."""
    operator_key: OperatorKeyUse | None = None
    """Set when the pool's Jobs would get a copy of the operator-wide credentials."""


def namespace_refusal(target: str, scope: NamespaceScope) -> Refusal | None:
    """THE rule: None when Jobs may go to `target`, else the first reason they may not.

    `target` is a namespace, or ``'*'`` for a ``jobNamespaces: ['*']`` entry.
    """
    listed = scope.job_namespaces
    if target != ALL and ALL not in listed and target not in listed:
        return Refusal(
            target,
            REASON_NOT_LISTED,
            f"namespace {target!r} is not in the WorkPool's spec.jobNamespaces "
            f"{list(listed)}; add it there (the cluster admin's policy must allow it too)",
        )
    if not scope.policy.permits(scope.workpool_namespace, target):
        allowed = scope.policy.describe(scope.workpool_namespace)
        what = "any namespace ('*')" if target == ALL else f"namespace {target!r}"
        return Refusal(
            target,
            REASON_NOT_PERMITTED,
            f"{what} is not allowed by the operator's job namespace policy for WorkPools in "
            f"namespace {scope.workpool_namespace!r} (allowed: {allowed}); a cluster admin "
            f"can allow it with {POLICY_SETTING} / chart value {POLICY_CHART_VALUE}",
        )
    if scope.watched and (target == ALL or target not in scope.watched):
        what = "'*' includes namespaces" if target == ALL else f"namespace {target!r} is one"
        return Refusal(
            target,
            REASON_NOT_WATCHED,
            f"{what} the operator does not watch (it watches {', '.join(scope.watched)}), so "
            f"it would never see those Jobs; add {target!r} to {WATCH_SETTING} / chart value "
            f"{WATCH_CHART_VALUE}",
        )
    forbidden = scope.forbidden or {}
    if target in forbidden:
        return Refusal(target, REASON_FORBIDDEN, forbidden[target])
    key_refusal = operator_key_refusal(scope.operator_key, target)
    if key_refusal is not None:
        return Refusal(target, REASON_OPERATOR_KEY, key_refusal)
    return None


def forbidden_message(verb: str, resource: str, namespace: str | None) -> str:
    """What a 403 on the operator's own listing means, and the fix."""
    where = f"in namespace {namespace!r}" if namespace else "cluster-wide"
    return (
        f"the operator cannot {verb} {resource} {where}: grant its ServiceAccount a Role "
        f"there (chart: add the namespace to {WATCH_CHART_VALUE} with rbac.mode=namespaced, "
        "or use rbac.mode=cluster)"
    )


@dataclass(frozen=True)
class NamespaceReport:
    """The JobNamespaces condition: True when every configured namespace is usable."""

    ok: bool
    reason: str
    message: str
    blocking: bool
    """True when no configured namespace is usable: every run would fail (Ready=False).
    A refused template default alone is not blocking: runs naming a namespace still work."""
    refusals: tuple[Refusal, ...] = ()


def namespace_report(scope: NamespaceScope, template_namespace: str | None) -> NamespaceReport:
    """Check every jobNamespaces entry and the template's default namespace (reconcile time)."""
    refusals: list[Refusal] = []
    for entry in scope.job_namespaces:
        refusal = namespace_refusal(entry, scope)
        if refusal is not None:
            refusals.append(refusal)
    # '*' always leaves the WorkPool's own namespace usable (if watched), so only a list of
    # concrete namespaces that are all refused means that no run can be placed.
    blocking = ALL not in scope.job_namespaces and len(refusals) == len(scope.job_namespaces) > 0
    # A pool in a namespace that may not receive the operator's key cannot place any run.
    blocking = blocking or (
        operator_key_refusal(scope.operator_key, scope.workpool_namespace) is not None
    )
    if template_namespace is not None:
        refusal = namespace_refusal(template_namespace, scope)
        if refusal is not None:
            refusals.insert(
                0,
                Refusal(
                    template_namespace,
                    refusal.reason,
                    f"the base job template sends runs without a 'namespace' job variable to "
                    f"namespace {template_namespace!r}, but {refusal.message}; or set the "
                    f"template's variables.properties.namespace.default to "
                    f"{scope.workpool_namespace!r}",
                ),
            )
    if not refusals:
        usable = [n for n in scope.job_namespaces if n != ALL] or [ALL]
        return NamespaceReport(
            True, REASON_ALLOWED, f"Jobs may be created in: {', '.join(usable)}.", False
        )
    return NamespaceReport(
        False,
        refusals[0].reason,
        "; ".join(r.message for r in refusals),
        blocking,
        tuple(refusals),
    )


def usable_namespaces(scope: NamespaceScope, candidates: Collection[str]) -> list[str]:
    """The candidates the rule accepts, in order (e.g. the namespaces worth listing)."""
    return [n for n in candidates if namespace_refusal(n, scope) is None]

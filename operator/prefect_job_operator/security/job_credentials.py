"""Which Jobs may receive the operator-wide Prefect credentials (issue #15).

The operator-wide credentials (``PJO_API_KEY`` / ``PJO_API_AUTH_STRING``) reach a Job's
namespace in one way only: ``worker.createSecretForApiKey`` (upstream's
``create_secret_for_api_key``) copies them into a per-Job Secret there. Whoever may read
Secrets in that namespace, create pods there, or write the WorkPool's base job template
(its pods run what the author says) can read that copy. So the copy is made only where the
cluster admin allowed it: both the WorkPool's namespace and the Job's namespace must match
``PJO_OPERATOR_KEY_NAMESPACES`` (chart ``security.operatorKeyNamespaces``).

Not covered here because they never copy the operator's key: a WorkPool's own
``api.apiKeySecretRef`` (its Jobs reference that Secret), ``prefect.jobApiKeySecret`` (Jobs
reference a Secret the admin placed in their namespace), and plain env (credentials are
never plain values in a Job).

Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Final

SETTING: Final = "PJO_OPERATOR_KEY_NAMESPACES"
CHART_VALUE: Final = "security.operatorKeyNamespaces"
REASON_NOT_ALLOWED: Final = "OperatorKeyNotAllowed"
ALL: Final = "*"

# A namespace name (RFC 1123 label) in which '*' may stand for any characters.
NAMESPACE_PATTERN: Final = re.compile(r"^[a-z0-9*]([-a-z0-9*]{0,61}[a-z0-9*])?$")
FORM: Final = (
    "expected comma-separated namespace names or patterns ('*' matches any characters), "
    "e.g. 'prefect-job-operator,team-*'"
)


def parse_namespaces(text: str) -> tuple[str, ...]:
    """Parse ``PJO_OPERATOR_KEY_NAMESPACES``; '' means no namespace.

    Raises:
        ValueError: a one-line message naming the bad entry and the form.
    """
    out: list[str] = []
    for raw in text.split(","):
        name = raw.strip()
        if not name:
            continue
        if not NAMESPACE_PATTERN.match(name):
            raise ValueError(f"{name!r} is not a namespace name or pattern; {FORM}")
        out.append(name)
    return tuple(dict.fromkeys(out))


def _allowed(namespace: str, patterns: tuple[str, ...]) -> bool:
    if namespace == ALL:  # a `jobNamespaces: ['*']` entry: only a '*' pattern covers it
        return ALL in patterns
    return any(fnmatchcase(namespace, p) for p in patterns)


@dataclass(frozen=True)
class OperatorKeyUse:
    """A WorkPool whose Jobs would get a copy of the operator-wide credentials."""

    workpool_namespace: str
    allowed: tuple[str, ...]
    """The admin's ``PJO_OPERATOR_KEY_NAMESPACES`` patterns."""


def operator_key_refusal(use: OperatorKeyUse | None, job_namespace: str) -> str | None:
    """THE rule: None when a Job in `job_namespace` may get the copy (or none is made),
    else the message (naming the fix) why it may not.

    `use` is None when the pool copies no operator-wide credential into its Jobs (it has
    its own ``apiKeySecretRef``/``authStringSecretRef``, an API URL of its own, no
    ``createSecretForApiKey``, or the operator has no credentials).
    """
    if use is None:
        return None
    refused = [
        ns for ns in dict.fromkeys((use.workpool_namespace, job_namespace))
        if not _allowed(ns, use.allowed)
    ]  # fmt: skip
    if not refused:
        return None
    which = " and ".join(repr(ns) for ns in refused)
    allowed = ", ".join(use.allowed) or "none"
    return (
        f"worker.createSecretForApiKey would copy the operator-wide Prefect API key into a "
        f"Secret of namespace {job_namespace!r} for a WorkPool in namespace "
        f"{use.workpool_namespace!r}, but namespace {which} is not allowed to receive it "
        f"(allowed: {allowed}); give the WorkPool its own spec.api.apiKeySecretRef, or a "
        f"cluster admin can allow the namespace with {SETTING} / chart value {CHART_VALUE}"
    )


def operator_key_use(
    *,
    workpool_namespace: str,
    create_secret_for_api_key: bool,
    copied: Mapping[str, str],
    operator_wide: bool,
    allowed: tuple[str, ...],
) -> OperatorKeyUse | None:
    """Whether this pool's per-Job credential Secrets would hold the operator-wide ones.

    `copied` are the credentials ``createSecretForApiKey`` would copy; `operator_wide` says
    they are the operator's (not the pool's own).
    """
    if not (create_secret_for_api_key and copied and operator_wide):
        return None
    return OperatorKeyUse(workpool_namespace, allowed)

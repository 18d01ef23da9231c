"""The WorkPool admission review: the pure checks of `security.access`, asked of the API
server through the kube adapter, one SubjectAccessReview per check, concurrently."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from typing import Any, Protocol

from prefect_job_operator.security.access import (
    AccessCheck,
    refusal,
    required_access,
    review_body,
    spec_changed,
)


class Reviewer(Protocol):
    """The one Kubernetes call the review makes (`kube.client.Kube` implements it)."""

    async def subject_access_review(self, body: Mapping[str, Any]) -> bool: ...


class ReviewFailed(Exception):
    """A SubjectAccessReview could not be made; the WorkPool is refused (fail closed)."""


async def review_workpool(
    kube: Reviewer,
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None,
    userinfo: Mapping[str, Any],
) -> str | None:
    """None when the user holds every permission the WorkPool uses, else the refusal message.

    Raises:
        ReviewFailed: the API server did not answer a review.
    """
    if not spec_changed(old, new):
        return None
    checks = required_access(new)

    async def allowed(check: AccessCheck) -> bool:
        try:
            return await kube.subject_access_review(review_body(check, userinfo))
        except Exception as exc:
            raise ReviewFailed(f"could not check {check.describe()}: {exc}") from exc

    results = await asyncio.gather(*(allowed(check) for check in checks))
    return refusal(userinfo, [check for check, ok in zip(checks, results, strict=True) if not ok])

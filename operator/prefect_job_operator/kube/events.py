"""Kubernetes Events on WorkPools, deduplicated so a flapping condition is not a flood."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from prefect_job_operator.kube.client import Kube, KubeError

log = logging.getLogger(__name__)


class EventSink:
    """Posts core/v1 Events; the same (object, reason, message) at most once a minute."""

    def __init__(self, kube: Kube, component: str, dedup_seconds: float = 60.0) -> None:
        self.kube = kube
        self.component = component
        self.dedup_seconds = dedup_seconds
        self._recent: dict[tuple[str, str, str], float] = {}

    async def post(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        uid = str((involved.get("metadata") or {}).get("uid"))
        key = (uid, reason, message)
        now = time.monotonic()
        if now - self._recent.get(key, -1e9) < self.dedup_seconds:
            return
        self._recent[key] = now
        if len(self._recent) > 1000:
            self._recent = {k: v for k, v in self._recent.items() if now - v < self.dedup_seconds}
        try:
            await self.kube.post_event(
                involved,
                type_=type_,
                reason=reason,
                message=message,
                component=self.component,
                now=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
        except KubeError as exc:
            log.warning("Posting Event %s on %s failed: %s", reason, uid, exc)

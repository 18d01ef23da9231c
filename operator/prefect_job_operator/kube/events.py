"""Kubernetes Events on WorkPools, aggregated the way client-go's EventRecorder does.

The bodies are built by the pure ``rendering.operator_objects``; this module only sends them.

Repeats of one (object, type, reason) are ONE Event object whose ``count`` and
``lastTimestamp`` grow (and whose message is the latest), so ``kubectl describe wp`` shows
``(x5 over 3m)`` instead of five lines, and a crash loop costs one PATCH per crash instead of
one new object. The Event name is deterministic (involved object name + a hash of the key),
so a restarted operator continues the count of the Event it finds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from prefect_job_operator import clock
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.kube.port import KubePort
from prefect_job_operator.rendering.operator_objects import event_body, event_name, repeat_patch

log = logging.getLogger(__name__)

MAX_TRACKED = 1000


class EventSink:
    """Posts core/v1 Events on WorkPools, one aggregated Event per (object, type, reason)."""

    def __init__(self, kube: KubePort, component: str) -> None:
        self.kube = kube
        self.component = component
        self._counts: dict[tuple[str, str], int] = {}
        """(namespace, event name) -> the count last written."""
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}

    async def post(
        self, involved: Mapping[str, Any], type_: str, reason: str, message: str
    ) -> None:
        """Record one occurrence; never raises (an Event is worth less than the caller)."""
        meta = involved.get("metadata") or {}
        ns = str(meta.get("namespace") or "default")
        name = event_name(involved, type_, reason)
        key = (ns, name)
        if len(self._locks) > MAX_TRACKED:
            self._forget_idle()
        lock = self._locks.setdefault(key, asyncio.Lock())
        async with lock:
            try:
                await self._record(involved, key, type_, reason, message)
            except KubeError as exc:
                log.warning("Posting Event %s on %s failed: %s", reason, meta.get("name"), exc)

    async def _record(
        self,
        involved: Mapping[str, Any],
        key: tuple[str, str],
        type_: str,
        reason: str,
        message: str,
    ) -> None:
        ns, name = key
        now = clock.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        count = self._counts.get(key)
        if count is None:  # first time in this process: maybe a predecessor left one
            existing = await self.kube.read_event(ns, name)
            count = int(existing.get("count") or 1) if existing is not None else None
        if count is not None:
            try:
                await self.kube.patch_event(ns, name, repeat_patch(count + 1, message, now))
                self._counts[key] = count + 1
                return
            except KubeError as exc:
                if exc.status != 404:  # 404: the Event expired (the API server's TTL)
                    raise
        body = event_body(
            involved,
            name=name,
            type_=type_,
            reason=reason,
            message=message,
            component=self.component,
            now=now,
        )
        try:
            await self.kube.create_event(ns, body)
            self._counts[key] = 1
        except KubeError as exc:
            if exc.status != 409:
                raise
            self._counts.pop(key, None)  # created concurrently elsewhere: count on top of it
            existing = await self.kube.read_event(ns, name)
            count = int((existing or {}).get("count") or 1)
            await self.kube.patch_event(ns, name, repeat_patch(count + 1, message, now))
            self._counts[key] = count + 1

    def _forget_idle(self) -> None:
        for key, lock in list(self._locks.items()):
            if not lock.locked():
                del self._locks[key]
                self._counts.pop(key, None)

"""Prefect worker events and flow-run log lines, batched.

Upstream sends one WebSocket event and one log POST per line; here they are buffered and
flushed in one ``POST /events`` and one ``POST /logs/`` per second, because the Prefect
server's CPU is the bottleneck of dispatch.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Mapping
from typing import Any

from slugify import slugify

from prefect_job_operator import __version__, clock
from prefect_job_operator.prefect_api.errors import PrefectAPIError
from prefect_job_operator.prefect_api.models import LogRecord
from prefect_job_operator.prefect_api.port import PrefectPort
from prefect_job_operator.rendering.contracts import DEFAULT_PREFECT_VERSION
from prefect_job_operator.tracking.pod_events import PodEventLog

log = logging.getLogger(__name__)

MAX_BATCH = 200


class Telemetry:
    """Buffers for one pool; ``flush_forever`` runs in the pool's task group."""

    def __init__(self, client: PrefectPort, *, worker_name: str, pool: Mapping[str, Any]):
        self.client = client
        self.worker_name = worker_name
        self.pool = pool
        self.events: list[dict[str, Any]] = []
        self.logs: list[LogRecord] = []
        self.enabled = True
        self.pod_events_enabled = True
        self.pod_events = PodEventLog()
        self.prefect_version: str | None = None
        """The server's version (``GET /admin/version``), asked before the first flush."""
        self._version_asked = False

    def worker_resource(self) -> dict[str, str]:
        slug = slugify(self.worker_name) or "worker"
        return {
            "prefect.resource.id": f"prefect.worker.kubernetes.{slug}",
            "prefect.resource.name": self.worker_name,
            "prefect.version": self.prefect_version or DEFAULT_PREFECT_VERSION,
            "prefect.worker-type": "kubernetes",
            "prefect-job-operator.version": __version__,
        }

    def pool_related(self) -> dict[str, str]:
        return {
            "prefect.resource.id": f"prefect.work-pool.{self.pool.get('id')}",
            "prefect.resource.role": "work-pool",
            "prefect.resource.name": str(self.pool.get("name")),
            "prefect.work-pool.type": str(self.pool.get("type", "kubernetes")),
        }

    def event(
        self,
        name: str,
        *,
        related: list[dict[str, str]] | None = None,
        payload: dict[str, Any] | None = None,
        follows: str | None = None,
    ) -> str:
        event_id = str(uuid.uuid4())
        if self.enabled:
            self.events.append(
                {
                    "id": event_id,
                    "occurred": clock.now().isoformat(),
                    "event": name,
                    "resource": self.worker_resource(),
                    "related": [*(related or []), self.pool_related()],
                    "payload": payload or {},
                    **({"follows": follows} if follows else {}),
                }
            )
        return event_id

    def pod_event(self, event_type: str | None, pod: Mapping[str, Any]) -> None:
        """Queue the observer's `prefect.kubernetes.pod.<phase>` event for a pod watch event."""
        if not self.pod_events_enabled or len(self.events) >= 10 * MAX_BATCH:
            return
        event = self.pod_events.next_event(event_type, pod)
        if event is not None:
            self.events.append(event)

    def run_related(
        self,
        flow_run: Mapping[str, Any],
        deployment: Mapping[str, Any] | None,
        flow: Mapping[str, Any] | None,
        pid: str | None = None,
        status_code: int | None = None,
    ) -> list[dict[str, str]]:
        run_res = {
            "prefect.resource.id": f"prefect.flow-run.{flow_run.get('id')}",
            "prefect.resource.role": "flow-run",
            "prefect.resource.name": str(flow_run.get("name", "")),
        }
        if pid is not None:
            run_res["prefect.infrastructure.identifier"] = pid
        if status_code is not None:
            run_res["prefect.infrastructure.status-code"] = str(status_code)
        related = [run_res]
        if deployment:
            related.append(
                {
                    "prefect.resource.id": f"prefect.deployment.{deployment.get('id')}",
                    "prefect.resource.role": "deployment",
                    "prefect.resource.name": str(deployment.get("name", "")),
                }
            )
        if flow:
            related.append(
                {
                    "prefect.resource.id": f"prefect.flow.{flow.get('id')}",
                    "prefect.resource.role": "flow",
                    "prefect.resource.name": str(flow.get("name", "")),
                }
            )
        for tag in flow_run.get("tags") or []:
            related.append(
                {"prefect.resource.id": f"prefect.tag.{tag}", "prefect.resource.role": "tag"}
            )
        return related

    def run_log(self, flow_run_id: str, level: int, message: str) -> None:
        if len(self.logs) >= 10 * MAX_BATCH:  # never let a dead API grow memory
            return
        self.logs.append(
            LogRecord(
                name="prefect.flow_runs.worker",
                level=level,
                message=message,
                timestamp=clock.now(),
                flow_run_id=uuid.UUID(flow_run_id),
            )
        )

    async def learn_prefect_version(self) -> None:
        """Ask the server its version, once per term: until it answers (or if it fails),
        events name the version the operator emulates."""
        if self._version_asked:
            return
        self._version_asked = True
        try:
            self.prefect_version = await self.client.server_version()
        except PrefectAPIError as exc:
            log.warning("Reading the Prefect server's version failed: %s", exc)
            return
        self.pod_events.prefect_version = self.prefect_version

    async def flush(self) -> None:
        await self.learn_prefect_version()
        events, self.events = self.events[:MAX_BATCH], self.events[MAX_BATCH:]
        logs, self.logs = self.logs[:MAX_BATCH], self.logs[MAX_BATCH:]
        try:
            if events:
                await self.client.emit_events(events)
            if logs:
                await self.client.create_logs(logs)
        except PrefectAPIError as exc:
            log.warning(
                "Sending %d events and %d logs to Prefect failed: %s", len(events), len(logs), exc
            )

    async def flush_forever(self, interval: float = 1.0) -> None:
        await self.learn_prefect_version()
        while True:
            await asyncio.sleep(interval)
            await self.flush()

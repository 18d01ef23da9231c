"""The Prefect port: the calls a pool makes, as a Protocol.

``PrefectClient`` is the adapter; the unit tests' fake implements the same Protocol, so a
signature that drifts is a mypy error, not a test that passes against the wrong shape.
A pool's ports hold this type, so its lifecycle calls (``aclose``, ``delete_work_pool``) are
here too.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from prefect_job_operator.prefect_api.models import (
    FlowRun,
    LogRecord,
    OrchestrationResult,
    Worker,
    WorkPool,
)

if TYPE_CHECKING:
    from prefect_job_operator.prefect_api.client import Unset

Json = dict[str, Any]


class PrefectPort(Protocol):
    """What dispatch, tracking and writeback ask of the Prefect API."""

    async def aclose(self) -> None: ...

    async def read_work_pool(self, name: str) -> WorkPool: ...

    async def delete_work_pool(self, name: str) -> None: ...

    async def create_work_pool(
        self,
        name: str,
        *,
        type: str = ...,
        base_job_template: dict[str, Any] | None = ...,
        description: str | None = ...,
        concurrency_limit: int | None = ...,
        is_paused: bool | None = ...,
    ) -> WorkPool: ...

    async def update_work_pool(
        self,
        name: str,
        *,
        base_job_template: dict[str, Any] | Unset = ...,
        description: str | Unset | None = ...,
        concurrency_limit: int | Unset | None = ...,
        is_paused: bool | Unset = ...,
    ) -> None: ...

    async def heartbeat(
        self, pool: str, worker_name: str, heartbeat_interval_seconds: int | float
    ) -> None: ...

    async def read_workers(self, pool: str) -> list[Worker]: ...

    async def get_scheduled_flow_runs(
        self,
        pool: str,
        *,
        work_queue_names: Sequence[str] = ...,
        scheduled_before: datetime | None,
        limit: int | None = ...,
    ) -> list[FlowRun]: ...

    async def read_deployment(self, id: uuid.UUID | str) -> Json: ...

    async def read_flow(self, id: uuid.UUID | str) -> Json: ...

    async def read_flow_run(self, id: uuid.UUID | str) -> FlowRun: ...

    async def read_flow_runs(
        self,
        *,
        pool_name: str,
        state_types: Sequence[str] | None = ...,
        state_names: Sequence[str] | None = ...,
        ids: Sequence[uuid.UUID | str] | None = ...,
        limit: int = ...,
        offset: int = ...,
    ) -> list[FlowRun]: ...

    async def set_flow_run_state(
        self,
        flow_run_id: uuid.UUID | str,
        *,
        type: str,
        name: str | None = ...,
        message: str | None = ...,
        force: bool = ...,
        state_details_extra: dict[str, Any] | None = ...,
    ) -> OrchestrationResult: ...

    async def set_infrastructure_pid(self, flow_run_id: uuid.UUID | str, pid: str) -> None: ...

    async def update_flow_run_labels(
        self, flow_run_id: uuid.UUID | str, labels: Mapping[str, str]
    ) -> None: ...

    async def create_logs(self, logs: Sequence[LogRecord]) -> None: ...

    async def emit_events(self, events: Sequence[Mapping[str, Any]]) -> None: ...

    async def read_block_document_by_name(self, block_type_slug: str, name: str) -> Json: ...

    async def read_block_document(self, id: uuid.UUID | str) -> Json: ...

    async def read_variable_by_name(self, name: str) -> Any | None: ...

    async def write_variable(self, name: str, value: Any, tags: Sequence[str] = ...) -> None: ...

    async def server_version(self) -> str: ...

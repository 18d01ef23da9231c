"""Payloads of the Prefect 3 REST API, as the operator reads and writes them.

Every model ignores unknown fields and tolerates missing optional ones, so a newer
server that adds fields does not break the operator. ``FlowRun.raw`` keeps the full
JSON of a flow run because the Job renderer needs fields we do not model.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, model_validator


class StateType(StrEnum):
    """The closed set of Prefect state types."""

    SCHEDULED = "SCHEDULED"
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    CRASHED = "CRASHED"
    PAUSED = "PAUSED"
    CANCELLING = "CANCELLING"


TERMINAL_STATE_TYPES = frozenset(
    {StateType.COMPLETED, StateType.FAILED, StateType.CANCELLED, StateType.CRASHED}
)


def default_state_name(state_type: str) -> str:
    """The name the server gives a state proposed without one (``CANCELLING`` → ``Cancelling``)."""
    return " ".join(part.capitalize() for part in state_type.split("_"))


class _Payload(BaseModel):
    model_config = ConfigDict(extra="ignore", populate_by_name=True)


class StateDetails(_Payload):
    flow_run_id: UUID | None = None
    scheduled_time: datetime | None = None
    transition_id: UUID | None = None
    deployment_concurrency_lease_id: UUID | None = None
    pause_timeout: datetime | None = None
    pause_reschedule: bool = False
    pause_key: str | None = None


class State(_Payload):
    id: UUID | None = None
    type: StateType
    name: str | None = None
    timestamp: datetime | None = None
    message: str | None = None
    state_details: StateDetails = Field(default_factory=StateDetails)

    @property
    def is_terminal(self) -> bool:
        return self.type in TERMINAL_STATE_TYPES


class FlowRun(_Payload):
    """A flow run; ``raw`` is the untouched JSON object it was parsed from."""

    id: UUID
    name: str = ""
    flow_id: UUID | None = None
    deployment_id: UUID | None = None
    work_queue_id: UUID | None = None
    work_queue_name: str | None = None
    work_pool_id: UUID | None = None
    work_pool_name: str | None = None
    state: State | None = None
    state_type: StateType | None = None
    state_name: str | None = None
    infrastructure_pid: str | None = None
    job_variables: dict[str, Any] = Field(default_factory=dict)
    labels: dict[str, Any] = Field(default_factory=dict)
    tags: list[str] = Field(default_factory=list)
    parameters: dict[str, Any] = Field(default_factory=dict)
    run_count: int = 0
    start_time: datetime | None = None
    end_time: datetime | None = None
    expected_start_time: datetime | None = None
    next_scheduled_start_time: datetime | None = None
    raw: dict[str, Any] = Field(default_factory=dict, repr=False, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _keep_raw(cls, data: Any) -> Any:
        if isinstance(data, dict) and "raw" not in data:
            return {**data, "raw": dict(data)}
        return data

    @model_validator(mode="before")
    @classmethod
    def _none_collections_as_empty(cls, data: Any) -> Any:
        if isinstance(data, dict):
            empty: dict[str, Any] = {
                "job_variables": {},
                "labels": {},
                "tags": [],
                "parameters": {},
            }
            fixes = {k: v for k, v in empty.items() if k in data and data[k] is None}
            if fixes:
                return {**data, **fixes}
        return data


class WorkPool(_Payload):
    id: UUID
    name: str
    type: str
    base_job_template: dict[str, Any] = Field(default_factory=dict)
    status: str | None = None
    is_paused: bool = False
    concurrency_limit: int | None = None
    description: str | None = None
    default_queue_id: UUID | None = None


class WorkQueue(_Payload):
    id: UUID
    name: str
    description: str | None = None
    is_paused: bool = False
    concurrency_limit: int | None = None
    priority: int | None = None
    work_pool_id: UUID | None = None
    work_pool_name: str | None = None
    status: str | None = None
    last_polled: datetime | None = None


class Worker(_Payload):
    id: UUID | None = None
    name: str
    work_pool_id: UUID | None = None
    last_heartbeat_time: datetime | None = None
    heartbeat_interval_seconds: int | None = None
    status: str | None = None


OrchestrationStatus = Literal["ACCEPT", "REJECT", "ABORT", "WAIT"]


class OrchestrationDetails(_Payload):
    type: str | None = None
    reason: str | None = None
    delay_seconds: int | None = None


class OrchestrationResult(_Payload):
    """The body of ``set_state``; the outcome is ``status``, never the HTTP code."""

    status: OrchestrationStatus
    state: State | None = None
    details: OrchestrationDetails = Field(default_factory=OrchestrationDetails)
    replayed: bool = Field(
        False,
        description="True when a transport retry found this very proposal already applied "
        "(the server said REJECT 'already made this state transition').",
    )

    @property
    def accepted(self) -> bool:
        return self.status == "ACCEPT"

    @property
    def reason(self) -> str | None:
        return self.details.reason


class LogRecord(_Payload):
    """One line for ``POST /logs/``; ``level`` is a :mod:`logging` level number."""

    name: str
    level: int
    message: str
    timestamp: datetime
    flow_run_id: UUID | None = None
    task_run_id: UUID | None = None

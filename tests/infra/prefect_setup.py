"""Plain-httpx helpers that create Prefect fixtures (flows, deployments, runs, pools).

Deliberately independent of the operator's PrefectClient, so a bug there cannot hide
behind the setup. SQLite answers concurrent creations with 503 (and idle keep-alive
connections get closed after 5 s), so every call here retries those.

    async with setup_client(server.api_url) as http:
        flow = await create_flow(http, "etl")
        dep = await create_deployment(http, flow_id=flow["id"], name="d", work_pool_name=pool)
        run = await create_flow_run(http, dep["id"], job_variables={"env": {"A": "1"}})
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

RETRYABLE = {408, 429, 502, 503}


def setup_client(api_url: str, **kwargs: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=api_url.rstrip("/"), timeout=30.0, **kwargs)


def unique(prefix: str) -> str:
    """A collision-free name, so tests sharing the session server never meet."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


async def call(
    http: httpx.AsyncClient,
    method: str,
    path: str,
    body: Any = None,
    *,
    expect: tuple[int, ...] = (200, 201, 204),
    attempts: int = 40,  # SQLite answers 503 under write contention; keep trying
) -> Any:
    """One API call, retrying 503/transport errors; raises AssertionError on other codes."""
    delay = 0.05
    for attempt in range(attempts):
        try:
            response = await http.request(method, path, json=body)
        except httpx.TransportError:
            if attempt == attempts - 1:
                raise
        else:
            if response.status_code not in RETRYABLE:
                if response.status_code not in expect:
                    raise AssertionError(
                        f"{method} {path} -> {response.status_code}: {response.text[:2000]}"
                    )
                return response.json() if response.content else None
            if attempt == attempts - 1:
                raise AssertionError(f"{method} {path} still {response.status_code}")
        await asyncio.sleep(delay)
        delay = min(delay * 2, 3.0)
    raise AssertionError("unreachable")


def iso_in(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat()


async def create_work_pool(
    http: httpx.AsyncClient,
    name: str,
    *,
    base_job_template: dict[str, Any] | None = None,
    type: str = "kubernetes",
    concurrency_limit: int | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name, "type": type}
    if base_job_template is not None:
        body["base_job_template"] = base_job_template
    if concurrency_limit is not None:
        body["concurrency_limit"] = concurrency_limit
    result: dict[str, Any] = await call(http, "POST", "/work_pools/", body)
    return result


async def create_work_queue(
    http: httpx.AsyncClient, pool: str, name: str, *, priority: int | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"name": name}
    if priority is not None:
        body["priority"] = priority
    result: dict[str, Any] = await call(http, "POST", f"/work_pools/{pool}/queues", body)
    return result


async def create_flow(http: httpx.AsyncClient, name: str) -> dict[str, Any]:
    """``POST /flows/`` is idempotent: an existing flow of that name is returned."""
    result: dict[str, Any] = await call(http, "POST", "/flows/", {"name": name})
    return result


# The flows tools/images/flow-run bakes into the flow-run image, and the pull step that runs them.
BAKED_FLOWS_DIR = "/opt/prefect/flows"
BAKED_FLOWS_PULL_STEPS: list[dict[str, Any]] = [
    {"prefect.deployments.steps.set_working_directory": {"directory": BAKED_FLOWS_DIR}}
]


async def create_deployment(
    http: httpx.AsyncClient,
    *,
    flow_id: str,
    name: str,
    work_pool_name: str | None,
    work_queue_name: str | None = None,
    job_variables: dict[str, Any] | None = None,
    concurrency_limit: int | None = None,
    collision_strategy: str | None = None,
    parameters: dict[str, Any] | None = None,
    tags: list[str] | None = None,
    entrypoint: str = "flows/etl.py:etl",
    path: str | None = None,
    pull_steps: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "name": name,
        "flow_id": flow_id,
        "entrypoint": entrypoint,
        "job_variables": job_variables or {},
        "parameters": parameters or {},
        "tags": tags or [],
    }
    if work_pool_name is not None:
        body["work_pool_name"] = work_pool_name
    if path is not None:
        body["path"] = path
    if pull_steps is not None:
        body["pull_steps"] = pull_steps
    if work_queue_name is not None:
        body["work_queue_name"] = work_queue_name
    if concurrency_limit is not None:
        body["concurrency_limit"] = concurrency_limit
    if collision_strategy is not None:
        body["concurrency_options"] = {"collision_strategy": collision_strategy}
    result: dict[str, Any] = await call(http, "POST", "/deployments/", body)
    return result


async def create_flow_run(
    http: httpx.AsyncClient,
    deployment_id: str,
    *,
    job_variables: dict[str, Any] | None = None,
    parameters: dict[str, Any] | None = None,
    scheduled_in_seconds: float | None = None,
    work_queue_name: str | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """A Scheduled run of the deployment (due now unless ``scheduled_in_seconds``)."""
    state: dict[str, Any] = {"type": "SCHEDULED", "name": "Scheduled"}
    if scheduled_in_seconds is not None:
        state["state_details"] = {"scheduled_time": iso_in(scheduled_in_seconds)}
    body: dict[str, Any] = {"state": state}
    if job_variables is not None:
        body["job_variables"] = job_variables
    if parameters is not None:
        body["parameters"] = parameters
    if work_queue_name is not None:
        body["work_queue_name"] = work_queue_name
    if tags is not None:
        body["tags"] = tags
    if name is not None:
        body["name"] = name
    result: dict[str, Any] = await call(
        http, "POST", f"/deployments/{deployment_id}/create_flow_run", body
    )
    return result


async def read_flow_run(http: httpx.AsyncClient, flow_run_id: str) -> dict[str, Any]:
    result: dict[str, Any] = await call(http, "GET", f"/flow_runs/{flow_run_id}")
    return result


async def set_state(
    http: httpx.AsyncClient,
    flow_run_id: str,
    type: str,
    name: str | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """A raw state proposal (e.g. to move a run to Running in a test)."""
    body = {
        "state": {
            "type": type,
            "name": name,
            "state_details": {"transition_id": str(uuid.uuid4())},
        },
        "force": force,
    }
    result: dict[str, Any] = await call(http, "POST", f"/flow_runs/{flow_run_id}/set_state", body)
    return result

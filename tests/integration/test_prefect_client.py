"""PrefectClient against a real Prefect 3.9.1 server (SQLite), protocol §3 to §7.

Every test works in its own uniquely named pool, so tests share the session server
without seeing each other's runs.
"""

from __future__ import annotations

import asyncio
import collections
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.prefect_api.errors import (
    DeploymentNotFound,
    FlowRunNotFound,
    ReservedPoolName,
    ValidationFailed,
    WorkPoolAlreadyExists,
    WorkPoolNotFound,
    WorkQueueNotFound,
)
from prefect_job_operator.prefect_api.models import LogRecord
from tests.infra.prefect_server import PrefectServer
from tests.infra.prefect_setup import (
    call,
    create_deployment,
    create_flow,
    create_flow_run,
    create_work_pool,
    create_work_queue,
    read_flow_run,
    set_state,
    setup_client,
    unique,
)

pytestmark = [pytest.mark.prefect, pytest.mark.timeout(300)]

TEMPLATE: dict[str, Any] = {
    "job_configuration": {"image": "{{ image }}", "namespace": "{{ namespace }}"},
    "variables": {
        "type": "object",
        "properties": {
            "image": {"type": "string", "default": "prefecthq/prefect:3-latest"},
            "namespace": {"type": "string", "default": "default"},
        },
    },
}


@asynccontextmanager
async def prefect(
    server: PrefectServer, **kwargs: Any
) -> AsyncIterator[tuple[PrefectClient, httpx.AsyncClient]]:
    """The client under test, plus a plain httpx client for setup and verification."""
    async with (
        PrefectClient(server.api_url, **kwargs) as client,
        setup_client(server.api_url) as http,
    ):
        yield client, http


async def pool_with_deployment(
    http: httpx.AsyncClient, **deployment: Any
) -> tuple[str, dict[str, Any]]:
    pool = unique("pool")
    await create_work_pool(http, pool, base_job_template=TEMPLATE)
    flow = await create_flow(http, unique("flow"))
    dep = await create_deployment(
        http, flow_id=flow["id"], name=unique("dep"), work_pool_name=pool, **deployment
    )
    return pool, dep


async def state_history(http: httpx.AsyncClient, flow_run_id: str) -> list[tuple[str, str]]:
    states = await call(http, "GET", f"/flow_run_states/?flow_run_id={flow_run_id}")
    ordered = sorted(states, key=lambda s: s["timestamp"])
    return [(s["type"], s["name"]) for s in ordered]


# ---------------------------------------------------------------------- work pools


async def test_create_pool_with_template_then_update_it(prefect_server: PrefectServer) -> None:
    async with prefect(prefect_server) as (client, _http):
        name = unique("pool")
        created = await client.create_work_pool(
            name, base_job_template=TEMPLATE, description="made by a test"
        )
        assert created.name == name and created.type == "kubernetes"
        assert created.status == "NOT_READY"
        assert created.default_queue_id is not None

        pool = await client.read_work_pool(name)
        assert pool.base_job_template == TEMPLATE
        assert pool.description == "made by a test"
        assert pool.concurrency_limit is None

        updated = {**TEMPLATE, "job_configuration": {**TEMPLATE["job_configuration"], "x": "1"}}
        await client.update_work_pool(name, base_job_template=updated, concurrency_limit=3)
        pool = await client.read_work_pool(name)
        assert pool.base_job_template["job_configuration"]["x"] == "1"
        assert pool.concurrency_limit == 3
        assert pool.description == "made by a test", "fields not given must stay untouched"

        await client.update_work_pool(name, concurrency_limit=None, is_paused=True)
        pool = await client.read_work_pool(name)
        assert pool.concurrency_limit is None and pool.is_paused is True

        queues = await client.read_work_queues(name)
        assert [q.name for q in queues] == ["default"]

        await client.delete_work_pool(name)
        with pytest.raises(WorkPoolNotFound):
            await client.read_work_pool(name)


async def test_concurrent_creates_one_wins_one_gets_already_exists(
    prefect_server: PrefectServer,
) -> None:
    async with prefect(prefect_server) as (client, _http):
        name = unique("race")
        results = await asyncio.gather(
            client.create_work_pool(name), client.create_work_pool(name), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], WorkPoolAlreadyExists)
        assert errors[0].message == "A work pool with this name already exists."


async def test_reserved_pool_name(prefect_server: PrefectServer) -> None:
    async with prefect(prefect_server) as (client, _http):
        with pytest.raises(ReservedPoolName) as caught:
            await client.create_work_pool(unique("prefect-x"))
        assert caught.value.status == 403
        assert caught.value.message == (
            "Work pools starting with 'Prefect' are reserved for internal use."
        )


async def test_bad_template_is_validation_failed_with_server_message(
    prefect_server: PrefectServer,
) -> None:
    async with prefect(prefect_server) as (client, _http):
        name = unique("pool")
        await client.create_work_pool(name)
        bad = {"job_configuration": {"x": "{{ nope }}"}, "variables": {"properties": {}}}
        with pytest.raises(ValidationFailed) as caught:
            await client.update_work_pool(name, base_job_template=bad)
        assert caught.value.status == 422
        assert caught.value.message.startswith("base_job_template: Value error,")
        assert "undeclared variable(s): nope." in caught.value.message


async def test_heartbeat_turns_pool_ready_and_registers_worker(
    prefect_server: PrefectServer,
) -> None:
    async with prefect(prefect_server) as (client, _http):
        name = unique("pool")
        await client.create_work_pool(name, base_job_template=TEMPLATE)
        assert (await client.read_work_pool(name)).status == "NOT_READY"
        await client.heartbeat(name, "operator-replica-a", 30)
        assert (await client.read_work_pool(name)).status == "READY"
        workers = await client.read_workers(name)
        assert [(w.name, w.status, w.heartbeat_interval_seconds) for w in workers] == [
            ("operator-replica-a", "ONLINE", 30)
        ]
        assert workers[0].last_heartbeat_time is not None


async def test_unknown_pool_everywhere(prefect_server: PrefectServer) -> None:
    async with prefect(prefect_server) as (client, _http):
        name = unique("missing")
        expected = f'Work pool "{name}" not found.'
        for call_it in (
            lambda: client.read_work_pool(name),
            lambda: client.heartbeat(name, "w", 30),
            lambda: client.get_scheduled_flow_runs(name, scheduled_before=None),
        ):
            with pytest.raises(WorkPoolNotFound) as caught:
                await call_it()
            assert caught.value.message == expected


# ---------------------------------------------------------------------- poll


async def test_poll_with_queues_and_prefetch(prefect_server: PrefectServer) -> None:
    async with prefect(prefect_server) as (client, http):
        pool, dep = await pool_with_deployment(http)
        await create_work_queue(http, pool, "high", priority=1)
        due = await create_flow_run(http, dep["id"])
        due_high = await create_flow_run(http, dep["id"], work_queue_name="high")
        future = await create_flow_run(http, dep["id"], scheduled_in_seconds=3600)

        soon = datetime.now(UTC) + timedelta(seconds=10)
        runs = await client.get_scheduled_flow_runs(pool, scheduled_before=soon)
        assert {str(r.id) for r in runs} == {due["id"], due_high["id"]}
        by_id = {str(r.id): r for r in runs}
        assert by_id[due_high["id"]].work_queue_name == "high"
        assert by_id[due["id"]].state_type == "SCHEDULED"
        assert by_id[due["id"]].raw["id"] == due["id"]

        later = datetime.now(UTC) + timedelta(hours=2)
        runs = await client.get_scheduled_flow_runs(pool, scheduled_before=later)
        assert future["id"] in {str(r.id) for r in runs}

        runs = await client.get_scheduled_flow_runs(
            pool, work_queue_names=["high"], scheduled_before=soon
        )
        assert [str(r.id) for r in runs] == [due_high["id"]]

        runs = await client.get_scheduled_flow_runs(pool, scheduled_before=soon, limit=1)
        assert len(runs) == 1

        with pytest.raises(WorkQueueNotFound) as caught:
            await client.get_scheduled_flow_runs(
                pool, work_queue_names=["high", "nope"], scheduled_before=soon
            )
        assert f"Work pool queue '{pool}/nope' not found." in caught.value.message

        assert {q.name for q in await client.read_work_queues(pool)} == {"default", "high"}


# ---------------------------------------------------------------------- states


async def test_submission_lifecycle(prefect_server: PrefectServer) -> None:
    """Pending ACCEPT, a second Pending ABORT, Submitting, pid, labels, Running, Crashed."""
    async with prefect(prefect_server) as (client, http):
        pool, dep = await pool_with_deployment(http)
        run = await create_flow_run(http, dep["id"], job_variables={"image": "busybox"})
        run_id = run["id"]

        pending = await client.set_flow_run_state(run_id, type="PENDING")
        assert pending.accepted and pending.status == "ACCEPT"
        assert pending.state is not None and pending.state.type == "PENDING"
        assert pending.state.name == "Pending"
        claim_id = pending.state.id

        second = await client.set_flow_run_state(run_id, type="PENDING")
        assert second.status == "ABORT"
        assert second.reason == (
            "This run is in a PENDING state and cannot transition to a PENDING state."
        )

        submitting = await client.set_flow_run_state(run_id, type="PENDING", name="Submitting")
        assert submitting.accepted
        assert submitting.state is not None and submitting.state.name == "Submitting"

        await client.set_infrastructure_pid(run_id, "prefect:brave-fox-abc")
        labels = {"prefect.worker.name": "op", "prefect.work-pool.name": pool}
        await client.update_flow_run_labels(run_id, labels)

        flow_run = await client.read_flow_run(run_id)
        assert flow_run.infrastructure_pid == "prefect:brave-fox-abc"
        assert flow_run.state_type == "PENDING" and flow_run.state_name == "Submitting"
        assert flow_run.labels["prefect.worker.name"] == "op"
        assert flow_run.labels["prefect.work-pool.name"] == pool
        assert flow_run.labels["prefect.flow.id"] == run["flow_id"], "existing labels kept"
        assert flow_run.job_variables == {"image": "busybox"}
        assert flow_run.work_pool_name == pool
        assert flow_run.deployment_id is not None and str(flow_run.deployment_id) == dep["id"]
        assert claim_id is not None

        running = await client.set_flow_run_state(run_id, type="RUNNING")
        assert running.accepted
        crashed = await client.set_flow_run_state(
            run_id, type="CRASHED", message="Kubernetes job was deleted"
        )
        assert crashed.accepted
        again = await client.set_flow_run_state(run_id, type="CRASHED")
        assert again.status == "ABORT"

        flow_run = await client.read_flow_run(run_id)
        assert flow_run.state is not None
        assert flow_run.state.type == "CRASHED"
        assert flow_run.state.message == "Kubernetes job was deleted"
        assert await state_history(http, run_id) == [
            ("SCHEDULED", "Scheduled"),
            ("PENDING", "Pending"),
            ("PENDING", "Submitting"),
            ("RUNNING", "Running"),
            ("CRASHED", "Crashed"),
        ]


async def test_forced_cancel_of_a_pending_run(prefect_server: PrefectServer) -> None:
    async with (
        prefect(prefect_server) as (client, _http),
        setup_client(prefect_server.api_url) as http,
    ):
        _pool, dep = await pool_with_deployment(http)
        run = await create_flow_run(http, dep["id"])
        assert (await client.set_flow_run_state(run["id"], type="PENDING")).accepted
        cancelled = await client.set_flow_run_state(
            run["id"],
            type="CANCELLED",
            message="Deployment no longer exists, cancelled run.",
            force=True,
        )
        assert cancelled.accepted
        flow_run = await client.read_flow_run(run["id"])
        assert flow_run.state_type == "CANCELLED" and flow_run.state_name == "Cancelled"


async def test_deployment_concurrency_limit_rejects_second_pending(
    prefect_server: PrefectServer,
) -> None:
    async with prefect(prefect_server) as (client, http):
        _pool, dep = await pool_with_deployment(http, concurrency_limit=1)
        first = await create_flow_run(http, dep["id"])
        second = await create_flow_run(http, dep["id"])

        won = await client.set_flow_run_state(first["id"], type="PENDING")
        assert won.accepted
        assert won.state is not None
        assert won.state.state_details.deployment_concurrency_lease_id is not None

        lost = await client.set_flow_run_state(second["id"], type="PENDING")
        assert lost.status == "REJECT"
        assert lost.reason == "Deployment concurrency limit reached."
        assert lost.state is not None
        assert (lost.state.type, lost.state.name) == ("SCHEDULED", "AwaitingConcurrencySlot")
        assert lost.state.state_details.scheduled_time is not None
        flow_run = await client.read_flow_run(second["id"])
        assert flow_run.state_name == "AwaitingConcurrencySlot"


class DropFirstResponse(httpx.AsyncBaseTransport):
    """Delivers the first matching request to the server, then loses its response."""

    def __init__(self, path_suffix: str) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self._suffix = path_suffix
        self.dropped = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        if self.dropped == 0 and request.url.path.endswith(self._suffix):
            await response.aread()
            self.dropped += 1
            raise httpx.ReadError("response lost (test)", request=request)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def test_lost_response_retry_applies_the_proposal_exactly_once(
    prefect_server: PrefectServer,
) -> None:
    transport = DropFirstResponse("/set_state")
    async with prefect(prefect_server, transport=transport, backoff_base=0.01) as (client, http):
        _pool, dep = await pool_with_deployment(http)
        run = await create_flow_run(http, dep["id"])
        result = await client.set_flow_run_state(run["id"], type="PENDING")
        assert transport.dropped == 1
        assert result.accepted and result.replayed
        assert await state_history(http, run["id"]) == [
            ("SCHEDULED", "Scheduled"),
            ("PENDING", "Pending"),
        ]


async def test_burst_of_concurrent_writes_is_absorbed_exactly_once(
    prefect_server: PrefectServer,
) -> None:
    """~30 concurrent writes on SQLite: 503s/ReadErrors are retried, nothing is lost or doubled.

    The labels PATCH is the SQLite-hostile call (``SQLITE_BUSY_SNAPSHOT`` → 503, see
    prefect-ceiling.md §6.1): in this burst single requests needed up to 5 retries, so
    the test allows 10 to stay green on a loaded 2-core box.
    """
    statuses: collections.Counter[tuple[str, int | None]] = collections.Counter()

    def record(method: str, route: str, status: int | None, _seconds: float) -> None:
        statuses[(route, status)] += 1

    async with prefect(prefect_server, on_request=record, max_retries=10) as (client, http):
        _pool, dep = await pool_with_deployment(http)
        runs = [await create_flow_run(http, dep["id"]) for _ in range(15)]

        async def submit(index: int, run_id: str) -> tuple[str, bool]:
            result, _ = await asyncio.gather(
                client.set_flow_run_state(run_id, type="PENDING"),
                client.update_flow_run_labels(run_id, {"burst": str(index)}),
            )
            return result.status, result.replayed

        outcomes = await asyncio.gather(*(submit(i, r["id"]) for i, r in enumerate(runs)))
        assert [status for status, _ in outcomes] == ["ACCEPT"] * len(runs)

        for index, run in enumerate(runs):
            flow_run = await read_flow_run(http, run["id"])
            assert flow_run["state_type"] == "PENDING"
            assert flow_run["labels"]["burst"] == str(index)
            assert await state_history(http, run["id"]) == [
                ("SCHEDULED", "Scheduled"),
                ("PENDING", "Pending"),
            ]
    retried = {k: v for k, v in statuses.items() if k[1] not in (200, 201, 204)}
    print(f"burst: {len(runs) * 2} writes, retried responses: {retried}")


# ---------------------------------------------------------------------- reads


async def test_reads_of_deployment_flow_and_runs(prefect_server: PrefectServer) -> None:
    async with prefect(prefect_server) as (client, http):
        pool, dep = await pool_with_deployment(http, job_variables={"image": "img:1"})
        runs = [await create_flow_run(http, dep["id"]) for _ in range(3)]
        await set_state(http, runs[0]["id"], "PENDING")

        deployment = await client.read_deployment(dep["id"])
        assert deployment["job_variables"] == {"image": "img:1"}
        flow = await client.read_flow(deployment["flow_id"])
        assert flow["id"] == deployment["flow_id"]

        with pytest.raises(DeploymentNotFound, match="Deployment not found"):
            await client.read_deployment(uuid.uuid4())
        with pytest.raises(FlowRunNotFound, match="Flow run not found"):
            await client.read_flow_run(uuid.uuid4())

        every = await client.read_flow_runs(pool_name=pool)
        assert {str(r.id) for r in every} == {r["id"] for r in runs}
        pending = await client.read_flow_runs(pool_name=pool, state_types=["PENDING"])
        assert [str(r.id) for r in pending] == [runs[0]["id"]]
        page = await client.read_flow_runs(pool_name=pool, limit=2, offset=2)
        assert len(page) == 1
        picked = await client.read_flow_runs(pool_name=pool, ids=[runs[1]["id"]])
        assert [str(r.id) for r in picked] == [runs[1]["id"]]
        named = await client.read_flow_runs(pool_name=pool, state_names=["Scheduled"])
        assert {str(r.id) for r in named} == {runs[1]["id"], runs[2]["id"]}


async def test_logs_events_variables_blocks_and_health(prefect_server: PrefectServer) -> None:
    async with prefect(prefect_server) as (client, http):
        assert await client.api_healthy() is True
        assert await client.server_version() == "3.9.1"

        _pool, dep = await pool_with_deployment(http)
        run = await create_flow_run(http, dep["id"])
        marker = unique("log")
        await client.create_logs(
            [
                LogRecord(
                    name="prefect.flow_runs.worker",
                    level=20,
                    message=f"Worker submitting flow run {marker}",
                    timestamp=datetime.now(UTC),
                    flow_run_id=run["id"],
                )
            ]
        )
        logs = await call(
            http, "POST", "/logs/filter", {"logs": {"flow_run_id": {"any_": [run["id"]]}}}
        )
        assert [log["message"] for log in logs] == [f"Worker submitting flow run {marker}"]

        await client.emit_events(
            [
                {
                    "id": str(uuid.uuid4()),
                    "occurred": datetime.now(UTC).isoformat(),
                    "event": "prefect.worker.submitted-flow-run",
                    "resource": {"prefect.resource.id": "prefect.worker.kubernetes.op"},
                    "related": [],
                    "payload": {},
                }
            ]
        )

        variable = unique("var")
        await call(http, "POST", "/variables/", {"name": variable, "value": {"a": [1, 2]}})
        assert await client.read_variable_by_name(variable) == {"a": [1, 2]}
        assert await client.read_variable_by_name(unique("missing")) is None

        block_type = await call(http, "GET", "/block_types/slug/secret")
        schemas = await call(
            http,
            "POST",
            "/block_schemas/filter",
            {"block_schemas": {"block_type_id": {"any_": [block_type["id"]]}}},
        )
        name = unique("secret")
        document = await call(
            http,
            "POST",
            "/block_documents/",
            {
                "name": name,
                "block_type_id": block_type["id"],
                "block_schema_id": schemas[0]["id"],
                "data": {"value": "s3cr3t"},
            },
        )
        by_name = await client.read_block_document_by_name("secret", name)
        assert by_name["data"] == {"value": "s3cr3t"}, "include_secrets must reveal the value"
        by_id = await client.read_block_document(document["id"])
        assert by_id["data"] == {"value": "s3cr3t"}

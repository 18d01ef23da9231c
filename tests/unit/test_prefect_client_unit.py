"""PrefectClient against httpx.MockTransport: retries, backoff, WAIT, CSRF, errors, auth."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from prefect_job_operator.prefect_api.client import PrefectClient
from prefect_job_operator.prefect_api.errors import (
    APIUnreachable,
    DeploymentNotFound,
    FlowRunNotFound,
    PrefectAPIError,
    ReservedPoolName,
    Unauthorized,
    ValidationFailed,
    WorkPoolAlreadyExists,
    WorkPoolNotFound,
    WorkQueueNotFound,
)
from prefect_job_operator.prefect_api.models import FlowRun, LogRecord, OrchestrationResult
from prefect_job_operator.prefect_api.retry import (
    Outcome,
    RetryPolicy,
    parse_retry_after,
    retry_delay,
)

API = "http://prefect.test/api"
RUN_ID = "5f0e7c1e-8a53-4c8e-9a35-0d1f4a3c2b10"

Handler = Callable[[httpx.Request], httpx.Response]


class Server:
    """Scripted responses in order; records every request and every backoff sleep."""

    def __init__(self, *script: Handler | httpx.Response | Exception) -> None:
        self.script: Iterator[Handler | httpx.Response | Exception] = iter(script)
        self.requests: list[httpx.Request] = []
        self.sleeps: list[float] = []
        self.hook_calls: list[tuple[str, str, int | None]] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        step = next(self.script)
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            return step
        return step(request)

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)

    def client(self, **kwargs: Any) -> PrefectClient:
        kwargs.setdefault("jitter", 0.0)
        return PrefectClient(
            API,
            transport=httpx.MockTransport(self.handle),
            sleep=self.sleep,
            on_request=lambda m, r, s, _t: self.hook_calls.append((m, r, s)),
            **kwargs,
        )

    def bodies(self) -> list[Any]:
        return [json.loads(r.content) if r.content else None for r in self.requests]


def j(status: int, body: Any = None, headers: dict[str, str] | None = None) -> httpx.Response:
    if body is None:
        return httpx.Response(status, headers=headers)
    return httpx.Response(status, json=body, headers=headers)


def pending_result(status: str, transition_id: str | None = None, **details: Any) -> dict[str, Any]:
    return {
        "status": status,
        "state": {
            "id": str(uuid.uuid4()),
            "type": "PENDING",
            "name": "Pending",
            "timestamp": "2026-11-28T19:31:27.687581Z",
            "state_details": {"flow_run_id": RUN_ID, "transition_id": transition_id},
        },
        "details": details,
    }


def echo_transition(status: str) -> Handler:
    """A set_state answer whose stored state carries the transition_id that was sent."""

    def handler(request: httpx.Request) -> httpx.Response:
        sent = json.loads(request.content)["state"]["state_details"]["transition_id"]
        return j(201, pending_result(status, sent, type="reject_details", reason="dup"))

    return handler


# ---------------------------------------------------------------------- auth, headers


async def test_bearer_auth_and_user_agent() -> None:
    server = Server(j(200, "3.9.1"))
    async with server.client(api_key="pnu_secret", user_agent="pjo-test/1") as client:
        assert await client.server_version() == "3.9.1"
    request = server.requests[0]
    assert request.headers["Authorization"] == "Bearer pnu_secret"
    assert request.headers["User-Agent"] == "pjo-test/1"
    assert str(request.url) == f"{API}/admin/version"


async def test_basic_auth_string() -> None:
    server = Server(j(200, "3.9.1"))
    async with server.client(auth_string="admin:pass") as client:
        await client.server_version()
    expected = "Basic " + base64.b64encode(b"admin:pass").decode()
    assert server.requests[0].headers["Authorization"] == expected


async def test_no_auth_header_by_default() -> None:
    server = Server(j(200, "3.9.1"))
    async with server.client() as client:
        await client.server_version()
    assert "Authorization" not in server.requests[0].headers


# ---------------------------------------------------------------------- retries


async def test_503_is_retried_with_exponential_backoff() -> None:
    unavailable = {"exception_message": "Service Unavailable"}
    server = Server(j(503, unavailable), j(503, unavailable), j(502), j(204))
    async with server.client() as client:
        await client.update_flow_run_labels(RUN_ID, {"a": "b"})
    assert server.sleeps == [0.25, 0.5, 1.0]
    assert len(server.requests) == 4
    assert server.hook_calls == [
        ("PATCH", "/flow_runs/{id}/labels", 503),
        ("PATCH", "/flow_runs/{id}/labels", 503),
        ("PATCH", "/flow_runs/{id}/labels", 502),
        ("PATCH", "/flow_runs/{id}/labels", 204),
    ]


async def test_backoff_is_capped_and_jittered() -> None:
    client = PrefectClient(API, backoff_base=1.0, backoff_cap=4.0, jitter=0.5)
    try:
        delays = [client.backoff_delay(n) for n in range(6)]
    finally:
        await client.aclose()
    assert 1.0 <= delays[0] <= 1.5
    assert 2.0 <= delays[1] <= 3.0
    assert all(4.0 <= d <= 6.0 for d in delays[2:])


async def test_retry_after_is_honoured() -> None:
    server = Server(j(429, {"detail": "slow down"}, {"Retry-After": "3"}), j(200, "3.9.1"))
    async with server.client() as client:
        await client.server_version()
    assert server.sleeps == [3.0]


async def test_retries_exhausted_raise_api_unreachable_with_server_text() -> None:
    server = Server(*[j(503, {"exception_message": "Service Unavailable"})] * 3)
    async with server.client(max_retries=2) as client:
        with pytest.raises(APIUnreachable) as caught:
            await client.read_flow_run(RUN_ID)
    assert caught.value.status == 503
    assert "Service Unavailable" in caught.value.message
    assert len(server.requests) == 3


async def test_transport_errors_are_retried_then_unreachable() -> None:
    server = Server(
        httpx.ReadError("closed by peer"),
        httpx.ConnectError("refused"),
        httpx.ReadTimeout("slow"),
    )
    async with server.client(max_retries=2) as client:
        with pytest.raises(APIUnreachable) as caught:
            await client.heartbeat("pool", "w", 30)
    assert caught.value.status is None
    assert "ReadTimeout" in caught.value.message
    assert server.sleeps == [0.25, 0.5]
    assert [c[2] for c in server.hook_calls] == [None, None, None]


async def test_read_error_from_closed_keepalive_is_absorbed() -> None:
    server = Server(httpx.ReadError("keep-alive closed"), j(204))
    async with server.client() as client:
        await client.heartbeat("pool", "w", 30)
    assert len(server.requests) == 2


async def test_maintenance_is_retried_beyond_max_retries() -> None:
    maintenance = j(503, {"detail": "maintenance"}, {"Prefect-Maintenance": "true"})
    server = Server(*[maintenance] * 5, j(200, "3.9.1"))
    async with server.client(max_retries=1) as client:
        assert await client.server_version() == "3.9.1"
    assert len(server.sleeps) == 5


async def test_maintenance_gives_up_at_the_deadline() -> None:
    maintenance = j(503, {"detail": "maintenance"}, {"Prefect-Maintenance": "true"})
    server = Server(maintenance)
    async with server.client(maintenance_deadline=0.0) as client:
        with pytest.raises(APIUnreachable, match="maintenance"):
            await client.server_version()


async def test_non_retryable_500_is_not_retried() -> None:
    server = Server(j(500, {"exception_message": "Internal Server Error"}))
    async with server.client() as client:
        with pytest.raises(PrefectAPIError, match="Internal Server Error"):
            await client.read_flow(RUN_ID)
    assert server.sleeps == []


# ---------------------------------------------------------------------- set_state


async def test_transition_id_is_fresh_per_proposal_and_reused_on_transport_retry() -> None:
    server = Server(
        httpx.ReadError("lost"),
        j(201, pending_result("ACCEPT", type="accept_details")),
        j(201, pending_result("ACCEPT", type="accept_details")),
    )
    async with server.client() as client:
        first = await client.set_flow_run_state(RUN_ID, type="PENDING")
        second = await client.set_flow_run_state(RUN_ID, type="PENDING", name="Submitting")
    assert first.accepted and second.accepted
    ids = [b["state"]["state_details"]["transition_id"] for b in server.bodies()]
    assert ids[0] == ids[1], "a transport retry must resend the same transition_id"
    assert ids[2] != ids[0], "a new proposal must get a new transition_id"
    assert server.bodies()[0] == server.bodies()[1]
    assert server.bodies()[0]["state"]["name"] == "Pending"
    assert server.bodies()[2]["state"]["name"] == "Submitting"
    assert server.bodies()[0]["state"]["state_details"]["flow_run_id"] == RUN_ID
    assert server.bodies()[0]["force"] is False


async def test_replayed_proposal_is_reported_as_accepted() -> None:
    """The first response was lost after the server applied it: the retry is REJECTed
    as a duplicate transition, with the stored state carrying our transition_id."""
    server = Server(httpx.ReadError("lost after apply"), echo_transition("REJECT"))
    async with server.client() as client:
        result = await client.set_flow_run_state(RUN_ID, type="PENDING")
    assert result.status == "ACCEPT"
    assert result.replayed is True


async def test_reject_of_someone_elses_transition_stays_reject() -> None:
    other = str(uuid.uuid4())
    server = Server(j(201, pending_result("REJECT", other, type="reject_details", reason="no")))
    async with server.client() as client:
        result = await client.set_flow_run_state(RUN_ID, type="PENDING")
    assert result.status == "REJECT" and not result.accepted and not result.replayed
    assert result.reason == "no"


async def test_abort_is_returned_regardless_of_http_code() -> None:
    body = pending_result("ABORT", type="abort_details", reason="already PENDING")
    server = Server(j(200, body))
    async with server.client() as client:
        result = await client.set_flow_run_state(RUN_ID, type="PENDING")
    assert result.status == "ABORT"
    assert result.reason == "already PENDING"
    assert result.state is not None and result.state.type == "PENDING"


async def test_wait_sleeps_capped_delay_and_reproposes_with_new_transition_id() -> None:
    wait = {
        "status": "WAIT",
        "state": None,
        "details": {"type": "wait_details", "delay_seconds": 120, "reason": "future"},
    }
    server = Server(j(200, wait), j(201, pending_result("ACCEPT", type="accept_details")))
    async with server.client(max_wait_delay=5.0) as client:
        result = await client.set_flow_run_state(RUN_ID, type="RUNNING")
    assert result.accepted
    assert server.sleeps == [5.0]
    ids = [b["state"]["state_details"]["transition_id"] for b in server.bodies()]
    assert ids[0] != ids[1]


async def test_wait_rounds_are_bounded() -> None:
    wait = {"status": "WAIT", "details": {"type": "wait_details", "delay_seconds": 1}}
    server = Server(*[j(200, wait)] * 3)
    async with server.client(max_wait_rounds=2) as client:
        result = await client.set_flow_run_state(RUN_ID, type="RUNNING")
    assert result.status == "WAIT"
    assert len(server.requests) == 3


async def test_forced_cancel_body_and_extra_details() -> None:
    server = Server(j(201, pending_result("ACCEPT", type="accept_details")))
    async with server.client() as client:
        await client.set_flow_run_state(
            RUN_ID,
            type="CANCELLED",
            message="Deployment gone",
            force=True,
            state_details_extra={"scheduled_time": "2026-11-28T19:31:27Z"},
        )
    body = server.bodies()[0]
    assert body["force"] is True
    assert body["state"]["type"] == "CANCELLED"
    assert body["state"]["name"] == "Cancelled"
    assert body["state"]["message"] == "Deployment gone"
    assert body["state"]["state_details"]["scheduled_time"] == "2026-11-28T19:31:27Z"


async def test_set_state_on_missing_run() -> None:
    server = Server(j(404, {"detail": "Flow run not found"}))
    async with server.client() as client:
        with pytest.raises(FlowRunNotFound, match="Flow run not found"):
            await client.set_flow_run_state(RUN_ID, type="CRASHED")


# ---------------------------------------------------------------------- CSRF


async def test_csrf_token_is_fetched_on_refusal_and_then_sent() -> None:
    def token(request: httpx.Request) -> httpx.Response:
        client_id = request.url.params["client"]
        return j(200, {"token": "tok-1", "client": client_id, "expiration": "2099-01-01T00:00:00Z"})

    server = Server(
        j(403, {"detail": "Missing CSRF token."}), token, j(204), j(204), j(200, "3.9.1")
    )
    async with server.client() as client:
        await client.set_infrastructure_pid(RUN_ID, "ns:job")
        await client.set_infrastructure_pid(RUN_ID, "ns:job2")
        await client.server_version()
    first, fetch, retried, second, get = server.requests
    assert "Prefect-Csrf-Token" not in first.headers
    assert fetch.url.path == "/api/csrf-token"
    assert retried.headers["Prefect-Csrf-Token"] == "tok-1"
    assert retried.headers["Prefect-Csrf-Client"] == fetch.url.params["client"]
    assert second.headers["Prefect-Csrf-Token"] == "tok-1"
    assert "Prefect-Csrf-Token" not in get.headers  # only mutating calls carry it


async def test_csrf_refusal_that_persists_is_unauthorized() -> None:
    server = Server(
        j(403, {"detail": "Invalid CSRF token or client identifier."}),
        j(200, {"token": "t", "client": "c"}),
        j(403, {"detail": "Invalid CSRF token or client identifier."}),
    )
    async with server.client() as client:
        with pytest.raises(Unauthorized, match="Invalid CSRF token"):
            await client.set_infrastructure_pid(RUN_ID, "ns:job")


# ---------------------------------------------------------------------- error mapping


async def test_error_mapping_uses_server_text() -> None:
    bad_template = {
        "exception_message": "Invalid request received.",
        "exception_detail": [
            {
                "type": "value_error",
                "loc": ["body", "base_job_template"],
                "msg": "Value error, undeclared variable(s): nope.",
            }
        ],
    }
    server = Server(
        j(404, {"detail": 'Work pool "p" not found.'}),
        j(409, {"detail": "A work pool with this name already exists."}),
        j(403, {"detail": "Work pools starting with 'Prefect' are reserved for internal use."}),
        j(422, bad_template),
        j(401, {"detail": "Unauthorized"}),
        j(404, {"detail": "Deployment not found"}),
    )
    async with server.client() as client:
        with pytest.raises(WorkPoolNotFound, match='Work pool "p" not found'):
            await client.read_work_pool("p")
        with pytest.raises(WorkPoolAlreadyExists, match="already exists"):
            await client.create_work_pool("p")
        with pytest.raises(ReservedPoolName, match="reserved"):
            await client.create_work_pool("prefect-x")
        with pytest.raises(ValidationFailed) as caught:
            await client.update_work_pool("p", base_job_template={"x": 1})
        assert (
            caught.value.message == "base_job_template: Value error, undeclared variable(s): nope."
        )
        with pytest.raises(Unauthorized):
            await client.heartbeat("p", "w", 30)
        with pytest.raises(DeploymentNotFound):
            await client.read_deployment(RUN_ID)


async def test_unknown_queue_and_unknown_pool_on_poll() -> None:
    server = Server(
        j(404, {"detail": "Work pool queue 'p/nope' not found."}),
        j(404, {"detail": 'Work pool "p" not found.'}),
    )
    async with server.client() as client:
        with pytest.raises(WorkQueueNotFound, match="p/nope") as caught:
            await client.get_scheduled_flow_runs(
                "p", work_queue_names=["nope"], scheduled_before=None
            )
        assert "nope" in str(caught.value)
        with pytest.raises(WorkPoolNotFound):
            await client.get_scheduled_flow_runs("p", scheduled_before=None)


# ---------------------------------------------------------------------- bodies, models


async def test_update_work_pool_sends_only_given_fields() -> None:
    server = Server(j(204), j(204), j(204))
    async with server.client() as client:
        await client.update_work_pool("my pool", concurrency_limit=None)
        await client.update_work_pool("p", is_paused=True, description="d")
        await client.update_work_pool("p")  # nothing to send: no request
    assert server.bodies() == [{"concurrency_limit": None}, {"description": "d", "is_paused": True}]
    assert server.requests[0].url.raw_path == b"/api/work_pools/my%20pool"


async def test_poll_body_and_parsing() -> None:
    from datetime import datetime

    run = {
        "id": RUN_ID,
        "name": "brave-fox",
        "flow_id": str(uuid.uuid4()),
        "labels": None,
        "state": {"type": "SCHEDULED", "name": "Late"},
        "state_type": "SCHEDULED",
        "future_field": {"x": 1},
    }
    server = Server(
        j(
            200,
            [
                {
                    "work_pool_id": str(uuid.uuid4()),
                    "work_queue_id": str(uuid.uuid4()),
                    "flow_run": run,
                }
            ],
        )
    )
    async with server.client() as client:
        runs = await client.get_scheduled_flow_runs(
            "p", work_queue_names=["a", "b"], scheduled_before=datetime(2026, 1, 1, 12, 0), limit=5
        )
    assert server.bodies()[0] == {
        "work_queue_names": ["a", "b"],
        "scheduled_before": "2026-01-01T12:00:00+00:00",
        "limit": 5,
    }
    assert [r.name for r in runs] == ["brave-fox"]
    assert runs[0].labels == {}
    assert runs[0].raw["future_field"] == {"x": 1}
    assert runs[0].state is not None and runs[0].state.name == "Late"


def test_flow_run_model_is_tolerant_and_keeps_raw() -> None:
    run = FlowRun.model_validate({"id": RUN_ID})
    assert run.state is None and run.job_variables == {} and run.raw == {"id": RUN_ID}
    assert "raw" not in run.model_dump()


def test_orchestration_result_parsing() -> None:
    result = OrchestrationResult.model_validate(
        {"status": "WAIT", "state": None, "details": {"type": "wait_details", "delay_seconds": 7}}
    )
    assert not result.accepted and result.details.delay_seconds == 7


async def test_variable_missing_is_none_and_present_is_value() -> None:
    server = Server(
        j(404, {"detail": "Variable not found."}), j(200, {"name": "v", "value": [1, 2]})
    )
    async with server.client() as client:
        assert await client.read_variable_by_name("nope") is None
        assert await client.read_variable_by_name("v") == [1, 2]


async def test_block_document_reads_include_secrets() -> None:
    server = Server(j(200, {"data": {"value": "s3cr3t"}}), j(200, {"data": {}}))
    async with server.client() as client:
        doc = await client.read_block_document_by_name("secret", "my-secret")
        await client.read_block_document(RUN_ID)
    assert doc["data"]["value"] == "s3cr3t"
    assert (
        server.requests[0].url.path == "/api/block_types/slug/secret/block_documents/name/my-secret"
    )
    assert all(r.url.params["include_secrets"] == "true" for r in server.requests)


async def test_logs_and_events_are_json_lists() -> None:
    from datetime import UTC, datetime

    moment = datetime(2026, 1, 1, tzinfo=UTC)
    server = Server(j(201), j(204))
    async with server.client() as client:
        await client.create_logs(
            [
                LogRecord(
                    name="prefect.flow_runs.worker",
                    level=20,
                    message="hi",
                    timestamp=moment,
                    flow_run_id=uuid.UUID(RUN_ID),
                )
            ]
        )
        await client.emit_events([{"id": uuid.UUID(RUN_ID), "occurred": moment, "event": "x"}])
        await client.create_logs([])  # no request
    logs, events = server.bodies()
    assert logs == [
        {
            "name": "prefect.flow_runs.worker",
            "level": 20,
            "message": "hi",
            "timestamp": "2026-01-01T00:00:00Z",
            "flow_run_id": RUN_ID,
            "task_run_id": None,
        }
    ]
    assert events[0]["id"] == RUN_ID and events[0]["occurred"].startswith("2026-01-01T00:00:00")
    assert server.requests[0].url.path == "/api/logs/"
    assert server.requests[1].url.path == "/api/events"


async def test_health_is_a_single_attempt() -> None:
    server = Server(httpx.ConnectError("down"), j(200, True))
    async with server.client() as client:
        assert await client.api_healthy() is False
        assert await client.api_healthy() is True
    assert server.sleeps == []


async def test_read_flow_runs_filter_body() -> None:
    server = Server(j(200, [{"id": RUN_ID}]))
    async with server.client() as client:
        runs = await client.read_flow_runs(
            pool_name="p",
            state_types=["CANCELLING"],
            state_names=["Cancelling"],
            ids=[RUN_ID],
            limit=50,
            offset=100,
        )
    assert [str(r.id) for r in runs] == [RUN_ID]
    assert server.bodies()[0] == {
        "flow_runs": {
            "state": {"type": {"any_": ["CANCELLING"]}, "name": {"any_": ["Cancelling"]}},
            "id": {"any_": [RUN_ID]},
        },
        "work_pools": {"name": {"any_": ["p"]}},
        "limit": 50,
        "offset": 100,
        "sort": "ID_DESC",
    }


# ---------------------------------------------------------------------- retry policy (pure)

POLICY = RetryPolicy(max_retries=2, backoff_base=1.0, backoff_cap=4.0, jitter=0.5)


@pytest.mark.parametrize(
    ("attempt", "outcome", "elapsed", "expected"),
    [
        (0, Outcome(status=None), 0.0, 1.0),  # transport error: backoff
        (1, Outcome(status=503), 0.0, 2.0),
        (2, Outcome(status=503), 0.0, None),  # max_retries reached
        (0, Outcome(status=429, retry_after=3.0), 0.0, 3.0),  # Retry-After wins
        (0, Outcome(status=429, retry_after=600.0), 0.0, 60.0),  # ... capped
        (0, Outcome(status=500), 0.0, None),  # not retryable
        (0, Outcome(status=200), 0.0, None),
        (0, Outcome(status=403), 0.0, None),
        (9, Outcome(status=503, maintenance=True), 10.0, 4.0),  # beyond max_retries
        (9, Outcome(status=503, maintenance=True, retry_after=2.0), 10.0, 2.0),
        (0, Outcome(status=503, maintenance=True), 900.0, None),  # deadline
    ],
)
def test_retry_delay_table(
    attempt: int, outcome: Outcome, elapsed: float, expected: float | None
) -> None:
    assert retry_delay(POLICY, attempt, outcome, elapsed, draw=0.0) == expected


def test_backoff_jitter_is_at_most_the_jitter_fraction() -> None:
    assert POLICY.backoff(0, draw=1.0) == 1.5
    assert POLICY.backoff(10, draw=1.0) == 6.0


@pytest.mark.parametrize(
    ("header", "expected"),
    [(None, None), ("", None), ("7", 7.0), ("-3", 0.0), ("soon", None)],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header) == expected

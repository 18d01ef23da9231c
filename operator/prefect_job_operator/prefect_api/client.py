"""The operator's only door to the Prefect REST API (httpx, no ``prefect`` import).

One ``httpx.AsyncClient`` per API URL: keep-alive, bounded pool, and a keep-alive
expiry below the server's 5 s so idle connections are dropped by us, not by it.

Retries follow the Prefect client; the policy is the pure ``retry.retry_delay`` and
``_request`` is the short loop around it. Each route is written once, as a template
(``_at``) that is both the metrics label and, filled in, the path.

``set_flow_run_state`` sends a fresh ``transition_id`` per proposal and keeps it on a
transport retry, so a proposal applied by a request whose response was lost is
recognised (the server REJECTs the replay as a duplicate) and reported as accepted.
"""

from __future__ import annotations

import asyncio
import base64
import json as jsonlib
import ssl
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, Final, NamedTuple
from urllib.parse import quote

import httpx
from pydantic_core import to_jsonable_python

from prefect_job_operator import __version__
from prefect_job_operator.prefect_api.errors import (
    APIUnreachable,
    BlockDocumentNotFound,
    DeploymentNotFound,
    FlowNotFound,
    FlowRunNotFound,
    ObjectNotFound,
    PrefectAPIError,
    ReservedPoolName,
    Unauthorized,
    ValidationFailed,
    WorkPoolAlreadyExists,
    WorkPoolNotFound,
    WorkQueueNotFound,
    message_from_body,
)
from prefect_job_operator.prefect_api.models import (
    FlowRun,
    LogRecord,
    OrchestrationResult,
    Worker,
    WorkPool,
    WorkQueue,
    default_state_name,
)
from prefect_job_operator.prefect_api.retry import (
    RETRYABLE_STATUSES,
    Outcome,
    RetryPolicy,
    parse_retry_after,
    retry_delay,
)

RequestHook = Callable[[str, str, int | None, float], None]
"""``(method, route_template, status or None, seconds)``, called once per HTTP attempt."""

Sleep = Callable[[float], Awaitable[None]]

__all__ = ["RETRYABLE_STATUSES", "HeaderConflict", "PrefectClient", "RetryPolicy", "TlsOptions"]

MUTATING_METHODS: Final = frozenset({"POST", "PUT", "PATCH", "DELETE"})
DUPLICATE_TRANSITION_REASON: Final = "This run has already made this state transition."


class Unset:
    """Marker for "leave this field alone" in partial updates (None is a real value)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset()


class Route(NamedTuple):
    """A route template (the metrics label) and the path it gives for one call."""

    template: str
    path: str


def _at(template: str, **params: object) -> Route:
    """The route ``template`` with its ``{placeholders}`` filled in, URL-quoted."""
    quoted = {k: quote(str(v), safe="") for k, v in params.items()}
    return Route(template, template.format(**quoted))


def _utc_iso(moment: datetime) -> str:
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.isoformat()


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


PROTECTED_HEADERS: Final = frozenset({"user-agent", "prefect-csrf-token", "prefect-csrf-client"})
TLS_HINT: Final = (
    "The API's certificate is not trusted: give the CA that signed it "
    "(spec.api.tls.caBundleFrom, or PJO_API_SSL_CERT_FILE for the operator-wide API)"
)


class HeaderConflict(ValueError):
    """Custom headers that would replace what the client manages (credentials, CSRF)."""


def custom_request_headers(headers: Mapping[str, str], *, has_credentials: bool) -> dict[str, str]:
    """Custom headers checked: never User-Agent/CSRF, Authorization only without credentials.

    Prefect's client ignores the protected ones with a warning and lets a custom
    Authorization replace the API key silently; here both are errors the user sees.
    """
    out: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        if lowered in PROTECTED_HEADERS:
            raise HeaderConflict(
                f"custom header {name!r} is managed by the operator and cannot be set"
            )
        if lowered == "authorization" and has_credentials:
            raise HeaderConflict(
                "custom header 'Authorization' would replace the Prefect API key or auth "
                "string: drop the header or the credentials"
            )
        out[name] = value
    return out


@dataclass(frozen=True)
class TlsOptions:
    """How to verify the API's certificate: PEM CAs, a CA file, no verification, or the
    system's CAs (default)."""

    ca_pem: str | None = None
    ca_file: str | None = None
    insecure_skip_verify: bool = False

    def verify(self) -> ssl.SSLContext | bool:
        """What httpx takes as ``verify``; a bad bundle raises ValueError naming the source."""
        if self.insecure_skip_verify:
            return False
        try:
            if self.ca_pem is not None:
                return ssl.create_default_context(cadata=self.ca_pem)
            if self.ca_file is not None:
                return ssl.create_default_context(cafile=self.ca_file)
        except (ssl.SSLError, OSError, ValueError) as exc:
            where = "the CA bundle" if self.ca_pem is not None else f"CA file {self.ca_file}"
            raise ValueError(f"{where} holds no usable PEM certificate: {exc}") from None
        return True


def _tls_verify_failure(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return False
        if isinstance(seen, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(
            seen
        ):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _auth_headers(
    custom: Mapping[str, str] | None, api_key: str | None, auth_string: str | None, user_agent: str
) -> dict[str, str]:
    """Custom headers (checked), the User-Agent and the credentials."""
    headers = custom_request_headers(custom or {}, has_credentials=bool(api_key or auth_string))
    headers.update({"User-Agent": user_agent, "Accept": "application/json"})
    # auth_string wins over api_key, as in the Prefect client (OSS basic auth).
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    if auth_string:
        token = base64.b64encode(auth_string.encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def _encode(json: Any) -> bytes | None:
    if json is None:
        return None
    return jsonlib.dumps(to_jsonable_python(json), separators=(",", ":")).encode()


def _outcome(response: httpx.Response | None) -> Outcome:
    if response is None:
        return Outcome(status=None)
    return Outcome(
        status=response.status_code,
        maintenance=response.headers.get("Prefect-Maintenance", "").lower() == "true",
        retry_after=parse_retry_after(response.headers.get("Retry-After")),
    )


class PrefectClient:
    """Async client for the REST calls a Kubernetes worker makes (protocol §3, §14)."""

    def __init__(
        self,
        api_url: str,
        *,
        api_key: str | None = None,
        auth_string: str | None = None,
        timeout: float = 30.0,
        max_retries: int = 6,
        user_agent: str = f"prefect-job-operator/{__version__}",
        transport: httpx.AsyncBaseTransport | None = None,
        on_request: RequestHook | None = None,
        backoff_base: float = 0.25,
        backoff_cap: float = 10.0,
        jitter: float = 0.2,
        retry_after_cap: float = 60.0,
        maintenance_deadline: float = 900.0,
        max_wait_delay: float = 30.0,
        max_wait_rounds: int = 10,
        max_connections: int = 16,
        sleep: Sleep = asyncio.sleep,
        tls: TlsOptions | None = None,
        custom_headers: Mapping[str, str] | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.api_url,
            headers=_auth_headers(custom_headers, api_key, auth_string, user_agent),
            verify=(tls or TlsOptions()).verify(),
            trust_env=True,  # HTTP(S)_PROXY / NO_PROXY / SSL_CERT_FILE, as the Prefect client
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(
                max_connections=max_connections,
                max_keepalive_connections=max_connections,
                keepalive_expiry=4.0,
            ),
            transport=transport,
        )
        self.retry = RetryPolicy(
            max_retries, backoff_base, backoff_cap, jitter, retry_after_cap, maintenance_deadline
        )
        self._on_request = on_request
        self._max_wait_delay = max_wait_delay
        self._max_wait_rounds = max_wait_rounds
        self._sleep = sleep
        self._csrf_headers: dict[str, str] = {}
        self._csrf_lock = asyncio.Lock()
        self._version: str | None = None

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> PrefectClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # ------------------------------------------------------------------ transport

    def backoff_delay(self, attempt: int) -> float:
        """Seconds before retry number ``attempt`` (0-based): base·2^n, capped, plus jitter."""
        return self.retry.backoff(attempt)

    def _report(self, method: str, route: str, status: int | None, started: float) -> None:
        if self._on_request is not None:
            self._on_request(method, route, status, time.monotonic() - started)

    async def _send(
        self, method: str, route: Route, content: bytes | None, params: Mapping[str, str] | None
    ) -> tuple[httpx.Response | None, httpx.TransportError | None]:
        """One attempt: the response, or the transport error (a TLS failure raises at once)."""
        headers = {"Content-Type": "application/json"} if content is not None else {}
        if method in MUTATING_METHODS:
            headers.update(self._csrf_headers)
        started = time.monotonic()
        try:
            response = await self._http.request(
                method, route.path, content=content, params=params, headers=headers
            )
        except httpx.TransportError as exc:
            self._report(method, route.template, None, started)
            if _tls_verify_failure(exc):  # not transient: say so at once
                raise APIUnreachable(
                    None, f"{method} {route.template}: {type(exc).__name__}: {exc}. {TLS_HINT}"
                ) from exc
            return None, exc
        self._report(method, route.template, response.status_code, started)
        return response, None

    async def _request(
        self,
        method: str,
        route: Route | str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; returns any final response (errors are mapped by callers)."""
        route = route if isinstance(route, Route) else Route(route, route)
        content = _encode(json)
        first = time.monotonic()
        attempt, csrf_refreshed = 0, False
        while True:
            response, error = await self._send(method, route, content, params)
            delay = retry_delay(self.retry, attempt, _outcome(response), time.monotonic() - first)
            if delay is not None:
                await self._sleep(delay)
                attempt += 1
                continue
            if response is None or response.status_code in RETRYABLE_STATUSES:
                raise self._gave_up(method, route.template, response, error)
            if not csrf_refreshed and self._is_csrf_refusal(method, response):
                csrf_refreshed = True
                await self._refresh_csrf_token()
                continue
            return response

    def _gave_up(
        self,
        method: str,
        route: str,
        response: httpx.Response | None,
        error: httpx.TransportError | None,
    ) -> APIUnreachable:
        """The error after the last retry: transport, maintenance or a retryable status."""
        if response is None:
            exc = APIUnreachable(None, f"{method} {route}: {type(error).__name__}: {error}")
            exc.__cause__ = error
            return exc
        if _outcome(response).maintenance:
            return APIUnreachable(
                response.status_code,
                f"{method} {route}: server still in maintenance after "
                f"{self.retry.maintenance_deadline:.0f} s",
            )
        body = _body(response)
        message = message_from_body(body, response.reason_phrase)
        return APIUnreachable(response.status_code, f"{method} {route}: {message}", body)

    @staticmethod
    def _is_csrf_refusal(method: str, response: httpx.Response) -> bool:
        if response.status_code != 403 or method not in MUTATING_METHODS:
            return False
        message = message_from_body(_body(response), "").lower()
        return "csrf" in message or "client identifier" in message

    async def _refresh_csrf_token(self) -> None:
        async with self._csrf_lock:
            client_id = str(uuid.uuid4())
            response = await self._request("GET", "/csrf-token", params={"client": client_id})
            if response.status_code != 200:
                raise Unauthorized(
                    response.status_code,
                    "CSRF token refused: "
                    + message_from_body(_body(response), response.reason_phrase),
                )
            token = _body(response)
            self._csrf_headers = {
                "Prefect-Csrf-Token": str(token.get("token", "")),
                "Prefect-Csrf-Client": str(token.get("client", client_id)),
            }

    @staticmethod
    def _error(
        response: httpx.Response,
        *,
        not_found: type[ObjectNotFound] = ObjectNotFound,
        conflict: type[PrefectAPIError] = PrefectAPIError,
    ) -> PrefectAPIError:
        body = _body(response)
        status = response.status_code
        message = message_from_body(body, response.reason_phrase or f"HTTP {status}")
        if status == 404:
            return not_found(status, message, body)
        if status == 409:
            return conflict(status, message, body)
        if status == 422:
            return ValidationFailed(status, message, body)
        if status in (401, 403):
            return Unauthorized(status, message, body)
        return PrefectAPIError(status, message, body)

    async def _call(
        self,
        method: str,
        route: Route | str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        ok: Sequence[int] = (200, 201, 204),
        not_found: type[ObjectNotFound] = ObjectNotFound,
    ) -> Any:
        response = await self._request(method, route, json=json, params=params)
        if response.status_code not in ok:
            raise self._error(response, not_found=not_found)
        if response.status_code == 204 or not response.content:
            return None
        return _body(response)

    # ------------------------------------------------------------------ work pools

    async def read_work_pool(self, name: str) -> WorkPool:
        data = await self._call(
            "GET",
            _at("/work_pools/{name}", name=name),
            not_found=WorkPoolNotFound,
        )
        return WorkPool.model_validate(data)

    async def create_work_pool(
        self,
        name: str,
        *,
        type: str = "kubernetes",
        base_job_template: dict[str, Any] | None = None,
        description: str | None = None,
        concurrency_limit: int | None = None,
        is_paused: bool | None = None,
    ) -> WorkPool:
        body: dict[str, Any] = {"name": name, "type": type}
        if base_job_template is not None:
            body["base_job_template"] = base_job_template
        if description is not None:
            body["description"] = description
        if concurrency_limit is not None:
            body["concurrency_limit"] = concurrency_limit
        if is_paused is not None:
            body["is_paused"] = is_paused
        response = await self._request("POST", "/work_pools/", json=body)
        if response.status_code == 403:
            message = message_from_body(_body(response), "forbidden")
            if "reserved" in message.lower():
                raise ReservedPoolName(403, message, _body(response))
        if response.status_code not in (200, 201):
            raise self._error(response, not_found=WorkPoolNotFound, conflict=WorkPoolAlreadyExists)
        return WorkPool.model_validate(_body(response))

    async def update_work_pool(
        self,
        name: str,
        *,
        base_job_template: dict[str, Any] | Unset = UNSET,
        description: str | Unset | None = UNSET,
        concurrency_limit: int | Unset | None = UNSET,
        is_paused: bool | Unset = UNSET,
    ) -> None:
        """PATCH only the fields given (``None`` clears ``description``/``concurrency_limit``)."""
        fields = {
            "base_job_template": base_job_template,
            "description": description,
            "concurrency_limit": concurrency_limit,
            "is_paused": is_paused,
        }
        body = {k: v for k, v in fields.items() if not isinstance(v, Unset)}
        if not body:
            return
        await self._call(
            "PATCH",
            _at("/work_pools/{name}", name=name),
            json=body,
            not_found=WorkPoolNotFound,
        )

    async def delete_work_pool(self, name: str) -> None:
        await self._call(
            "DELETE",
            _at("/work_pools/{name}", name=name),
            not_found=WorkPoolNotFound,
        )

    async def heartbeat(
        self, pool: str, worker_name: str, heartbeat_interval_seconds: int | float
    ) -> None:
        await self._call(
            "POST",
            _at("/work_pools/{name}/workers/heartbeat", name=pool),
            json={
                "name": worker_name,
                "heartbeat_interval_seconds": int(heartbeat_interval_seconds),
            },
            not_found=WorkPoolNotFound,
        )

    async def _filter_in_pool(self, pool: str, what: str) -> list[Any]:
        """``POST /work_pools/{name}/<what>/filter`` with no filter: every item, as JSON."""
        data = await self._call(
            "POST",
            _at(f"/work_pools/{{name}}/{what}/filter", name=pool),
            json={},
            not_found=WorkPoolNotFound,
        )
        return list(data or [])

    async def read_workers(self, pool: str) -> list[Worker]:
        return [Worker.model_validate(w) for w in await self._filter_in_pool(pool, "workers")]

    async def read_work_queues(self, pool: str) -> list[WorkQueue]:
        items = await self._filter_in_pool(pool, "queues")
        return [WorkQueue.model_validate(q) for q in items]

    async def get_scheduled_flow_runs(
        self,
        pool: str,
        *,
        work_queue_names: Sequence[str] = (),
        scheduled_before: datetime | None,
        limit: int | None = None,
    ) -> list[FlowRun]:
        """The poll: Scheduled runs of the pool (all queues when none are named).

        It claims nothing; the Pending proposal decides which replica wins a run.
        """
        body: dict[str, Any] = {"work_queue_names": list(work_queue_names)}
        if scheduled_before is not None:
            body["scheduled_before"] = _utc_iso(scheduled_before)
        if limit is not None:
            body["limit"] = limit
        response = await self._request(
            "POST",
            _at("/work_pools/{name}/get_scheduled_flow_runs", name=pool),
            json=body,
        )
        if response.status_code == 404:
            message = message_from_body(_body(response), "not found")
            # "Work pool queue 'pool/q' not found." vs 'Work pool "pool" not found.'
            if "queue" in message.lower():
                raise WorkQueueNotFound(
                    404,
                    f"{message} (work queues named in the WorkPool: {', '.join(work_queue_names)})",
                    _body(response),
                )
            raise WorkPoolNotFound(404, message, _body(response))
        if response.status_code != 200:
            raise self._error(response)
        return [FlowRun.model_validate(item["flow_run"]) for item in _body(response)]

    # ------------------------------------------------------------------ deployments, flows

    async def read_deployment(self, id: uuid.UUID | str) -> dict[str, Any]:
        data: dict[str, Any] = await self._call(
            "GET",
            _at("/deployments/{id}", id=id),
            not_found=DeploymentNotFound,
        )
        return data

    async def read_flow(self, id: uuid.UUID | str) -> dict[str, Any]:
        data: dict[str, Any] = await self._call(
            "GET", _at("/flows/{id}", id=id), not_found=FlowNotFound
        )
        return data

    # ------------------------------------------------------------------ flow runs

    async def read_flow_run(self, id: uuid.UUID | str) -> FlowRun:
        data = await self._call("GET", _at("/flow_runs/{id}", id=id), not_found=FlowRunNotFound)
        return FlowRun.model_validate(data)

    async def read_flow_runs(
        self,
        *,
        pool_name: str,
        state_types: Sequence[str] | None = None,
        state_names: Sequence[str] | None = None,
        ids: Sequence[uuid.UUID | str] | None = None,
        limit: int = 200,
        offset: int = 0,
    ) -> list[FlowRun]:
        """One page of ``POST /flow_runs/filter`` for the pool, newest id first."""
        run_filter: dict[str, Any] = {}
        state: dict[str, Any] = {}
        if state_types is not None:
            state["type"] = {"any_": [str(t) for t in state_types]}
        if state_names is not None:
            state["name"] = {"any_": list(state_names)}
        if state:
            run_filter["state"] = state
        if ids is not None:
            run_filter["id"] = {"any_": [str(i) for i in ids]}
        body = {
            "flow_runs": run_filter,
            "work_pools": {"name": {"any_": [pool_name]}},
            "limit": limit,
            "offset": offset,
            "sort": "ID_DESC",
        }
        data = await self._call("POST", "/flow_runs/filter", json=body)
        return [FlowRun.model_validate(item) for item in data or []]

    async def set_flow_run_state(
        self,
        flow_run_id: uuid.UUID | str,
        *,
        type: str,
        name: str | None = None,
        message: str | None = None,
        force: bool = False,
        state_details_extra: dict[str, Any] | None = None,
    ) -> OrchestrationResult:
        """Propose a state; branch on the returned ``status``, never on the HTTP code.

        WAIT sleeps ``delay_seconds`` (capped) and proposes again with a new
        ``transition_id``, at most ``max_wait_rounds`` times; the last WAIT is returned.
        """
        route = _at("/flow_runs/{id}/set_state", id=flow_run_id)
        result: OrchestrationResult | None = None
        for _ in range(self._max_wait_rounds + 1):
            transition_id = str(uuid.uuid4())
            details: dict[str, Any] = dict(state_details_extra or {})
            details.update({"flow_run_id": str(flow_run_id), "transition_id": transition_id})
            body = {
                "state": {
                    "type": str(type),
                    "name": name if name is not None else default_state_name(str(type)),
                    "message": message,
                    "state_details": to_jsonable_python(details),
                },
                "force": force,
            }
            data = await self._call("POST", route, json=body, not_found=FlowRunNotFound)
            result = OrchestrationResult.model_validate(data)
            if result.status == "WAIT":
                delay = float(result.details.delay_seconds or 0)
                await self._sleep(min(max(delay, 0.0), self._max_wait_delay))
                continue
            if self._is_replay(result, transition_id):
                result = result.model_copy(update={"status": "ACCEPT", "replayed": True})
            return result
        assert result is not None
        return result

    @staticmethod
    def _is_replay(result: OrchestrationResult, transition_id: str) -> bool:
        """REJECT of our own transition_id: a lost response's proposal was already applied."""
        return (
            result.status == "REJECT"
            and result.state is not None
            and str(result.state.state_details.transition_id) == transition_id
        )

    async def set_infrastructure_pid(self, flow_run_id: uuid.UUID | str, pid: str) -> None:
        await self._call(
            "PATCH",
            _at("/flow_runs/{id}", id=flow_run_id),
            json={"infrastructure_pid": pid},
            not_found=FlowRunNotFound,
        )

    async def update_flow_run_labels(
        self, flow_run_id: uuid.UUID | str, labels: Mapping[str, str]
    ) -> None:
        """Merge ``labels`` into the run's labels (the server keeps the others)."""
        await self._call(
            "PATCH",
            _at("/flow_runs/{id}/labels", id=flow_run_id),
            json=dict(labels),
            not_found=FlowRunNotFound,
        )

    # ------------------------------------------------------------------ logs, events

    async def create_logs(self, logs: Sequence[LogRecord]) -> None:
        if not logs:
            return
        await self._call("POST", "/logs/", json=[log.model_dump(mode="json") for log in logs])

    async def emit_events(self, events: Sequence[Mapping[str, Any]]) -> None:
        """``POST /events``: the REST alternative to the ``/events/in`` socket."""
        if not events:
            return
        await self._call("POST", "/events", json=to_jsonable_python(list(events)))

    # ------------------------------------------------------------------ blocks, variables

    async def read_block_document_by_name(self, block_type_slug: str, name: str) -> dict[str, Any]:
        data: dict[str, Any] = await self._call(
            "GET",
            _at(
                "/block_types/slug/{slug}/block_documents/name/{name}",
                slug=block_type_slug,
                name=name,
            ),
            params={"include_secrets": "true"},
            not_found=BlockDocumentNotFound,
        )
        return data

    async def read_block_document(self, id: uuid.UUID | str) -> dict[str, Any]:
        data: dict[str, Any] = await self._call(
            "GET",
            _at("/block_documents/{id}", id=id),
            params={"include_secrets": "true"},
            not_found=BlockDocumentNotFound,
        )
        return data

    async def read_variable_by_name(self, name: str) -> Any | None:
        """The variable's value, or None when no variable has that name."""
        try:
            data = await self._call("GET", _at("/variables/name/{name}", name=name))
        except ObjectNotFound:
            return None
        return data.get("value") if isinstance(data, dict) else None

    async def write_variable(self, name: str, value: Any, tags: Sequence[str] = ()) -> None:
        """Create the variable, or overwrite its value when it exists."""
        response = await self._request(
            "POST", "/variables/", json={"name": name, "value": value, "tags": list(tags)}
        )
        if response.status_code in (200, 201):
            return
        if response.status_code != 409:
            raise self._error(response)
        await self._call(
            "PATCH",
            _at("/variables/name/{name}", name=name),
            json={"value": value},
        )

    # ------------------------------------------------------------------ server

    async def api_healthy(self) -> bool:
        """One ``GET /health`` without retries: False on any error."""
        started = time.monotonic()
        try:
            response = await self._http.get("/health")
        except httpx.HTTPError:
            self._report("GET", "/health", None, started)
            return False
        self._report("GET", "/health", response.status_code, started)
        return response.status_code == 200

    async def server_version(self) -> str:
        """The server's Prefect version (``GET /admin/version``), asked once per client."""
        if self._version is None:
            self._version = str(await self._call("GET", "/admin/version"))
        return self._version

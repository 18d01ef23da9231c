"""Poll for due flow runs and turn each into exactly one Kubernetes Job.

Per run, the dispatch path makes one Prefect call: propose Pending (the claim), plus
"Submitting" when a pool opts in. The infrastructure_pid and worker labels are bookkeeping:
they are written in a follow-up lane after the Job exists, so a burst's submission slots
wait only on the claim and the Job create. Deployments and flows are read once per poll, not
once per run: the Prefect server's CPU bounds dispatch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, TypeVar

import anyio

from prefect_job_operator import clock
from prefect_job_operator.api.v1alpha1 import LABEL_FLOW_RUN_ID
from prefect_job_operator.dispatch.runtime import NamespaceAccess, PoolConfig, Ports, SyncedPool
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.kube.port import KubePort
from prefect_job_operator.prefect_api.errors import (
    APIUnreachable,
    BlockDocumentNotFound,
    DeploymentNotFound,
    FlowNotFound,
    PrefectAPIError,
)
from prefect_job_operator.prefect_api.models import FlowRun
from prefect_job_operator.prefect_api.port import PrefectPort
from prefect_job_operator.rendering import (
    RenderedJob,
    RenderError,
    ResolvedReferences,
    collect_references,
    operator_objects,
    render_job,
)
from prefect_job_operator.tracking.runs import RunTable

log = logging.getLogger(__name__)

SUBMIT_FAILED = "Failed to submit flow run to infrastructure"
SUBMIT_DEFERRED = "SubmissionDeferred"


T = TypeVar("T")
CANCELLED_BEFORE_JOB = "Flow run cancelled before its Job was created."


@dataclass
class Submitter:
    """Turns due flow runs into Jobs. It owns the submission state: the runs in flight (being
    claimed or created: no Job yet), the cancel requests that arrive meanwhile (from the
    sweep), the flow cache and the follow-up lane. It reads the run table, the synced pool
    and the namespace rule, and writes the table only through its methods."""

    cfg: PoolConfig
    ports: Ports
    table: RunTable
    synced: SyncedPool
    access: NamespaceAccess
    in_flight: set[str] = field(default_factory=set)
    cancel_requested: set[str] = field(default_factory=set)
    flows: dict[str, dict[str, Any]] = field(default_factory=dict)
    followup_limiter: anyio.CapacityLimiter = field(init=False)
    """Bounds the pid/labels writes that trail the Job creates: half the submission slots,
    so bookkeeping keeps up without taking the server from the claims of a burst."""

    def __post_init__(self) -> None:
        slots = self.cfg.spec.worker.submit_concurrency
        self.followup_limiter = anyio.CapacityLimiter(max(2, slots // 2))

    def request_cancel(self, flow_run_id: str) -> bool:
        """The sweep saw the run Cancelling: True when it is in flight here (then its Job is
        not created), False when the sweep must act itself."""
        if flow_run_id not in self.in_flight:
            return False
        self.cancel_requested.add(flow_run_id)
        return True

    def begin(self, flow_run_id: str) -> None:
        self.in_flight.add(flow_run_id)

    def finished(self, flow_run_id: str) -> None:
        self.in_flight.discard(flow_run_id)
        self.cancel_requested.discard(flow_run_id)

    async def cached_flow(self, flow_id: str) -> dict[str, Any]:
        """The flow, read once for the life of the pool (errors propagate)."""
        flow = self.flows.get(flow_id)
        if flow is None:
            flow = self.flows[flow_id] = await self.ports.client.read_flow(flow_id)
        return flow


class SubmissionError(Exception):
    """A run could not be turned into a Job; the message becomes its Crashed message."""


def is_infrastructure_fault(exc: BaseException) -> bool:
    """True when a submission failed through no fault of the run: the Kubernetes or Prefect
    API was unreachable, failing (5xx) or throttling (429). Such a run must never crash."""
    if isinstance(exc, KubeError):
        return exc.transient
    if isinstance(exc, APIUnreachable):
        return True
    if isinstance(exc, PrefectAPIError):
        return exc.status is None or exc.status in (408, 429) or exc.status >= 500
    return False


@dataclass(frozen=True)
class Followup:
    """What is left to write once a run's Job exists: its pid and, optionally, worker labels."""

    flow_run_id: str
    pid: str
    labels: dict[str, str] | None = None


async def poll_once(
    sub: Submitter, tg: anyio.abc.TaskGroup, limiter: anyio.CapacityLimiter
) -> int | None:
    """One poll: fetch due runs and start a bounded submission for each; returns how many,
    or None when a backlog skipped the poll (busy is not unhealthy: a poll all the same)."""
    spec = sub.cfg.spec
    if len(sub.in_flight) >= 2 * spec.worker.submit_concurrency:
        # A backlog is still waiting for a submission slot: another poll would only make the
        # server list (and serialise) runs we already hold.
        return None
    started = time.monotonic()
    runs = await sub.ports.client.get_scheduled_flow_runs(
        sub.cfg.pool_name,
        work_queue_names=spec.work_queues,
        scheduled_before=clock.now() + timedelta(seconds=spec.worker.prefetch_seconds),
    )
    sub.ports.metrics.poll_duration.observe(time.monotonic() - started, *sub.cfg.metric_labels)
    sub.ports.metrics.last_poll.set(clock.now().timestamp(), *sub.cfg.metric_labels)
    now = clock.now()
    fresh = [
        r
        for r in runs
        if str(r.id) not in sub.in_flight and not sub.table.has_live_job(str(r.id), now)
    ]
    if not fresh:
        return 0
    capacity = _capacity(sub)
    if capacity is not None:
        fresh = fresh[: max(capacity, 0)]
    deployments = await _read_many(
        sub.ports.client, "deployment", {str(r.deployment_id) for r in fresh if r.deployment_id}
    )
    flows = await _flows(sub, {str(r.flow_id) for r in fresh if r.flow_id})
    for run in fresh:
        run_id = str(run.id)
        sub.begin(run_id)
        dep_id = str(run.deployment_id) if run.deployment_id else None
        deployment = deployments.get(dep_id) if dep_id else None
        gone = dep_id is not None and dep_id in deployments and deployment is None
        flow = flows.get(str(run.flow_id)) if run.flow_id else None
        tg.start_soon(_submit_guarded, sub, limiter, run, deployment, flow, gone)
    return len(fresh)


def _capacity(sub: Submitter) -> int | None:
    """How many more runs may start: spec.limit bounds Jobs in flight, not submissions."""
    if sub.cfg.spec.limit is None:
        return None
    pending, running, _ = sub.table.counts(clock.now())
    return sub.cfg.spec.limit - pending - running - len(sub.in_flight)


async def _read_many(
    client: PrefectPort, kind: str, ids: Iterable[str]
) -> dict[str, dict[str, Any] | None]:
    """Read each deployment once; a missing one maps to None (its runs get cancelled)."""
    out: dict[str, dict[str, Any] | None] = {}
    sem = asyncio.Semaphore(4)

    async def one(i: str) -> None:
        async with sem:
            try:
                out[i] = await client.read_deployment(i)
            except DeploymentNotFound:
                out[i] = None
            except PrefectAPIError as exc:
                log.warning("Reading %s %s failed: %s", kind, i, exc)

    await asyncio.gather(*(one(i) for i in ids))
    return out


async def _flows(sub: Submitter, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Flows rarely change; they are cached for the life of the pool runtime."""
    missing = [i for i in ids if i not in sub.flows]
    for i in missing:
        try:
            sub.flows[i] = await sub.ports.client.read_flow(i)
        except FlowNotFound:
            sub.flows[i] = {"id": i, "name": ""}
        except PrefectAPIError as exc:
            log.warning("Reading flow %s failed: %s", i, exc)
    return {i: sub.flows[i] for i in ids if i in sub.flows}


async def _submit_guarded(
    sub: Submitter,
    limiter: anyio.CapacityLimiter,
    run: FlowRun,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any] | None,
    deployment_gone: bool,
) -> None:
    """Never lets one run's failure escape into the pool's task group."""
    run_id = str(run.id)
    followup = None
    try:
        async with limiter:
            followup = await submit_run(sub, run, deployment, flow, deployment_gone=deployment_gone)
    except Exception:
        log.exception("Unexpected error submitting flow run %s", run_id)
    finally:
        sub.finished(run_id)
    if followup is not None:
        # The submission slot is free again: the next claim does not wait for bookkeeping.
        try:
            async with sub.followup_limiter:
                await write_followup(sub, followup)
        finally:
            sub.table.pid_unqueued(run_id)  # cancelled (lost leadership): the sweep writes it


async def write_followup(sub: Submitter, followup: Followup) -> None:
    """The pid PATCH and the labels PATCH, concurrently. Never raises.

    A pid that cannot be written is left to the recovery sweep, which adopts the Job.
    """
    run_id = followup.flow_run_id

    async def pid() -> None:
        try:
            await sub.ports.writer.record_pid(run_id, followup.pid)
        except PrefectAPIError as exc:
            log.warning("Recording the pid of %s failed (the sweep retries): %s", run_id, exc)
            sub.table.pid_unqueued(run_id)
            return
        sub.table.pid_written(run_id)

    try:
        if followup.labels is None:
            await pid()
        else:
            await asyncio.gather(pid(), sub.ports.writer.labels(run_id, followup.labels))
    except Exception:
        log.exception("Unexpected error recording flow run %s", run_id)


async def submit_run(
    sub: Submitter,
    run: FlowRun,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any] | None,
    *,
    deployment_gone: bool = False,
) -> Followup | None:
    """Claim one run and launch its Job; returns the bookkeeping left to write."""
    run_id = str(run.id)
    if run.deployment_id and deployment is None and not deployment_gone:
        try:  # the poll's read failed transiently; try once more for this run
            deployment = await sub.ports.client.read_deployment(str(run.deployment_id))
        except DeploymentNotFound:
            deployment_gone = True
    if deployment_gone:
        await sub.ports.writer.cancelled(
            run_id, f"Deployment {run.deployment_id} no longer exists, cancelled run."
        )
        return None
    if not sub.ports.kube.availability.ok:
        return None  # the claim gate closed while this run waited for a slot: stay Scheduled
    started = time.monotonic()
    claim = await sub.ports.writer.claim(run_id)
    if not claim.won:
        sub.ports.metrics.runs_claim_lost.inc(
            *sub.cfg.metric_labels, claim.state_name or claim.state_type or "unknown"
        )
        log.debug("Flow run %s not claimed: %s %s", run_id, claim.state_name, claim.reason)
        return None
    sub.ports.counters.submitted += 1
    return await launch(sub, run, deployment, flow, claim_id=claim.claim_id, claimed_at=started)


async def launch(
    sub: Submitter,
    run: FlowRun,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any] | None,
    *,
    claim_id: str | None,
    claimed_at: float | None = None,
    resubmission: bool = False,
) -> Followup | None:
    """Render, check for a cancel, create the Job: three named steps. A failed step marks the
    run Crashed, or leaves it Pending when the infrastructure is at fault.

    Returns the pid (and labels) to record, for the caller to write off the dispatch path.
    """
    started = claimed_at or time.monotonic()
    try:
        rendered = await _step("render", render_for_run(sub, run, deployment, flow, claim_id))
        if await _step("prefect", _cancelled_before_create(sub, str(run.id), resubmission)):
            return None
        job = await _step(
            "kubernetes",
            create_job_with_retry(sub.ports.kube, rendered, sub.cfg.settings.submit_retry_seconds),
        )
    except StepFailed as failed:
        await _submission_failed(sub, run, failed.stage, failed.cause)
        return None
    pid = f"{rendered.namespace}:{job['metadata']['name']}"
    _record_submitted(sub, run, job, started)
    _announce_submitted(sub, run, deployment, flow, pid)
    return Followup(str(run.id), pid, None if resubmission else run_labels(sub))


class StepFailed(Exception):
    """A submission step failed: which one (the metric's and the crash reason's ``stage``)."""

    def __init__(self, stage: str, cause: Exception) -> None:
        super().__init__(f"{stage}: {cause}")
        self.stage = stage
        self.cause = cause


async def _step(stage: str, step: Awaitable[T]) -> T:
    try:
        return await step
    except (RenderError, SubmissionError, KubeError, PrefectAPIError) as exc:
        raise StepFailed(stage, exc) from exc


async def _cancelled_before_create(sub: Submitter, run_id: str, resubmission: bool) -> bool:
    """True (and the run Cancelled) when it was cancelled while being claimed."""
    if not resubmission and await _mark_submitting(sub, run_id):
        return True
    if run_id in sub.cancel_requested:
        await sub.ports.writer.cancelled(run_id, CANCELLED_BEFORE_JOB)
        return True
    return False


async def _submission_failed(sub: Submitter, run: FlowRun, stage: str, exc: Exception) -> None:
    """An infrastructure fault leaves the run Pending (the recovery sweep resubmits it under
    the same claim, so the same Job name); any other failure crashes it."""
    run_id = str(run.id)
    ports = sub.ports
    ports.metrics.submission_failures.inc(*sub.cfg.metric_labels, stage)
    if is_infrastructure_fault(exc):
        log.warning(
            "Flow run %s stays Pending (%s unavailable, the recovery sweep resubmits it "
            "after %ss): %s",
            run_id,
            stage,
            sub.cfg.spec.recovery.pending_grace_seconds,
            exc,
        )
        await ports.event_k8s(
            "Warning", SUBMIT_DEFERRED, f"Flow run {run.name} ({run_id}) left Pending: {exc}"
        )
        return
    message = f"{SUBMIT_FAILED}: {exc}"
    log.warning("Flow run %s: %s", run_id, message)
    ports.run_log(run_id, logging.ERROR, message)
    try:
        await ports.writer.crashed(run_id, message, reason=f"SubmissionFailed:{stage}")
    except PrefectAPIError as exc2:
        log.error("Could not mark flow run %s Crashed: %s", run_id, exc2)
    await ports.event_k8s("Warning", "SubmissionFailed", f"Flow run {run.name} ({run_id}): {exc}")


def _record_submitted(sub: Submitter, run: FlowRun, job: dict[str, Any], started: float) -> None:
    """The table learns the Job now, not when the watch event arrives, so a poll in between
    cannot dispatch the run twice and the limit counts it at once."""
    sub.table.observe_job("ADDED", job)
    sub.table.pid_queued(str(run.id))  # the sweep's (older) snapshot must not PATCH it too
    metrics, labels = sub.ports.metrics, sub.cfg.metric_labels
    metrics.runs_dispatched.inc(*labels)
    metrics.submit_duration.observe(time.monotonic() - started, *labels)
    due = run.next_scheduled_start_time or run.expected_start_time
    if due is not None:
        metrics.dispatch_latency.observe(max((clock.now() - due).total_seconds(), 0.0), *labels)


def _announce_submitted(
    sub: Submitter,
    run: FlowRun,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any] | None,
    pid: str,
) -> None:
    """The worker's log line and events, as BaseWorker sends them."""
    sub.ports.run_log(
        str(run.id), logging.INFO, f"Flow run '{run.name}' submitted to infrastructure as Job {pid}"
    )
    telemetry = sub.ports.telemetry
    if telemetry is not None:
        telemetry.event(
            "prefect.worker.submitted-flow-run",
            related=telemetry.run_related(run.raw, deployment, flow),
        )
        telemetry.event(
            "prefect.worker.executed-flow-run",
            related=telemetry.run_related(run.raw, deployment, flow, pid=pid, status_code=0),
        )


def run_labels(sub: Submitter) -> dict[str, str] | None:
    """The worker labels upstream puts on a flow run (opt-in: spec.worker.runLabels)."""
    if not sub.cfg.spec.worker.run_labels:
        return None
    return {
        "prefect.worker.name": sub.cfg.worker_name,
        "prefect.worker.type": "kubernetes",
        "prefect.work-pool.name": sub.cfg.pool_name,
        "prefect.work-pool.id": sub.synced.pool_id or "",
    }


async def _mark_submitting(sub: Submitter, run_id: str) -> bool:
    """Pending "Submitting" when the pool opts in (best-effort, display only).

    Returns True when the run turned out to be cancelling/cancelled meanwhile (upstream would
    still create the Job; we do not).
    """
    if not sub.cfg.spec.worker.submitting_state:
        return False
    state_type = await sub.ports.writer.submitting(run_id)
    if state_type in ("CANCELLING", "CANCELLED"):
        if state_type == "CANCELLING":
            await sub.ports.writer.cancelled(run_id, CANCELLED_BEFORE_JOB)
        return True
    return False


async def render_for_run(
    sub: Submitter,
    run: FlowRun,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any] | None,
    claim_id: str | None,
) -> RenderedJob:
    """Resolve block/variable references through the API, then render (pure)."""
    template = sub.synced.template
    refs = collect_references(template, deployment, run.raw)
    resolved = await _resolve(sub.ports.client, refs)
    rendered = render_job(
        template,
        deployment=deployment,
        flow=flow or {"id": str(run.flow_id), "name": ""},
        flow_run=run.raw,
        worker=sub.synced.worker_ctx,
        references=resolved,
        claim_id=claim_id,
    )
    refusal = sub.access.refusal(rendered.namespace)
    if refusal is not None:
        raise SubmissionError(refusal.message)
    _decorate(sub, rendered, claim_id, str(run.id))
    return rendered


def routing_labels(sub: Submitter, flow_run_id: str) -> dict[str, str]:
    """The routing labels of one run's Job (rendering.operator_objects.routing_labels)."""
    return operator_objects.routing_labels(
        sub.cfg.settings.instance, sub.cfg.name, flow_run_id, sub.synced.pool_id
    )


def _decorate(sub: Submitter, rendered: RenderedJob, claim_id: str | None, run_id: str) -> None:
    """Operator bookkeeping on the manifest (the pure rendering.operator_objects.decorate_job)."""
    operator_objects.decorate_job(
        rendered.manifest,
        routing=routing_labels(sub, run_id),
        workpool_key=sub.cfg.key,
        claim_id=claim_id,
        pod_watch_timeout=rendered.pod_watch_timeout_seconds,
        job_watch_timeout=rendered.job_watch_timeout_seconds,
        finished_job_ttl=sub.cfg.spec.recovery.finished_job_ttl_seconds,
    )


async def _resolve(client: PrefectPort, refs: Any) -> ResolvedReferences:
    blocks: dict[tuple[str, str], Any] = {}
    block_ids: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    try:
        for slug, name in refs.blocks:
            doc = await client.read_block_document_by_name(slug, name)
            blocks[(slug, name)] = doc.get("data")
        for block_id in refs.block_ids:
            doc = await client.read_block_document(block_id)
            block_ids[block_id] = doc.get("data")
    except BlockDocumentNotFound as exc:
        raise RenderError(f"block reference cannot be resolved: {exc}") from None
    for name in refs.variables:
        value = await client.read_variable_by_name(name)
        if value is not None:
            variables[name] = value
    return ResolvedReferences(blocks=blocks, block_ids=block_ids, variables=variables)


async def create_job_with_retry(
    kube: KubePort, rendered: RenderedJob, retry_seconds: float
) -> dict[str, Any]:
    """``create_job_idempotent``, retried with backoff on infrastructure faults for at most
    ``settings.submit_retry_seconds``; the deterministic name makes every retry safe (a create
    that did land answers 409 and is adopted). A request fault is raised at once."""
    deadline = time.monotonic() + retry_seconds
    delay = 0.5
    while True:
        try:
            return await create_job_idempotent(kube, rendered)
        except KubeError as exc:
            if not exc.transient or time.monotonic() + delay > deadline:
                raise
            log.info("Creating Job %s failed (%s); retrying in %.1fs", rendered.name, exc, delay)
        await anyio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def create_job_idempotent(kube: KubePort, rendered: RenderedJob) -> dict[str, Any]:
    """Create the Job; a 409 on our deterministic name means it exists already: adopt it."""
    for secret in rendered.secrets:
        await kube.create_or_replace_secret(rendered.namespace, secret)
    try:
        job = await kube.create_job(rendered.namespace, rendered.manifest)
    except KubeError as exc:
        if exc.status != 409:
            await _drop_secrets(kube, rendered)  # no Job will own them (as upstream cleans up)
            raise
    else:
        for secret in rendered.secrets:
            await kube.own_secret(rendered.namespace, secret["metadata"]["name"], job)
        return job
    existing = await kube.read_job(rendered.namespace, rendered.name)
    want = (rendered.manifest["metadata"].get("labels") or {}).get(LABEL_FLOW_RUN_ID)
    have = ((existing.get("metadata") or {}).get("labels") or {}).get(LABEL_FLOW_RUN_ID)
    if want != have:
        raise SubmissionError(
            f"a Job named {rendered.name} already exists in {rendered.namespace} for another "
            "flow run"
        )
    for secret in rendered.secrets:  # the replace above dropped the owner: set it again
        await kube.own_secret(rendered.namespace, secret["metadata"]["name"], existing)
    return existing


async def _drop_secrets(kube: KubePort, rendered: RenderedJob) -> None:
    for secret in rendered.secrets:
        try:
            await kube.delete_secret(rendered.namespace, secret["metadata"]["name"])
        except KubeError as exc:
            log.warning(
                "Deleting Secret %s/%s failed: %s",
                rendered.namespace,
                secret["metadata"]["name"],
                exc,
            )

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
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import anyio

from prefect_job_operator import clock
from prefect_job_operator.api.labels import label_value
from prefect_job_operator.api.v1alpha1 import (
    ANNOTATION_CLAIM,
    ANNOTATION_WORKPOOL,
    LABEL_FLOW_RUN_ID,
    LABEL_OPERATOR,
    LABEL_WORK_POOL_ID,
    LABEL_WORKPOOL,
)
from prefect_job_operator.dispatch.runtime import PoolRuntime
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.prefect_api.errors import (
    APIUnreachable,
    BlockDocumentNotFound,
    DeploymentNotFound,
    FlowNotFound,
    PrefectAPIError,
)
from prefect_job_operator.prefect_api.models import FlowRun
from prefect_job_operator.rendering import (
    RenderedJob,
    RenderError,
    ResolvedReferences,
    collect_references,
    render_job,
)
from prefect_job_operator.tracking.runs import (
    ANNOTATION_JOB_WATCH_TIMEOUT,
    ANNOTATION_POD_WATCH_TIMEOUT,
)

log = logging.getLogger(__name__)

SUBMIT_FAILED = "Failed to submit flow run to infrastructure"
SUBMIT_DEFERRED = "SubmissionDeferred"


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
    rt: PoolRuntime, tg: anyio.abc.TaskGroup, limiter: anyio.CapacityLimiter
) -> int:
    """One poll: fetch due runs and start a bounded submission for each; returns how many."""
    spec = rt.spec
    if len(rt.submitting) >= 2 * spec.worker.submit_concurrency:
        # A backlog is still waiting for a submission slot: another poll would only make the
        # server list (and serialise) runs we already hold. Busy is not unhealthy.
        rt.health.last_poll = clock.now()
        return 0
    started = time.monotonic()
    runs = await rt.client.get_scheduled_flow_runs(
        rt.pool_name,
        work_queue_names=spec.work_queues,
        scheduled_before=clock.now() + timedelta(seconds=spec.worker.prefetch_seconds),
    )
    rt.metrics.poll_duration.observe(time.monotonic() - started, *rt.metric_labels)
    rt.health.last_poll = clock.now()
    rt.metrics.last_poll.set(rt.health.last_poll.timestamp(), *rt.metric_labels)
    now = clock.now()
    fresh = [
        r
        for r in runs
        if str(r.id) not in rt.submitting and not rt.table.has_live_job(str(r.id), now)
    ]
    if not fresh:
        return 0
    capacity = _capacity(rt)
    if capacity is not None:
        fresh = fresh[: max(capacity, 0)]
    deployments = await _read_many(
        rt, "deployment", {str(r.deployment_id) for r in fresh if r.deployment_id}
    )
    flows = await _flows(rt, {str(r.flow_id) for r in fresh if r.flow_id})
    for run in fresh:
        run_id = str(run.id)
        rt.submitting.add(run_id)
        dep_id = str(run.deployment_id) if run.deployment_id else None
        deployment = deployments.get(dep_id) if dep_id else None
        gone = dep_id is not None and dep_id in deployments and deployment is None
        flow = flows.get(str(run.flow_id)) if run.flow_id else None
        tg.start_soon(_submit_guarded, rt, limiter, run, deployment, flow, gone)
    return len(fresh)


def _capacity(rt: PoolRuntime) -> int | None:
    """How many more runs may start: spec.limit bounds Jobs in flight, not submissions."""
    if rt.spec.limit is None:
        return None
    pending, running, _ = rt.table.counts(clock.now())
    return rt.spec.limit - pending - running - len(rt.submitting)


async def _read_many(
    rt: PoolRuntime, kind: str, ids: Iterable[str]
) -> dict[str, dict[str, Any] | None]:
    """Read each deployment once; a missing one maps to None (its runs get cancelled)."""
    out: dict[str, dict[str, Any] | None] = {}
    sem = asyncio.Semaphore(4)

    async def one(i: str) -> None:
        async with sem:
            try:
                out[i] = await rt.client.read_deployment(i)
            except DeploymentNotFound:
                out[i] = None
            except PrefectAPIError as exc:
                log.warning("Reading %s %s failed: %s", kind, i, exc)

    await asyncio.gather(*(one(i) for i in ids))
    return out


async def _flows(rt: PoolRuntime, ids: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Flows rarely change; they are cached for the life of the pool runtime."""
    missing = [i for i in ids if i not in rt.flows]
    for i in missing:
        try:
            rt.flows[i] = await rt.client.read_flow(i)
        except FlowNotFound:
            rt.flows[i] = {"id": i, "name": ""}
        except PrefectAPIError as exc:
            log.warning("Reading flow %s failed: %s", i, exc)
    return {i: rt.flows[i] for i in ids if i in rt.flows}


async def _submit_guarded(
    rt: PoolRuntime,
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
            followup = await submit_run(rt, run, deployment, flow, deployment_gone=deployment_gone)
    except Exception:
        log.exception("Unexpected error submitting flow run %s", run_id)
    finally:
        rt.submitting.discard(run_id)
        rt.cancel_requested.discard(run_id)
    if followup is not None:
        # The submission slot is free again: the next claim does not wait for bookkeeping.
        try:
            async with rt.followup_limiter:
                await write_followup(rt, followup)
        finally:
            rt.table.pid_unqueued(run_id)  # cancelled (lost leadership): the sweep writes it


async def write_followup(rt: PoolRuntime, followup: Followup) -> None:
    """The pid PATCH and the labels PATCH, concurrently. Never raises.

    A pid that cannot be written is left to the recovery sweep, which adopts the Job.
    """
    run_id = followup.flow_run_id

    async def pid() -> None:
        try:
            await rt.writer.record_pid(run_id, followup.pid)
        except PrefectAPIError as exc:
            log.warning("Recording the pid of %s failed (the sweep retries): %s", run_id, exc)
            rt.table.pid_unqueued(run_id)
            return
        rt.table.pid_written(run_id)

    try:
        if followup.labels is None:
            await pid()
        else:
            await asyncio.gather(pid(), rt.writer.labels(run_id, followup.labels))
    except Exception:
        log.exception("Unexpected error recording flow run %s", run_id)


async def submit_run(
    rt: PoolRuntime,
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
            deployment = await rt.client.read_deployment(str(run.deployment_id))
        except DeploymentNotFound:
            deployment_gone = True
    if deployment_gone:
        await rt.writer.cancelled(
            run_id, f"Deployment {run.deployment_id} no longer exists, cancelled run."
        )
        return None
    if not rt.kube.availability.ok:
        return None  # the claim gate closed while this run waited for a slot: stay Scheduled
    started = time.monotonic()
    claim = await rt.writer.claim(run_id)
    if not claim.won:
        rt.metrics.runs_claim_lost.inc(
            *rt.metric_labels, claim.state_name or claim.state_type or "unknown"
        )
        log.debug("Flow run %s not claimed: %s %s", run_id, claim.state_name, claim.reason)
        return None
    rt.counters.submitted += 1
    return await launch(rt, run, deployment, flow, claim_id=claim.claim_id, claimed_at=started)


async def launch(
    rt: PoolRuntime,
    run: FlowRun,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any] | None,
    *,
    claim_id: str | None,
    claimed_at: float | None = None,
    resubmission: bool = False,
) -> Followup | None:
    """Render and create the Job; a failure marks the run Crashed.

    Returns the pid (and labels) to record, for the caller to write off the dispatch path.
    """
    run_id = str(run.id)
    started = claimed_at or time.monotonic()
    stage = "render"
    try:
        rendered = await render_for_run(rt, run, deployment, flow, claim_id)
        stage = "prefect"
        if not resubmission and await _mark_submitting(rt, run_id):
            return None
        if run_id in rt.cancel_requested:
            await rt.writer.cancelled(run_id, "Flow run cancelled before its Job was created.")
            return None
        stage = "kubernetes"
        job = await create_job_with_retry(rt, rendered)
    except (RenderError, SubmissionError, KubeError, PrefectAPIError) as exc:
        rt.metrics.submission_failures.inc(*rt.metric_labels, stage)
        if is_infrastructure_fault(exc):
            # Not the run's fault: it stays Pending (claimed, no Job). A retry under the same
            # claim gets the same Job name, so the recovery sweep can resubmit it safely.
            log.warning(
                "Flow run %s stays Pending (%s unavailable, the recovery sweep resubmits it "
                "after %ss): %s",
                run_id,
                stage,
                rt.spec.recovery.pending_grace_seconds,
                exc,
            )
            await rt.event_k8s(
                "Warning", SUBMIT_DEFERRED, f"Flow run {run.name} ({run_id}) left Pending: {exc}"
            )
            return None
        message = f"{SUBMIT_FAILED}: {exc}"
        log.warning("Flow run %s: %s", run_id, message)
        rt.telemetry_log(run_id, logging.ERROR, message)
        try:
            await rt.writer.crashed(run_id, message, reason=f"SubmissionFailed:{stage}")
        except PrefectAPIError as exc2:
            log.error("Could not mark flow run %s Crashed: %s", run_id, exc2)
        await rt.event_k8s("Warning", "SubmissionFailed", f"Flow run {run.name} ({run_id}): {exc}")
        return None
    pid = f"{rendered.namespace}:{job['metadata']['name']}"
    # The table learns the Job now, not when the watch event arrives, so a poll in between
    # cannot dispatch the run twice and the limit counts it at once.
    rt.table.observe_job("ADDED", job)
    rt.table.pid_queued(run_id)  # the sweep's (older) snapshot must not PATCH it too
    rt.metrics.runs_dispatched.inc(*rt.metric_labels)
    rt.metrics.submit_duration.observe(time.monotonic() - started, *rt.metric_labels)
    due = run.next_scheduled_start_time or run.expected_start_time
    if due is not None:
        rt.metrics.dispatch_latency.observe(
            max((clock.now() - due).total_seconds(), 0.0), *rt.metric_labels
        )
    rt.telemetry_log(
        run_id, logging.INFO, f"Flow run '{run.name}' submitted to infrastructure as Job {pid}"
    )
    if rt.telemetry is not None:
        rt.telemetry.event(
            "prefect.worker.submitted-flow-run",
            related=rt.telemetry.run_related(run.raw, deployment, flow),
        )
        rt.telemetry.event(
            "prefect.worker.executed-flow-run",
            related=rt.telemetry.run_related(run.raw, deployment, flow, pid=pid, status_code=0),
        )
    labels = None
    if rt.spec.worker.run_labels and not resubmission:
        labels = {
            "prefect.worker.name": rt.worker_name,
            "prefect.worker.type": "kubernetes",
            "prefect.work-pool.name": rt.pool_name,
            "prefect.work-pool.id": rt.pool_id or "",
        }
    return Followup(run_id, pid, labels)


async def _mark_submitting(rt: PoolRuntime, run_id: str) -> bool:
    """Pending "Submitting" when the pool opts in (best-effort, display only).

    Returns True when the run turned out to be cancelling/cancelled meanwhile (upstream would
    still create the Job; we do not).
    """
    if not rt.spec.worker.submitting_state:
        return False
    state_type = await rt.writer.submitting(run_id)
    if state_type in ("CANCELLING", "CANCELLED"):
        if state_type == "CANCELLING":
            await rt.writer.cancelled(run_id, "Flow run cancelled before its Job was created.")
        return True
    return False


async def render_for_run(
    rt: PoolRuntime,
    run: FlowRun,
    deployment: dict[str, Any] | None,
    flow: dict[str, Any] | None,
    claim_id: str | None,
) -> RenderedJob:
    """Resolve block/variable references through the API, then render (pure)."""
    assert rt.worker_ctx is not None
    template = rt.template
    refs = collect_references(template, deployment, run.raw)
    resolved = await _resolve(rt, refs)
    rendered = render_job(
        template,
        deployment=deployment,
        flow=flow or {"id": str(run.flow_id), "name": ""},
        flow_run=run.raw,
        worker=rt.worker_ctx,
        references=resolved,
        claim_id=claim_id,
    )
    refusal = rt.job_namespace_refusal(rendered.namespace)
    if refusal is not None:
        raise SubmissionError(refusal.message)
    _decorate(rt, rendered, claim_id, str(run.id))
    return rendered


def routing_labels(rt: PoolRuntime, flow_run_id: str) -> dict[str, str]:
    """The labels the operator's watches and tables route by. They are applied after the
    template and the job variables and override them: a Job the operator cannot route is a
    Job it cannot see (docs/compatibility.md)."""
    labels = {
        LABEL_OPERATOR: label_value(rt.settings.instance),
        LABEL_WORKPOOL: label_value(rt.name),
        LABEL_FLOW_RUN_ID: flow_run_id,
    }
    if rt.pool_id:
        labels[LABEL_WORK_POOL_ID] = rt.pool_id
    return labels


def _decorate(rt: PoolRuntime, rendered: RenderedJob, claim_id: str | None, run_id: str) -> None:
    """Operator bookkeeping on the manifest: routing labels, claim, timeouts, default TTL."""
    meta = rendered.manifest.setdefault("metadata", {})
    annotations = meta.setdefault("annotations", {})
    annotations[ANNOTATION_WORKPOOL] = rt.key
    if claim_id:
        annotations[ANNOTATION_CLAIM] = claim_id
    if rendered.pod_watch_timeout_seconds is not None:
        annotations[ANNOTATION_POD_WATCH_TIMEOUT] = str(rendered.pod_watch_timeout_seconds)
    if rendered.job_watch_timeout_seconds is not None:
        annotations[ANNOTATION_JOB_WATCH_TIMEOUT] = str(rendered.job_watch_timeout_seconds)
    routing = routing_labels(rt, run_id)
    meta["labels"] = {**(meta.get("labels") or {}), **routing}
    pod_meta = (
        rendered.manifest.setdefault("spec", {})
        .setdefault("template", {})
        .setdefault("metadata", {})
    )
    pod_meta["labels"] = {**(pod_meta.get("labels") or {}), **routing}
    ttl = rt.spec.recovery.finished_job_ttl_seconds
    spec = rendered.manifest["spec"]
    if ttl is not None and spec.get("ttlSecondsAfterFinished") is None:
        spec["ttlSecondsAfterFinished"] = ttl


async def _resolve(rt: PoolRuntime, refs: Any) -> ResolvedReferences:
    blocks: dict[tuple[str, str], Any] = {}
    block_ids: dict[str, Any] = {}
    variables: dict[str, Any] = {}
    try:
        for slug, name in refs.blocks:
            doc = await rt.client.read_block_document_by_name(slug, name)
            blocks[(slug, name)] = doc.get("data")
        for block_id in refs.block_ids:
            doc = await rt.client.read_block_document(block_id)
            block_ids[block_id] = doc.get("data")
    except BlockDocumentNotFound as exc:
        raise RenderError(f"block reference cannot be resolved: {exc}") from None
    for name in refs.variables:
        value = await rt.client.read_variable_by_name(name)
        if value is not None:
            variables[name] = value
    return ResolvedReferences(blocks=blocks, block_ids=block_ids, variables=variables)


async def create_job_with_retry(rt: PoolRuntime, rendered: RenderedJob) -> dict[str, Any]:
    """``create_job_idempotent``, retried with backoff on infrastructure faults for at most
    ``settings.submit_retry_seconds``; the deterministic name makes every retry safe (a create
    that did land answers 409 and is adopted). A request fault is raised at once."""
    deadline = time.monotonic() + rt.settings.submit_retry_seconds
    delay = 0.5
    while True:
        try:
            return await create_job_idempotent(rt, rendered)
        except KubeError as exc:
            if not exc.transient or time.monotonic() + delay > deadline:
                raise
            log.info("Creating Job %s failed (%s); retrying in %.1fs", rendered.name, exc, delay)
        await anyio.sleep(delay)
        delay = min(delay * 2, 5.0)


async def create_job_idempotent(rt: PoolRuntime, rendered: RenderedJob) -> dict[str, Any]:
    """Create the Job; a 409 on our deterministic name means it exists already: adopt it."""
    for secret in rendered.secrets:
        await rt.kube.create_or_replace_secret(rendered.namespace, secret)
    try:
        job = await rt.kube.create_job(rendered.namespace, rendered.manifest)
    except KubeError as exc:
        if exc.status != 409:
            await _drop_secrets(rt, rendered)  # no Job will own them (as upstream cleans up)
            raise
    else:
        for secret in rendered.secrets:
            await rt.kube.own_secret(rendered.namespace, secret["metadata"]["name"], job)
        return job
    existing = await rt.kube.read_job(rendered.namespace, rendered.name)
    want = (rendered.manifest["metadata"].get("labels") or {}).get("prefect.io/flow-run-id")
    have = ((existing.get("metadata") or {}).get("labels") or {}).get("prefect.io/flow-run-id")
    if want != have:
        raise SubmissionError(
            f"a Job named {rendered.name} already exists in {rendered.namespace} for another "
            "flow run"
        )
    for secret in rendered.secrets:  # the replace above dropped the owner: set it again
        await rt.kube.own_secret(rendered.namespace, secret["metadata"]["name"], existing)
    return existing


async def _drop_secrets(rt: PoolRuntime, rendered: RenderedJob) -> None:
    for secret in rendered.secrets:
        try:
            await rt.kube.delete_secret(rendered.namespace, secret["metadata"]["name"])
        except KubeError as exc:
            log.warning(
                "Deleting Secret %s/%s failed: %s",
                rendered.namespace,
                secret["metadata"]["name"],
                exc,
            )

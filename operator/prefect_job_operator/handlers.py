"""kopf glue only: settings at startup, one daemon per WorkPool, the Job and Pod watches.

Every decision lives in dispatch/, tracking/ and writeback/; these functions translate
kopf's calling convention and nothing more.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable
from typing import Any

import kopf

from prefect_job_operator import clock
from prefect_job_operator.api import conditions as c
from prefect_job_operator.api.labels import label_value
from prefect_job_operator.api.v1alpha1 import (
    GROUP,
    LABEL_OPERATOR,
    PLURAL,
    VERSION,
    InvalidSpecError,
    WorkPoolSpec,
)
from prefect_job_operator.dispatch.worker import run_pool, write_status
from prefect_job_operator.pool_factory import PolicyRefusal, bind_pool_id, build_runtime
from prefect_job_operator.prefect_api.errors import PrefectAPIError, WorkPoolNotFound
from prefect_job_operator.registry import OperatorContext
from prefect_job_operator.security.admission import ReviewFailed, review_workpool
from prefect_job_operator.writeback.cr_status import status_patch
from prefect_job_operator.writeback.outcomes import PoolReport

log = logging.getLogger(__name__)
FINALIZER = "prefect-job-operator.dev/finalizer"
WEBHOOK_ID = "validate-workpool"
"""kopf serves the handler at ``/<id>``: the chart's ValidatingWebhookConfiguration path."""


WATCH_ONLY_KINDS = frozenset({"Job", "Pod"})
"""Kinds the operator only watches (``kopf.on.event``): no change handlers, no diff."""


class WatchOnlyDiffBase(kopf.AnnotationsDiffBaseStorage):
    """kopf builds every event's "essence" (a deep copy of the object) to detect changes,
    also for kinds with event handlers only. Jobs and Pods skip it: profiled, it was about a
    tenth of the operator's CPU in a 1000-run burst (two or more events per Job and Pod)."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        if body.get("kind") in WATCH_ONLY_KINDS:
            return kopf.BodyEssence()
        return super().build(body=body, extra_fields=extra_fields)


def configure(
    settings: kopf.OperatorSettings, instance: str, workpool_selector: str | None = None
) -> None:
    """kopf settings: standalone (our Leases do HA), server-side label selectors."""
    if workpool_selector:  # shard WorkPools between operator installs, filtered by the API
        settings.watching.label_selectors[GROUP, VERSION, PLURAL] = workpool_selector
    # kopf's peering would pause every replica but one; our per-pool Leases already decide
    # who dispatches, so all replicas keep watching (and take over within a lease duration).
    settings.peering.standalone = True
    settings.persistence.finalizer = FINALIZER  # our own name: kubectl shows whose it is
    # Jobs and Pods are only watched: kopf's change detection (a deep copy per event) is skipped.
    settings.persistence.diffbase_storage = WatchOnlyDiffBase()
    # Watch only this install's Jobs and Pods, filtered by the API server, not in memory:
    # a cluster with thousands of foreign Pods costs nothing.
    selector = f"{LABEL_OPERATOR}={label_value(instance)}"
    settings.watching.label_selectors["batch", "v1", "jobs"] = selector
    settings.watching.label_selectors["v1", "pods"] = selector
    # Reconnect each watch every 5 min (server side) so a silently dead TCP stream is
    # noticed; the client timeout is longer so the server, not us, ends a healthy stream.
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    # One API request (patch, list) may not hang longer than a minute (default 5 min):
    # a stuck status patch must not freeze a pool's handler.
    settings.networking.request_timeout = 60
    # Only warnings and errors become k8s Events (default: INFO): our own EventSink posts
    # the meaningful ones, aggregated, and kopf's per-handler INFO lines would flood etcd.
    settings.posting.level = logging.WARNING
    # At most 200 objects processed concurrently (default: unlimited): a burst of Pod
    # events from a big fan-out queues instead of spawning thousands of tasks.
    settings.queueing.worker_limit = 200
    # A deleted WorkPool's daemon stops in about a second (lease release, last events);
    # without this kopf re-checks it only after cancellation_timeout (15 s of deletion).
    settings.background.instant_exit_timeout = 5.0


@kopf.on.startup()
async def startup(settings: kopf.OperatorSettings, memo: OperatorContext, **_: Any) -> None:
    configure(settings, memo.settings.instance, memo.settings.workpool_selector)
    memo.kopf_started = True


@kopf.daemon(GROUP, VERSION, PLURAL, cancellation_timeout=15, id="dispatch")
async def workpool_daemon(
    body: kopf.Body, stopped: kopf.DaemonStopped, memo: OperatorContext, **_: Any
) -> None:
    """Run the pool while the CR exists; rebuild it when the spec generation changes."""
    ctx = memo
    try:
        while not stopped:
            await _run_generation(ctx, body, stopped)
    finally:  # kopf cancels a deleted resource's daemon right after signalling it
        deleted = kopf.DaemonStoppingReason.RESOURCE_DELETED
        if stopped.reason is not None and stopped.reason & deleted:
            meta = body.get("metadata", {})
            ctx.metrics.forget_pool(str(meta.get("namespace")), str(meta.get("name")))


async def _run_generation(
    ctx: OperatorContext, body: kopf.Body, stopped: kopf.DaemonStopped
) -> None:
    """Run one generation of the spec until it changes, the daemon stops or the run fails."""
    generation = body.get("metadata", {}).get("generation")
    try:
        rt = await build_runtime(ctx, body)
    except InvalidSpecError as exc:
        reason = exc.reason if isinstance(exc, PolicyRefusal) else c.REASON_INVALID_SPEC
        await _report_invalid(ctx, body, str(exc), reason)
        # a spec change fixes it, or a Secret that appears later: look again in a while
        await _wait_for_change(body, generation, stopped, give_up_after=30)
        return
    task = asyncio.create_task(run_pool(rt, lambda r: bind_pool_id(ctx, r)))
    try:
        await _wait_for_change(body, generation, stopped, task)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        ctx.unregister(rt)
        await rt.ports.client.aclose()
    if task.done() and not task.cancelled() and task.exception() is not None:
        log.error("WorkPool %s dispatcher failed: %r; restarting", rt.key, task.exception())
        await asyncio.sleep(5)


async def _wait_for_change(
    body: kopf.Body,
    generation: Any,
    stopped: kopf.DaemonStopped,
    task: asyncio.Task[Any] | None = None,
    give_up_after: float | None = None,
) -> None:
    waited = 0.0
    while not stopped and body.get("metadata", {}).get("generation") == generation:
        if task is not None and task.done():
            return
        if give_up_after is not None and waited >= give_up_after:
            return
        waited += 1.0
        await stopped.wait(1.0)  # wakes at once on deletion


async def _report_invalid(
    ctx: OperatorContext, body: kopf.Body, message: str, reason: str = c.REASON_INVALID_SPEC
) -> None:
    meta = body.get("metadata", {})
    patch = status_patch(
        PoolReport(invalid_spec=message, invalid_reason=reason),
        previous=body.get("status") or {},
        generation=int(meta.get("generation") or 0),
        now=clock.now(),
    )
    await ctx.events.post(dict(body), "Warning", reason, message)
    try:
        await ctx.kube.patch_status(GROUP, VERSION, PLURAL, meta["namespace"], meta["name"], patch)
    except Exception as exc:
        log.warning("Writing the status of %s failed: %s", meta.get("name"), exc)


@kopf.on.delete(GROUP, VERSION, PLURAL, id="deletion-policy")
async def workpool_delete(body: kopf.Body, memo: OperatorContext, **_: Any) -> None:
    """Retain (default) leaves the Prefect pool; Delete removes it."""
    try:
        spec = WorkPoolSpec.from_cr(body)
        if spec.deletion_policy != "Delete":
            return
        rt = await build_runtime(memo, body)
    except InvalidSpecError:
        return  # nothing was ever created from an invalid spec
    try:
        await rt.ports.client.delete_work_pool(spec.resolved_pool_name)
    except WorkPoolNotFound:
        pass
    except PrefectAPIError as exc:
        raise kopf.TemporaryError(f"Deleting the Prefect pool failed: {exc}", delay=10) from exc
    finally:
        await rt.ports.client.aclose()


async def validate_workpool(
    body: kopf.Body, userinfo: kopf.UserInfo, memo: Any, **kwargs: Any
) -> None:
    """Admission: the author must hold every permission the WorkPool makes the operator use."""
    ctx: OperatorContext = memo
    try:
        message = await review_workpool(ctx.kube, body, kwargs.get("old"), userinfo)
    except ReviewFailed as exc:
        raise kopf.AdmissionError(f"WorkPool not admitted: {exc}", code=500) from None
    if message is not None:
        raise kopf.AdmissionError(message, code=403)


def enable_admission(
    settings: kopf.OperatorSettings, *, host: str, port: int, cert_dir: str
) -> None:
    """Serve `validate_workpool` over HTTPS; the chart owns the webhook configuration."""
    settings.admission.server = kopf.WebhookServer(
        addr=host, port=port, certfile=f"{cert_dir}/tls.crt", pkeyfile=f"{cert_dir}/tls.key"
    )
    settings.admission.managed = None
    kopf.on.validate(
        GROUP, VERSION, PLURAL, id=WEBHOOK_ID, operations=["CREATE", "UPDATE"], side_effects=False
    )(validate_workpool)


@kopf.on.event("batch", "v1", "jobs")
async def job_event(event: kopf.RawEvent, memo: OperatorContext, **_: Any) -> None:
    await memo.on_job(event.get("type"), event["object"])


@kopf.on.event("v1", "pods")
async def pod_event(event: kopf.RawEvent, memo: OperatorContext, **_: Any) -> None:
    await memo.on_pod(event.get("type"), event["object"])


__all__ = ["configure", "enable_admission", "write_status"]

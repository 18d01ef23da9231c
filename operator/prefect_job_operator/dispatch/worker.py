"""The lifecycle of one WorkPool on this replica: lease, sync, heartbeat, poll, sweep, status.

Everything runs in one anyio task group per leadership term; losing the Lease or a stop
request cancels the whole group, so no loop outlives the right to act.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio

from prefect_job_operator import clock
from prefect_job_operator.api import conditions as c
from prefect_job_operator.api.job_namespaces import ALL, forbidden_message, namespace_report
from prefect_job_operator.api.labels import label_value
from prefect_job_operator.api.v1alpha1 import (
    GROUP,
    LABEL_OPERATOR,
    LABEL_WORK_POOL_ID,
    PLURAL,
    UNLIMITED,
    VERSION,
)
from prefect_job_operator.dispatch import sweep
from prefect_job_operator.dispatch.runtime import (
    POLL_STALE_FACTOR,
    LoopProgress,
    PoolRuntime,
    poll_is_stale,
)
from prefect_job_operator.dispatch.submit import poll_once
from prefect_job_operator.dispatch.sync import SyncProblem, heartbeat, sync_pool
from prefect_job_operator.dispatch.telemetry import Telemetry
from prefect_job_operator.kube.client import KubeError
from prefect_job_operator.kube.leases import PoolLease
from prefect_job_operator.prefect_api.errors import (
    APIUnreachable,
    PrefectAPIError,
    Unauthorized,
    WorkPoolNotFound,
    WorkQueueNotFound,
)
from prefect_job_operator.rendering import default_job_namespace
from prefect_job_operator.tracking.runs import InfrastructurePending
from prefect_job_operator.writeback.cr_status import status_patch
from prefect_job_operator.writeback.outcomes import PoolReport, RunCounts

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    pass


async def note_api_error(rt: PoolRuntime, exc: Exception) -> None:
    """Fold an API failure into the APIReachable facet; losing the API is an Event and
    the ``prefect_api_up`` gauge (whichever loop notices first)."""
    was = rt.health.api_reachable
    if isinstance(exc, Unauthorized):
        rt.health.api_reachable, rt.health.api_error = False, f"Unauthorized: {exc}"
    elif isinstance(exc, APIUnreachable) or (
        isinstance(exc, PrefectAPIError) and (exc.status is None or exc.status >= 500)
    ):
        rt.health.api_reachable, rt.health.api_error = False, str(exc)
    rt.metrics.api_errors.inc(*rt.metric_labels, type(exc).__name__)
    if rt.health.api_reachable is False:
        rt.metrics.api_up.set(0.0, *rt.metric_labels)
        if was is not False:
            reason = "Unauthorized" if isinstance(exc, Unauthorized) else "APIUnreachable"
            await rt.event_k8s("Warning", reason, str(exc))


async def note_api_ok(rt: PoolRuntime) -> None:
    if rt.health.api_reachable is False:
        log.info("Prefect API reachable again for %s", rt.key)
        await rt.event_k8s("Normal", "APIReachable", "The Prefect API answers again.")
    rt.health.api_reachable, rt.health.api_error = True, None
    rt.metrics.api_up.set(1.0, *rt.metric_labels)


def live_pause_and_limit(pool: Mapping[str, Any]) -> tuple[bool | None, int | str | None]:
    """The Prefect pool's pause and limit as the status shows them (None: not read yet)."""
    if not pool.get("id"):
        return None, None
    limit = pool.get("concurrency_limit")
    return bool(pool.get("is_paused")), UNLIMITED if limit is None else int(limit)


def report(rt: PoolRuntime) -> PoolReport:
    now = clock.now()
    pending, running, oldest = rt.table.counts(now)
    pending += len(rt.submitting)
    h = rt.health
    polling_ok = h.polling_ok
    poll_reason, poll_error = h.poll_reason, h.poll_error
    if not h.leader:
        polling_ok, poll_reason = False, c.REASON_NOT_LEADER
        poll_error = f"Another replica ({h.lease_holder}) holds this pool's Lease."
    elif h.loop_errors:
        polling_ok, poll_reason = False, c.REASON_LOOP_FAILED
        poll_error = "; ".join(h.loop_errors[k] for k in sorted(h.loop_errors))[:1000]
    elif polling_ok and poll_is_stale(h.last_poll, rt.spec.worker.poll_interval_seconds, now):
        limit = rt.spec.worker.poll_interval_seconds * POLL_STALE_FACTOR
        polling_ok, poll_reason = False, c.REASON_STALE
        poll_error = f"No successful poll for more than {limit}s."
    api_reason = None
    if h.api_reachable is False:
        api_reason = (
            c.REASON_UNAUTHORIZED
            if (h.api_error or "").startswith("Unauthorized")
            else c.REASON_UNREACHABLE
        )
    paused, live_limit = live_pause_and_limit(rt.pool)
    return PoolReport(
        pool_id=rt.pool_id,
        pool_paused=paused,
        pool_concurrency_limit=live_limit,
        pool_name=rt.pool_name,
        pool_type=rt.spec.type,
        worker_name=rt.worker_name,
        lease_holder=h.lease_holder,
        api_reachable=h.api_reachable,
        api_error=h.api_error,
        api_reason=api_reason,
        pool_synced=h.pool_synced,
        sync_error=h.sync_error,
        sync_reason=h.sync_reason,
        polling_ok=polling_ok,
        poll_error=poll_error,
        poll_reason=poll_reason,
        last_poll_time=h.last_poll,
        last_heartbeat_time=h.last_heartbeat,
        counts=RunCounts(
            pending=pending,
            running=running,
            submitted=rt.counters.submitted,
            crashed=rt.counters.crashed,
            cancelled=rt.counters.cancelled,
        ),
        oldest_pending_since=oldest,
        invalid_spec=rt.invalid_spec,
        job_namespaces=h.namespaces,
    )


async def write_status(rt: PoolRuntime) -> None:
    rep = report(rt)
    patch = status_patch(
        rep, previous=rt.body.get("status") or {}, generation=rt.generation, now=clock.now()
    )
    rt.metrics.runs_by_state.set(rep.counts.pending, *rt.metric_labels, "pending")
    rt.metrics.runs_by_state.set(rep.counts.running, *rt.metric_labels, "running")
    ready: dict[str, Any] = next((x for x in patch["conditions"] if x["type"] == c.READY), {})
    rt.metrics.pool_ready.set(1.0 if ready.get("status") == "True" else 0.0, *rt.metric_labels)
    try:
        await rt.kube.patch_status(GROUP, VERSION, PLURAL, rt.namespace, rt.name, patch)
    except KubeError as exc:
        log.warning("Writing the status of WorkPool %s failed: %s", rt.key, exc)


async def _every(
    seconds: float,
    fn: Callable[[], Awaitable[Any]],
    name: str,
    progress: LoopProgress | None = None,
    rt: PoolRuntime | None = None,
) -> None:
    """Call fn forever at a fixed interval; one failure never ends the loop. Each finished
    iteration, failed or not, is progress (the liveness rule reads it); an unexpected error
    shows on the pool's Polling condition until that loop succeeds again."""
    if progress is not None:
        progress.mark(name, seconds, time.monotonic())
    while True:
        started = time.monotonic()
        try:
            await fn()
        except (LeadershipLost, anyio.get_cancelled_exc_class()):
            raise
        except Exception as exc:
            log.exception("The %s loop failed; it continues", name)
            if rt is not None:
                rt.health.loop_errors[name] = f"The {name} loop failed: {type(exc).__name__}: {exc}"
        else:
            if rt is not None:
                rt.health.loop_errors.pop(name, None)
        if progress is not None:
            progress.mark(name, seconds, time.monotonic())
        await anyio.sleep(max(0.0, seconds - (time.monotonic() - started)))


async def _sync_and_heartbeat(
    rt: PoolRuntime, registry_hook: Callable[[PoolRuntime], None]
) -> None:
    try:
        changes = await sync_pool(rt)
        await note_api_ok(rt)
        if rt.health.pool_synced is not True or changes:
            await rt.event_k8s(
                "Normal",
                "PoolSynced",
                f'Prefect work pool "{rt.pool_name}" synced'
                + (f": {'; '.join(changes)}" if changes else ""),
            )
        rt.health.pool_synced, rt.health.sync_reason, rt.health.sync_error = (
            True,
            c.REASON_SYNCED,
            None,
        )
        registry_hook(rt)
        if not rt.seeded:
            await seed_table(rt)
            rt.seeded = True
        elif rt.forbidden:  # a Role granted since: adopt that namespace's Jobs
            await seed_table(rt, [None if k == ALL else k for k in rt.forbidden])
        await check_namespaces(rt)
        await heartbeat(rt)
        rt.health.last_heartbeat = clock.now()
    except KubeError as exc:
        log.warning("Listing the existing Jobs of %s failed (retrying): %s", rt.key, exc)
    except SyncProblem as exc:
        if rt.health.sync_error != exc.message:
            await rt.event_k8s("Warning", exc.reason, exc.message)
        rt.health.pool_synced, rt.health.sync_reason, rt.health.sync_error = (
            False,
            exc.reason,
            exc.message,
        )
        await note_api_ok(rt)
    except PrefectAPIError as exc:
        await note_api_error(rt, exc)
        if isinstance(exc, Unauthorized):
            rt.health.pool_synced, rt.health.sync_reason = False, c.REASON_UNAUTHORIZED
            rt.health.sync_error = str(exc)


def lease_name(rt: PoolRuntime) -> str:
    return f"prefect-job-operator.{rt.name}"[:253]


async def kubernetes_available(rt: PoolRuntime) -> bool:
    """The claim gate: no run is claimed while the Kubernetes API is failing.

    During an outage each poll tick probes it with one cheap read (this pool's Lease: it
    needs etcd, as a Job create does); any answer reopens the gate.
    """
    availability = rt.kube.availability
    if availability.ok:
        return True
    with anyio.move_on_after(5), contextlib.suppress(KubeError):
        await rt.kube.read_lease(rt.namespace, lease_name(rt))
    if availability.ok:
        log.info("Kubernetes API answers again; %s claims runs again", rt.key)
        return True
    rt.health.polling_ok, rt.health.poll_reason = False, c.REASON_KUBERNETES_UNAVAILABLE
    rt.health.poll_error = (
        f"Not claiming flow runs while the Kubernetes API fails: {availability.last_error}"
    )
    return False


async def _poll(rt: PoolRuntime, tg: anyio.abc.TaskGroup, limiter: anyio.CapacityLimiter) -> None:
    if rt.health.pool_synced is not True or not rt.seeded:
        return
    if not await kubernetes_available(rt):
        return
    try:
        await poll_once(rt, tg, limiter)
        await note_api_ok(rt)
        rt.health.polling_ok, rt.health.poll_reason, rt.health.poll_error = (
            True,
            c.REASON_POLLING,
            None,
        )
    except WorkQueueNotFound as exc:
        if rt.health.poll_reason != c.REASON_QUEUE_NOT_FOUND:
            await rt.event_k8s("Warning", c.REASON_QUEUE_NOT_FOUND, str(exc))
        rt.health.polling_ok, rt.health.poll_reason, rt.health.poll_error = (
            False,
            c.REASON_QUEUE_NOT_FOUND,
            str(exc),
        )
    except WorkPoolNotFound as exc:
        rt.health.pool_synced, rt.health.sync_reason, rt.health.sync_error = (
            False,
            c.REASON_POOL_NOT_FOUND,
            str(exc),
        )
    except PrefectAPIError as exc:
        await note_api_error(rt, exc)
        rt.health.polling_ok, rt.health.poll_reason, rt.health.poll_error = (
            False,
            c.REASON_POLL_FAILED,
            str(exc),
        )


MAX_DEFERRED_RECOVERY_SWEEPS = 10


def recovery_sweep_due(rt: PoolRuntime, now: float) -> bool:
    """Whether the (expensive) Pending/Running listings run on this sweep tick; a yes is
    recorded as the last recovery sweep, a no under a backlog as one more deferral.

    The first tick of a leadership term always runs them (that is what recovers a crash).
    After that they run every ``recovery_sweep_interval_seconds``, but not while every
    submission slot is taken (a burst): those listings would compete with the claims for the
    server, and a run being dispatched now is not an orphan. A sustained burst defers them at
    most ``MAX_DEFERRED_RECOVERY_SWEEPS`` times in a row. (Polls, in ``submit.poll_once``,
    stop later: at twice the slots, so the slots stay fed.)
    """
    last = rt.last_recovery_sweep
    if last is not None and now - last < rt.settings.recovery_sweep_interval_seconds:
        return False
    busy = len(rt.submitting) >= rt.spec.worker.submit_concurrency  # every slot taken
    if last is not None and busy and rt.recovery_sweeps_deferred < MAX_DEFERRED_RECOVERY_SWEEPS:
        rt.recovery_sweeps_deferred += 1
        return False
    rt.last_recovery_sweep, rt.recovery_sweeps_deferred = now, 0
    return True


async def _sweep(rt: PoolRuntime, tick: list[int]) -> None:
    if rt.health.pool_synced is not True or not rt.seeded:
        return
    tick[0] += 1
    try:
        await sweep.sweep_cancelling(rt)
        if recovery_sweep_due(rt, time.monotonic()):
            await sweep.sweep_pending(rt)
            await sweep.sweep_running(rt)
        if tick[0] % 6 == 1:
            await sweep.sweep_final_with_jobs(rt)
            rt.table.forget_finished(clock.now())
    except PrefectAPIError as exc:
        await note_api_error(rt, exc)


async def seed_table(rt: PoolRuntime, namespaces: list[str | None] | None = None) -> None:
    """Learn every existing Job and pod of this pool before acting (restart safety).

    Namespace by namespace: one the operator may not list (403) goes to ``rt.forbidden``
    (reported on JobNamespaces, refused for submissions, retried at each heartbeat) and the
    pool goes on in the others. Any other error propagates: the whole seed is retried.
    """
    if not rt.pool_id:
        return
    instance = label_value(rt.settings.instance)
    selector = f"{LABEL_OPERATOR}={instance},{LABEL_WORK_POOL_ID}={rt.pool_id}"
    if namespaces is None:
        watched = rt.watched_namespaces()
        namespaces = [None] if watched is None else list(watched)
    actions = []
    adopted = 0
    for ns in namespaces:
        resource = "jobs.batch"
        try:
            jobs = await rt.kube.list_jobs(None if ns is None else [ns], selector)
            resource = "pods"
            pods = []
            for pod_ns in sorted({j["metadata"]["namespace"] for j in jobs}):
                pods += await rt.kube.list_pods(pod_ns, selector)
        except KubeError as exc:
            if exc.status != 403:
                raise
            if (ns or ALL) not in rt.forbidden:
                log.warning("WorkPool %s: no permission in %s: %s", rt.key, ns or "*", exc)
            rt.forbidden[ns or ALL] = forbidden_message("list", resource, ns)
            continue
        rt.forbidden.pop(ns or ALL, None)
        for job in jobs:
            actions += rt.table.observe_job(None, job)
        for pod in pods:
            actions += rt.table.observe_pod(None, pod)
        adopted += len(jobs)
    log.info("WorkPool %s: adopted %d existing Jobs", rt.key, adopted)
    await sweep.apply_actions(rt, [a for a in actions if not isinstance(a, InfrastructurePending)])


async def check_namespaces(rt: PoolRuntime) -> None:
    """The JobNamespaces condition (reconcile time), with an Event per refusal when it changes."""
    template_ns = default_job_namespace(rt.template) if rt.template else None
    result = namespace_report(rt.namespace_scope(), template_ns)
    previous, rt.health.namespaces = rt.health.namespaces, result
    if previous is not None and previous.message == result.message:
        return
    for refusal in result.refusals:
        await rt.event_k8s("Warning", refusal.reason, refusal.message)
    if result.ok and previous is not None and not previous.ok:
        await rt.event_k8s("Normal", result.reason, result.message)


async def lead(
    rt: PoolRuntime, lease: PoolLease, registry_hook: Callable[[PoolRuntime], None]
) -> None:
    """One leadership term: returns (or raises LeadershipLost) when the lease is gone."""
    w = rt.spec.worker
    rt.telemetry = Telemetry(rt.client, worker_name=rt.worker_name, pool=rt.pool)
    rt.telemetry.enabled = w.emit_events
    rt.telemetry.pod_events_enabled = w.pod_events
    limiter = anyio.CapacityLimiter(w.submit_concurrency)
    rt.last_recovery_sweep = None  # a new term starts with a recovery sweep
    rt.table.new_term()
    tick = [0]
    started: list[str] = []

    async def renew() -> None:
        if not await lease.renew():
            raise LeadershipLost()

    async def sync_and_heartbeat() -> None:
        # The first sync runs inside the term, beside the lease renewals: a slow first sync
        # must neither cost the lease nor run on a lease that expired meanwhile.
        await _sync_and_heartbeat(rt, registry_hook)
        if not started and rt.pool and rt.telemetry is not None:
            rt.telemetry.pool = rt.pool
            started.append(rt.telemetry.event("prefect.worker.started"))

    loops = rt.loops
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_every, lease.retry_period, renew, "lease", loops)
            tg.start_soon(
                _every,
                w.heartbeat_interval_seconds,
                sync_and_heartbeat,
                "heartbeat",
                loops,
                rt,
            )
            tg.start_soon(
                _every, w.poll_interval_seconds, lambda: _poll(rt, tg, limiter), "poll", loops, rt
            )
            tg.start_soon(
                _every,
                rt.settings.sweep_interval_seconds,
                lambda: _sweep(rt, tick),
                "sweep",
                loops,
                rt,
            )
            tg.start_soon(
                _every,
                1.0,
                lambda: sweep.apply_actions(rt, rt.table.check_deadlines(clock.now())),
                "deadlines",
                loops,
                rt,
            )
            tg.start_soon(
                _every,
                rt.settings.status_interval_seconds,
                lambda: write_status(rt),
                "status",
                loops,
            )
            assert rt.telemetry is not None
            tg.start_soon(rt.telemetry.flush_forever)
    finally:
        loops.clear()  # a standby has no loops to judge
        with anyio.CancelScope(shield=True):
            if rt.telemetry is not None:
                rt.telemetry.event(
                    "prefect.worker.stopped", follows=started[0] if started else None
                )
                with anyio.move_on_after(5):
                    await rt.telemetry.flush()


async def run_pool(
    rt: PoolRuntime,
    registry_hook: Callable[[PoolRuntime], None],
) -> None:
    """Compete for the pool's Lease forever; lead while holding it."""
    identity = rt.settings.identity or _hostname()
    lease = PoolLease(
        rt.kube,
        rt.namespace,
        lease_name(rt),
        identity,
        rt.settings.lease_duration_seconds,
    )
    try:
        while True:
            try:
                held = await lease.try_acquire()
            except KubeError as exc:
                log.warning("Lease of %s: %s", rt.key, exc)
                held = False
            rt.health.leader, rt.health.lease_holder = held, lease.holder
            rt.metrics.leader.set(1.0 if held else 0.0, *rt.metric_labels)
            if not held:  # the leader owns the status; a standby stays silent
                await anyio.sleep(lease.retry_period)
                continue
            log.info("WorkPool %s: this replica (%s) leads", rt.key, identity)
            await rt.event_k8s("Normal", "Leading", f"Replica {identity} dispatches this pool")
            try:
                await lead(rt, lease, registry_hook)
            except* LeadershipLost:
                log.warning("WorkPool %s: lease lost; stopping dispatch", rt.key)
                rt.health.leader = False
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await lease.release()
            rt.health.leader = False


def _hostname() -> str:
    import socket

    return socket.gethostname()

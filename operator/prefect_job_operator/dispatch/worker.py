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
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.runtime import Health, LoopProgress, PoolConfig, Ports
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
from prefect_job_operator.writeback.cr_status import status_due, status_patch
from prefect_job_operator.writeback.outcomes import Condition, PoolReport, RunCounts

log = logging.getLogger(__name__)


class LeadershipLost(Exception):
    pass


async def note_api_error(health: Health, ports: Ports, exc: Exception) -> None:
    """Fold an API failure into the APIReachable condition; losing the API is an Event and
    the ``prefect_api_up`` gauge (whichever loop notices first)."""
    was = health.api.ok
    if isinstance(exc, Unauthorized):
        health.api = Condition(False, c.REASON_UNAUTHORIZED, f"Unauthorized: {exc}")
    elif isinstance(exc, APIUnreachable) or (
        isinstance(exc, PrefectAPIError) and (exc.status is None or exc.status >= 500)
    ):
        health.api = Condition(False, c.REASON_UNREACHABLE, str(exc))
    ports.metrics.api_errors.inc(*ports.labels, type(exc).__name__)
    if health.api.ok is False:
        ports.metrics.api_up.set(0.0, *ports.labels)
        if was is not False:
            reason = "Unauthorized" if isinstance(exc, Unauthorized) else "APIUnreachable"
            await ports.event_k8s("Warning", reason, str(exc))


async def note_api_ok(health: Health, ports: Ports) -> None:
    if health.api.ok is False:
        log.info("Prefect API reachable again for %s", ports.cfg.key)
        await ports.event_k8s("Normal", "APIReachable", "The Prefect API answers again.")
    health.api = Condition(True)
    ports.metrics.api_up.set(1.0, *ports.labels)


def live_pause_and_limit(pool: Mapping[str, Any]) -> tuple[bool | None, int | str | None]:
    """The Prefect pool's pause and limit as the status shows them (None: not read yet)."""
    if not pool.get("id"):
        return None, None
    limit = pool.get("concurrency_limit")
    return bool(pool.get("is_paused")), UNLIMITED if limit is None else int(limit)


def report(pool: Pool) -> PoolReport:
    """What this cycle found out, for the CR status (pure over the pool's state)."""
    now = clock.now()
    cfg, h = pool.cfg, pool.health
    pending, running, oldest = pool.table.counts(now)
    counters = pool.ports.counters
    paused, live_limit = live_pause_and_limit(pool.synced.pool)
    return PoolReport(
        pool_id=pool.pool_id,
        pool_paused=paused,
        pool_concurrency_limit=live_limit,
        pool_name=cfg.pool_name,
        pool_type=cfg.spec.type,
        worker_name=cfg.worker_name,
        lease_holder=h.lease_holder,
        api=h.api,
        sync=h.sync,
        poll=h.polling(cfg.spec.worker.poll_interval_seconds, now),
        last_poll_time=h.last_poll,
        last_heartbeat_time=h.last_heartbeat,
        counts=RunCounts(
            pending=pending + len(pool.submitter.in_flight),
            running=running,
            submitted=counters.submitted,
            crashed=counters.crashed,
            cancelled=counters.cancelled,
        ),
        oldest_pending_since=oldest,
        job_namespaces=h.namespaces,
    )


async def write_status(pool: Pool) -> None:
    cfg, metrics = pool.cfg, pool.ports.metrics
    rep, moment, state = report(pool), clock.now(), pool.state
    # Conditions keep their lastTransitionTime against the status this replica last wrote
    # (the body's status is as old as the pool's daemon).
    previous = state.last_status or cfg.body.get("status") or {}
    patch = status_patch(rep, previous=previous, generation=cfg.generation, now=moment)
    metrics.runs_by_state.set(rep.counts.pending, *cfg.metric_labels, "pending")
    metrics.runs_by_state.set(rep.counts.running, *cfg.metric_labels, "running")
    metrics.tracked_runs.set(len(pool.table), *cfg.metric_labels)
    ready: dict[str, Any] = next((x for x in patch["conditions"] if x["type"] == c.READY), {})
    metrics.pool_ready.set(1.0 if ready.get("status") == "True" else 0.0, *cfg.metric_labels)
    if state.last_status_at is not None and not status_due(
        patch, state.last_status, (moment - state.last_status_at).total_seconds()
    ):
        return
    try:
        await pool.ports.kube.patch_status(GROUP, VERSION, PLURAL, cfg.namespace, cfg.name, patch)
    except KubeError as exc:
        log.warning("Writing the status of WorkPool %s failed: %s", cfg.key, exc)
        return
    state.last_status, state.last_status_at = patch, moment


async def _every(
    seconds: float,
    fn: Callable[[], Awaitable[Any]],
    name: str,
    progress: LoopProgress | None = None,
    health: Health | None = None,
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
            if health is not None:
                health.loop_errors[name] = f"The {name} loop failed: {type(exc).__name__}: {exc}"
        else:
            if health is not None:
                health.loop_errors.pop(name, None)
        if progress is not None:
            progress.mark(name, seconds, time.monotonic())
        await anyio.sleep(max(0.0, seconds - (time.monotonic() - started)))


async def _sync_and_heartbeat(pool: Pool, registry_hook: Callable[[Pool], None]) -> None:
    health, ports = pool.health, pool.ports
    try:
        await _sync(pool)
        registry_hook(pool)
        if not pool.state.seeded:
            await seed_table(pool)
            pool.state.seeded = True
        elif pool.access.forbidden:  # a Role granted since: adopt that namespace's Jobs
            await seed_table(pool, [None if k == ALL else k for k in pool.access.forbidden])
        await check_namespaces(pool)
        await heartbeat(pool.cfg, ports.client)
        health.last_heartbeat = clock.now()
    except KubeError as exc:
        log.warning("Listing the existing Jobs of %s failed (retrying): %s", pool.key, exc)
    except SyncProblem as exc:
        if health.sync.message != exc.message:
            await ports.event_k8s("Warning", exc.reason, exc.message)
        health.sync = Condition(False, exc.reason, exc.message)
        await note_api_ok(health, ports)
    except PrefectAPIError as exc:
        await note_api_error(health, ports, exc)
        if isinstance(exc, Unauthorized):
            health.sync = Condition(False, c.REASON_UNAUTHORIZED, str(exc))


async def _sync(pool: Pool) -> None:
    """Sync the Prefect pool; PoolSynced becomes True (an Event when it was not, or changed)."""
    health, ports = pool.health, pool.ports
    changes = await sync_pool(pool.cfg, ports, pool.synced)
    await note_api_ok(health, ports)
    if health.sync.ok is not True or changes:
        await ports.event_k8s(
            "Normal",
            "PoolSynced",
            f'Prefect work pool "{pool.cfg.pool_name}" synced'
            + (f": {'; '.join(changes)}" if changes else ""),
        )
    health.sync = Condition(True, c.REASON_SYNCED)


def lease_name(cfg: PoolConfig) -> str:
    return f"prefect-job-operator.{cfg.name}"[:253]


async def kubernetes_available(pool: Pool) -> bool:
    """The claim gate: no run is claimed while the Kubernetes API is failing.

    During an outage each poll tick probes it with one cheap read (this pool's Lease: it
    needs etcd, as a Job create does); any answer reopens the gate.
    """
    kube = pool.ports.kube
    availability = kube.availability
    if availability.ok:
        return True
    with anyio.move_on_after(5), contextlib.suppress(KubeError):
        await kube.read_lease(pool.cfg.namespace, lease_name(pool.cfg))
    if availability.ok:
        log.info("Kubernetes API answers again; %s claims runs again", pool.key)
        return True
    pool.health.poll = Condition(
        False,
        c.REASON_KUBERNETES_UNAVAILABLE,
        f"Not claiming flow runs while the Kubernetes API fails: {availability.last_error}",
    )
    return False


async def _poll(pool: Pool, tg: anyio.abc.TaskGroup, limiter: anyio.CapacityLimiter) -> None:
    health, ports = pool.health, pool.ports
    if health.sync.ok is not True or not pool.state.seeded:
        return
    if not await kubernetes_available(pool):
        return
    try:
        await poll_once(pool.submitter, tg, limiter)
        health.last_poll = clock.now()
        await note_api_ok(health, ports)
        health.poll = Condition(True, c.REASON_POLLING)
    except WorkQueueNotFound as exc:
        if health.poll.reason != c.REASON_QUEUE_NOT_FOUND:
            await ports.event_k8s("Warning", c.REASON_QUEUE_NOT_FOUND, str(exc))
        health.poll = Condition(False, c.REASON_QUEUE_NOT_FOUND, str(exc))
    except WorkPoolNotFound as exc:
        health.sync = Condition(False, c.REASON_POOL_NOT_FOUND, str(exc))
    except PrefectAPIError as exc:
        await note_api_error(health, ports, exc)
        health.poll = Condition(False, c.REASON_POLL_FAILED, str(exc))


MAX_DEFERRED_RECOVERY_SWEEPS = 10


def recovery_sweep_due(pool: Pool, now: float) -> bool:
    """Whether the (expensive) Pending/Running listings run on this sweep tick; a yes is
    recorded as the last recovery sweep, a no under a backlog as one more deferral.

    The first tick of a leadership term always runs them (that is what recovers a crash).
    After that they run every ``recovery_sweep_interval_seconds``, but not while every
    submission slot is taken (a burst): those listings would compete with the claims for the
    server, and a run being dispatched now is not an orphan. A sustained burst defers them at
    most ``MAX_DEFERRED_RECOVERY_SWEEPS`` times in a row. (Polls, in ``submit.poll_once``,
    stop later: at twice the slots, so the slots stay fed.)
    """
    state = pool.state
    last = state.last_recovery_sweep
    if last is not None and now - last < pool.cfg.settings.recovery_sweep_interval_seconds:
        return False
    busy = len(pool.submitter.in_flight) >= pool.cfg.spec.worker.submit_concurrency
    if last is not None and busy and state.recovery_sweeps_deferred < MAX_DEFERRED_RECOVERY_SWEEPS:
        state.recovery_sweeps_deferred += 1
        return False
    state.last_recovery_sweep, state.recovery_sweeps_deferred = now, 0
    return True


async def _sweep(pool: Pool, tick: list[int]) -> None:
    if pool.health.sync.ok is not True or not pool.state.seeded:
        return
    tick[0] += 1
    sweeper = pool.sweeper
    try:
        await sweep.sweep_cancelling(sweeper)
        if recovery_sweep_due(pool, time.monotonic()):
            await sweep.sweep_pending(sweeper)
            await sweep.sweep_running(sweeper)
        if tick[0] % 6 == 1:
            await sweep.sweep_final_with_jobs(sweeper)
            pool.table.forget_finished(clock.now())
    except PrefectAPIError as exc:
        await note_api_error(pool.health, pool.ports, exc)


async def seed_table(pool: Pool, namespaces: list[str | None] | None = None) -> None:
    """Learn every existing Job and pod of this pool before acting (restart safety).

    Namespace by namespace: one the operator may not list (403) goes to the pool's
    ``NamespaceAccess`` (reported on JobNamespaces, refused for submissions, retried at each
    heartbeat) and the pool goes on in the others. Any other error propagates: the whole
    seed is retried.
    """
    if not pool.pool_id:
        return
    instance = label_value(pool.cfg.settings.instance)
    selector = f"{LABEL_OPERATOR}={instance},{LABEL_WORK_POOL_ID}={pool.pool_id}"
    if namespaces is None:
        watched = pool.access.watched()
        namespaces = [None] if watched is None else list(watched)
    actions = []
    adopted = 0
    for ns in namespaces:
        listed = await _list_jobs_and_pods(pool, ns, selector)
        if listed is None:
            continue
        jobs, pods = listed
        for job in jobs:
            actions += pool.table.observe_job(None, job)
        for pod in pods:
            actions += pool.table.observe_pod(None, pod)
        adopted += len(jobs)
    log.info("WorkPool %s: adopted %d existing Jobs", pool.key, adopted)
    actions = [a for a in actions if not isinstance(a, InfrastructurePending)]
    await sweep.apply_actions(pool.sweeper, actions)


async def _list_jobs_and_pods(
    pool: Pool, ns: str | None, selector: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]] | None:
    """The pool's Jobs and their pods in one namespace (None: all); None when forbidden."""
    kube, access = pool.ports.kube, pool.access
    resource = "jobs.batch"
    try:
        jobs = await kube.list_jobs(None if ns is None else [ns], selector)
        resource = "pods"
        pods = []
        for pod_ns in sorted({j["metadata"]["namespace"] for j in jobs}):
            pods += await kube.list_pods(pod_ns, selector)
    except KubeError as exc:
        if exc.status != 403:
            raise
        if (ns or ALL) not in access.forbidden:
            log.warning("WorkPool %s: no permission in %s: %s", pool.key, ns or "*", exc)
        access.refused(ns or ALL, forbidden_message("list", resource, ns))
        return None
    access.granted(ns or ALL)
    return jobs, pods


async def check_namespaces(pool: Pool) -> None:
    """The JobNamespaces condition (reconcile time), with an Event per refusal when it changes."""
    template = pool.synced.template
    template_ns = default_job_namespace(template) if template else None
    result = namespace_report(pool.access.scope(), template_ns)
    previous, pool.health.namespaces = pool.health.namespaces, result
    if previous is not None and previous.message == result.message:
        return
    for refusal in result.refusals:
        await pool.ports.event_k8s("Warning", refusal.reason, refusal.message)
    if result.ok and previous is not None and not previous.ok:
        await pool.ports.event_k8s("Normal", result.reason, result.message)


async def lead(pool: Pool, lease: PoolLease, registry_hook: Callable[[Pool], None]) -> None:
    """One leadership term: returns (or raises LeadershipLost) when the lease is gone."""
    telemetry = _start_term(pool)
    started: list[str] = []

    async def renew() -> None:
        if not await lease.renew():
            raise LeadershipLost()

    async def sync_and_heartbeat() -> None:
        # The first sync runs inside the term, beside the lease renewals: a slow first sync
        # must neither cost the lease nor run on a lease that expired meanwhile.
        await _sync_and_heartbeat(pool, registry_hook)
        if not started and pool.synced.pool:
            telemetry.pool = pool.synced.pool
            started.append(telemetry.event("prefect.worker.started"))

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_every, lease.retry_period, renew, "lease", pool.loops)
            _start_loops(pool, tg, sync_and_heartbeat)
            tg.start_soon(telemetry.flush_forever)
    finally:
        pool.loops.clear()  # a standby has no loops to judge
        with anyio.CancelScope(shield=True):
            telemetry.event("prefect.worker.stopped", follows=started[0] if started else None)
            with anyio.move_on_after(5):
                await telemetry.flush()


def _start_term(pool: Pool) -> Telemetry:
    """A new term: its own telemetry buffers, a recovery sweep first, pids left to the sweep."""
    w = pool.cfg.spec.worker
    telemetry = Telemetry(
        pool.ports.client, worker_name=pool.cfg.worker_name, pool=pool.synced.pool
    )
    telemetry.enabled = w.emit_events
    telemetry.pod_events_enabled = w.pod_events
    pool.ports.telemetry = telemetry
    pool.state.last_recovery_sweep = None  # a new term starts with a recovery sweep
    pool.state.last_status_at = None  # and writes its status at once
    pool.table.new_term()
    return telemetry


def _start_loops(
    pool: Pool, tg: anyio.abc.TaskGroup, sync_and_heartbeat: Callable[[], Awaitable[None]]
) -> None:
    """The term's loops beside the lease renewal, each at its own interval."""
    cfg, loops, health = pool.cfg, pool.loops, pool.health
    w, settings = cfg.spec.worker, cfg.settings
    limiter = anyio.CapacityLimiter(w.submit_concurrency)
    tick = [0]

    def deadlines() -> Awaitable[None]:
        return sweep.apply_actions(pool.sweeper, pool.table.check_deadlines(clock.now()))

    tg.start_soon(
        _every, w.heartbeat_interval_seconds, sync_and_heartbeat, "heartbeat", loops, health
    )
    poll = lambda: _poll(pool, tg, limiter)  # noqa: E731
    tg.start_soon(_every, w.poll_interval_seconds, poll, "poll", loops, health)
    sweep_tick = lambda: _sweep(pool, tick)  # noqa: E731
    tg.start_soon(_every, settings.sweep_interval_seconds, sweep_tick, "sweep", loops, health)
    tg.start_soon(_every, 1.0, deadlines, "deadlines", loops, health)
    status = lambda: write_status(pool)  # noqa: E731
    tg.start_soon(_every, settings.status_interval_seconds, status, "status", loops)


async def run_pool(
    pool: Pool,
    registry_hook: Callable[[Pool], None],
) -> None:
    """Compete for the pool's Lease forever; lead while holding it."""
    identity = pool.cfg.settings.identity or _hostname()
    lease = PoolLease(
        pool.ports.kube,
        pool.cfg.namespace,
        lease_name(pool.cfg),
        identity,
        pool.cfg.settings.lease_duration_seconds,
    )
    try:
        while True:
            try:
                held = await lease.try_acquire()
            except KubeError as exc:
                log.warning("Lease of %s: %s", pool.key, exc)
                held = False
            pool.health.leader, pool.health.lease_holder = held, lease.holder
            pool.ports.metrics.leader.set(1.0 if held else 0.0, *pool.cfg.metric_labels)
            if not held:  # the leader owns the status; a standby stays silent
                await anyio.sleep(lease.retry_period)
                continue
            log.info("WorkPool %s: this replica (%s) leads", pool.key, identity)
            await pool.ports.event_k8s(
                "Normal", "Leading", f"Replica {identity} dispatches this pool"
            )
            try:
                await lead(pool, lease, registry_hook)
            except* LeadershipLost:
                log.warning("WorkPool %s: lease lost; stopping dispatch", pool.key)
                pool.health.leader = False
    finally:
        with anyio.CancelScope(shield=True), anyio.move_on_after(5):
            await lease.release()
            pool.health.leader = False


def _hostname() -> str:
    import socket

    return socket.gethostname()

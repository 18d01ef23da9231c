"""OperatorContext: Job/Pod events routed to the right pool, leadership gating, the liveness
rule (/healthz: the operator's own health) and BaseWorker's poll rule, and the pool report
behind the CR status."""

from __future__ import annotations

from datetime import timedelta
from typing import cast

import anyio
import pytest

from prefect_job_operator.api import conditions as c
from prefect_job_operator.dispatch.pool import Pool
from prefect_job_operator.dispatch.worker import _poll, report, write_status
from prefect_job_operator.kube.client import Kube
from prefect_job_operator.kube.events import EventSink
from prefect_job_operator.metrics import Metrics
from prefect_job_operator.registry import OperatorContext
from prefect_job_operator.settings import OperatorSettings
from prefect_job_operator.writeback.outcomes import Condition, poll_is_stale
from tests.unit.clocks import frozen
from tests.unit.fakes import FakeKube, FakePrefectClient, job_json, make_runtime, now, pod_json

POOL_A = "aaaaaaaa-0000-4000-8000-00000000000a"
POOL_B = "bbbbbbbb-0000-4000-8000-00000000000b"
JOB = "crimson-fox-abcde12345"


def context(kube: FakeKube) -> OperatorContext:
    return OperatorContext(
        settings=OperatorSettings(),
        kube=cast(Kube, kube),
        metrics=Metrics(),
        events=EventSink(cast(Kube, kube), "prefect-job-operator"),
    )


PoolAndClient = tuple[Pool, FakePrefectClient]


def two_pools(*, leader_a: bool = True) -> tuple[OperatorContext, PoolAndClient, PoolAndClient]:
    kube = FakeKube()
    ctx = context(kube)
    rt_a, client_a, _ = make_runtime(name="pool-a", pool_id=POOL_A, kube=kube, leader=leader_a)
    rt_b, client_b, _ = make_runtime(name="pool-b", pool_id=POOL_B, kube=kube)
    ctx.register(rt_a)
    ctx.register(rt_b)
    return ctx, (rt_a, client_a), (rt_b, client_b)


async def test_job_event_is_routed_by_work_pool_id() -> None:
    ctx, (rt_a, _), (rt_b, _) = two_pools()
    run = "11111111-0000-4000-8000-000000000001"
    await ctx.on_job("ADDED", job_json(run, JOB, pool_id=POOL_B))
    await ctx.on_pod("ADDED", pod_json(run, JOB, phase="Running", pool_id=POOL_B))
    assert rt_a.table.get(run) is None
    rec = rt_b.table.get(run)
    assert rec is not None and len(rec.pods) == 1


async def test_event_of_unknown_pool_is_dropped() -> None:
    ctx, (rt_a, _), (rt_b, _) = two_pools()
    run = "11111111-0000-4000-8000-000000000002"
    job = job_json(run, JOB, pool_id="cccccccc-0000-4000-8000-00000000000c")
    await ctx.on_job("ADDED", job)
    del job["metadata"]["labels"]["prefect.io/work-pool-id"]
    await ctx.on_job("ADDED", job)
    assert len(rt_a.table) == len(rt_b.table) == 0


async def test_leader_acts_on_a_failed_job() -> None:
    ctx, (rt_a, client_a), _ = two_pools()
    run = client_a.add_run(state="RUNNING", pid=f"default:{JOB}", pool=rt_a.cfg.pool_name)
    await ctx.on_job("ADDED", job_json(run, JOB, pool_id=POOL_A, active=1))
    await ctx.on_job("MODIFIED", job_json(run, JOB, pool_id=POOL_A, failed=1))
    assert client_a.state_of(run)[0] == "CRASHED"


async def test_standby_keeps_facts_but_does_not_act() -> None:
    ctx, (rt_a, client_a), _ = two_pools(leader_a=False)
    run = client_a.add_run(state="PENDING", pid=f"default:{JOB}", pool=rt_a.cfg.pool_name)
    await ctx.on_job("ADDED", job_json(run, JOB, pool_id=POOL_A))
    await ctx.on_pod("ADDED", pod_json(run, JOB, phase="Pending", pool_id=POOL_A))
    failed_pod = pod_json(run, JOB, phase="Failed", exit_code=2, pool_id=POOL_A)
    await ctx.on_pod("MODIFIED", failed_pod)

    assert sum(client_a.calls.values()) == 0, client_a.calls
    rec = rt_a.table.get(run)
    assert rec is not None
    assert rec.job is not None and len(rec.pods) == 1
    assert not rec.outcome_reported and not rec.infra_pending_reported

    # Leadership moves here: the next event about the run is acted on.
    rt_a.health.leader = True
    await ctx.on_job("MODIFIED", job_json(run, JOB, pool_id=POOL_A, failed=1))
    assert client_a.state_of(run)[0] == "CRASHED"
    assert "exited with code 2" in client_a.runs[run]["state"]["message"]


async def test_unregister_stops_routing() -> None:
    ctx, (rt_a, _), _ = two_pools()
    ctx.unregister(rt_a)
    await ctx.on_job("ADDED", job_json("11111111-0000-4000-8000-000000000003", JOB, pool_id=POOL_A))
    assert len(rt_a.table) == 0
    assert rt_a.key not in ctx.pools


async def polled(pool: Pool) -> None:
    """One real poll tick (nothing due): the worker loop stamps the poll time itself."""
    pool.state.seeded = True
    async with anyio.create_task_group() as tg:
        await _poll(pool, tg, anyio.CapacityLimiter(1))


async def test_liveness_ignores_a_pool_whose_api_is_down_for_hours(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue #10 item 4: one pool's Prefect outage never fails /healthz."""
    ctx, (rt_a, _), (rt_b, _) = two_pools()
    time = frozen(monkeypatch)
    await polled(rt_a)  # its last poll that worked ...
    time.advance(timedelta(hours=5).total_seconds())  # ... is stale by BaseWorker's rule
    rt_a.health.api = Condition(False)
    await polled(rt_b)
    t = time.now()
    mono = 1000.0
    ctx.loop_tick = mono - 0.5
    for rt in (rt_a, rt_b):  # the loops go on, each iteration failing fast
        rt.loops.mark("poll", 1.0, mono - 2)
    ok, detail = ctx.alive(mono)
    assert ok, detail
    # ... while the per-pool rule still says so, for /readyz's body and the condition
    polls = ctx.polls(t)
    assert polls[rt_a.key]["ok"] is False and polls[rt_b.key]["ok"] is True
    assert report(rt_a).poll.reason == c.REASON_STALE


def test_liveness_fails_on_a_stuck_loop_or_a_blocked_event_loop() -> None:
    ctx, (rt_a, _), _ = two_pools()
    stall = ctx.settings.liveness_stall_seconds
    mono = 10_000.0
    ctx.loop_tick = mono
    rt_a.loops.mark("heartbeat", 5.0, mono - 5.0 - stall + 1)
    assert ctx.alive(mono)[0] is True
    rt_a.loops.mark("heartbeat", 5.0, mono - 5.0 - stall - 1)
    ok, detail = ctx.alive(mono)
    assert not ok and detail["stalledLoops"] == {rt_a.key: {"heartbeat": 5.0 + stall + 1}}
    rt_a.loops.clear()  # leadership ended: nothing to judge
    assert ctx.alive(mono)[0] is True
    ctx.loop_tick = mono - ctx.settings.liveness_loop_lag_seconds - 1
    assert ctx.alive(mono)[0] is False


def test_poll_staleness_is_thirty_poll_intervals_in_one_place() -> None:
    t = now()
    assert not poll_is_stale(None, 10, t)
    assert not poll_is_stale(t - timedelta(seconds=10 * 30 - 1), 10, t)
    assert poll_is_stale(t - timedelta(seconds=10 * 30 + 1), 10, t)
    assert poll_is_stale(t - timedelta(seconds=61), 2, t)
    assert not poll_is_stale(t - timedelta(seconds=59), 2, t)


def test_polls_report_standby_and_count_a_leader_that_never_polled_from_start() -> None:
    ctx, (rt_a, _), (rt_b, _) = two_pools(leader_a=False)
    rt_b.health.last_poll = None
    interval = rt_b.cfg.spec.worker.poll_interval_seconds
    assert ctx.polls(ctx.started + timedelta(seconds=interval * 30 - 1)) == {
        rt_a.key: "standby",
        rt_b.key: {"ok": True, "secondsSinceLastPoll": interval * 30 - 1},
    }
    assert ctx.polls(ctx.started + timedelta(seconds=interval * 30 + 1))[rt_b.key]["ok"] is False


def test_no_pools_is_alive() -> None:
    ctx = context(FakeKube())
    assert ctx.alive(0.0)[0] is True and ctx.polls(now()) == {}


# --------------------------------------------------------------------------- pool report


async def test_report_counts_submitting_as_pending_and_flags_a_stale_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    time = frozen(monkeypatch)
    rt, _, _ = make_runtime()
    rt.health.api = Condition(True)
    await polled(rt)
    running = "11111111-0000-4000-8000-000000000004"
    rt.table.observe_job("ADDED", job_json(running, JOB))
    rt.table.observe_pod("ADDED", pod_json(running, JOB, phase="Running"))
    rt.table.observe_job("ADDED", job_json("11111111-0000-4000-8000-000000000005", "waiting-1"))
    rt.submitter.in_flight.add("11111111-0000-4000-8000-000000000006")

    rep = report(rt)
    assert (rep.counts.pending, rep.counts.running) == (2, 1)
    assert rep.poll.ok is True and rep.pool_id == rt.pool_id

    time.advance(rt.cfg.spec.worker.poll_interval_seconds * 31)
    rep = report(rt)
    assert rep.poll.ok is False and rep.poll.reason == c.REASON_STALE


def test_report_of_a_standby_says_not_leader() -> None:
    rt, _, _ = make_runtime(leader=False)
    rt.health.lease_holder = "replica-b"
    rep = report(rt)
    assert rep.poll.ok is False and rep.poll.reason == c.REASON_NOT_LEADER
    assert rep.poll.message is not None and "replica-b" in rep.poll.message


async def test_write_status_patches_ready_and_sets_gauges() -> None:
    rt, _, kube = make_runtime()
    rt.health.api = Condition(True)
    rt.health.poll = Condition(True, c.REASON_POLLING)
    rt.health.last_poll = rt.health.last_heartbeat = now()
    rt.ports.counters.submitted = 7

    await write_status(rt)

    [(ns, name, patch)] = kube.status_patches
    assert (ns, name) == ("default", "k8s")
    ready = next(x for x in patch["conditions"] if x["type"] == c.READY)
    assert ready["status"] == "True"
    assert patch["counts"]["submitted"] == 7
    assert rt.ports.metrics.pool_ready.value(*rt.cfg.metric_labels) == 1.0

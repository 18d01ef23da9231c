"""The measured scenarios. Each gets a fresh namespace, Prefect pool and subject process.

- burst: N runs due at once (the pool's queue is paused while they are created, then
  resumed at t0); time until every run has a Job, plus the cost figures of that window.
- steady: runs created due-now at a fixed rate; latency from scheduled time to the Job.
- crash: pods that fail 1 s after Running; latency from the failed pod to Crashed in Prefect.
- ceilings: bare loops creating Jobs; claiming runs (Pending + infrastructure_pid); and
  both, the minimal work of any Job-creating worker (Pending, Job, infrastructure_pid).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from tests.infra import prefect_setup as ps

from bench import procs
from bench.kube import FLOW_RUN_LABEL, NamespaceWatch, create_namespace
from bench.stats import summary
from bench.subjects import Subject
from bench.world import World

CREATE_CONCURRENCY = 4
TAIL_SECONDS = 10.0
"""A burst's cost window runs until this long after the last Job (pods start meanwhile)."""
BURST_LIMIT_SECONDS = 300.0
"""A burst that takes longer is cut off; its rate is then measured over the Jobs seen."""
PID_LIMIT_SECONDS = 120.0
"""After a burst's window, how long (from its last Job) to wait for every infrastructure_pid."""
PID_POLL_SECONDS = 0.5
FILTER_CHUNK = 200
"""Run ids per ``POST /flow_runs/filter`` (the server's default page limit)."""
HANG = {"pjo.test/outcome": "hang"}
FAIL = {"pjo.test/outcome": "fail", "pjo.test/after": "1s", "pjo.test/exit-code": "1"}


def _create_concurrency(world: World) -> int:
    return 1 if world.database == "SQLite" else CREATE_CONCURRENCY


def log(msg: str) -> None:
    print(f"bench: {time.strftime('%H:%M:%S')} {msg}", file=sys.stderr, flush=True)


def mean_delta(
    before: dict[str, tuple[float, float]], after: dict[str, tuple[float, float]]
) -> dict[str, float]:
    """Mean of each histogram over the window, from (sum, count) snapshots."""
    out = {}
    for series, (total, count) in after.items():
        total0, count0 = before.get(series, (0.0, 0.0))
        if count > count0:
            out[series] = round((total - total0) / (count - count0), 4)
    return out


def _short() -> str:
    return uuid.uuid4().hex[:6]


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


async def _deployment(
    http: httpx.AsyncClient, pool: str, ns: str, annotations: dict[str, str]
) -> str:
    flow = await ps.create_flow(http, "bench-flow")
    dep = await ps.create_deployment(
        http,
        flow_id=flow["id"],
        name=ps.unique("dep"),
        work_pool_name=pool,
        job_variables={"namespace": ns, "annotations": annotations},
    )
    return str(dep["id"])


async def create_runs(
    http: httpx.AsyncClient, deployment_id: str, n: int, concurrency: int
) -> list[str]:
    """SQLite answers concurrent writes with 503s: create one at a time there."""
    ids: list[str] = []
    sem = asyncio.Semaphore(concurrency)

    async def one() -> None:
        async with sem:
            ids.append(
                str((await ps.create_flow_run(http, deployment_id, scheduled_in_seconds=0))["id"])
            )

    await asyncio.gather(*(one() for _ in range(n)))
    return ids


async def read_runs(http: httpx.AsyncClient, run_ids: list[str]) -> list[dict[str, Any]]:
    """The flow runs with these ids, ``FILTER_CHUNK`` per ``POST /flow_runs/filter``."""
    runs: list[dict[str, Any]] = []
    for i in range(0, len(run_ids), FILTER_CHUNK):
        chunk = run_ids[i : i + FILTER_CHUNK]
        body = {"flow_runs": {"id": {"any_": chunk}}, "limit": FILTER_CHUNK}
        runs += await ps.call(http, "POST", "/flow_runs/filter", body)
    return runs


async def _wait(what: str, done: Callable[[], bool], limit: float, interval: float = 0.1) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if done():
            return True
        await asyncio.sleep(interval)
    log(f"timed out after {limit:.0f}s waiting for {what}")
    return False


class Session:
    """A namespace + Prefect pool + started subject process; always stopped on exit.

    A full run opens one per scenario (nothing left over from the previous one); ``--quick``
    shares one per subject to save the start-up time.
    """

    def __init__(self, world: World, subject: Subject, kind: str) -> None:
        self.world = world
        self.subject = subject
        suffix = f"{kind}-{_short()}"
        self.ns = f"{subject.label}-{suffix}"[:63]
        self.pool = f"bench-{subject.label}-{suffix}"
        self.start_seconds = 0.0

    async def __aenter__(self) -> Session:
        create_namespace(self.world.cluster, self.ns)
        t = time.monotonic()
        try:
            await self.subject.start(self.pool, self.ns)
        except BaseException:
            log(f"{self.subject.label} failed to start in {self.ns}:\n{self.subject.log_tail()}")
            self.subject.stop()
            raise
        self.start_seconds = time.monotonic() - t
        return self

    async def __aexit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc is not None:
            log(f"{self.subject.label} failed in {self.ns}; log tail:\n{self.subject.log_tail()}")
        self.subject.stop()


async def burst(sc: Session, n: int, tail_seconds: float = TAIL_SECONDS) -> dict[str, Any]:
    world, subject = sc.world, sc.subject
    async with ps.setup_client(world.server.api_url) as http:
        queue = f"/work_pools/{sc.pool}/queues/default"
        await ps.call(http, "PATCH", queue, {"is_paused": True})
        dep = await _deployment(http, sc.pool, sc.ns, HANG)
        t = time.monotonic()
        run_ids = await create_runs(http, dep, n, _create_concurrency(world))
        log(f"{subject.label} burst {n}: created runs in {time.monotonic() - t:.0f}s")
        await asyncio.sleep(3)
        idle = procs.sample(subject.pid)
        watches_idle = world.audit.open_watches(time.time())
        async with NamespaceWatch(world.cluster, sc.ns) as watch:
            world.proxy_reset()
            self_calls0 = subject.self_reported_api_calls()
            timings0 = subject.timings()
            cpu0 = procs.sample(subject.pid).cpu_seconds
            t0 = time.time()
            await ps.call(http, "PATCH", queue, {"is_paused": False})
            wanted = set(run_ids)
            complete = await _wait(
                f"{n} Jobs", lambda: wanted <= watch.seen.job_seen.keys(), BURST_LIMIT_SECONDS
            )
            seen = {r: watch.seen.job_seen[r] for r in run_ids if r in watch.seen.job_seen}
            t_last = max(seen.values()) if seen else time.time()
            await asyncio.sleep(max(0.0, t_last + tail_seconds - time.time()))
            t_end = time.time()
            cpu = procs.sample(subject.pid).cpu_seconds - cpu0
            calls = world.proxy_stats()
            self_calls1 = subject.self_reported_api_calls()
            timings = mean_delta(timings0, subject.timings())
            active = procs.sample(subject.pid)
            duplicates = sum(1 for r in run_ids if len(watch.seen.jobs_per_run.get(r, ())) > 1)
        kube = world.audit.window(t0, t_end)
        watches_active = world.audit.open_watches(time.time())
        elapsed = t_last - t0
        result = {
            "n": n,
            "namespace": sc.ns,
            "subject_start_seconds": sc.start_seconds,
            "complete": complete,
            "jobs": len(seen),
            "duplicate_jobs": duplicates,
            "seconds_to_all_jobs": elapsed if complete else None,
            "seconds_to_first_job": (min(seen.values()) - t0) if seen else None,
            "runs_per_second": (len(seen) / elapsed) if elapsed > 0 else None,
            "cpu_seconds_window": cpu,
            "cpu_seconds_per_1000_runs": cpu / max(len(seen), 1) * 1000,
            "rss_idle_mib": idle.rss_bytes / 2**20,
            "rss_active_mib": active.rss_bytes / 2**20,
            "prefect_calls": sum(calls.values()),
            "prefect_calls_per_run": sum(calls.values()) / max(len(seen), 1),
            "prefect_calls_by_route": dict(sorted(calls.items(), key=lambda kv: -kv[1])),
            "self_reported_prefect_calls": (
                self_calls1 - self_calls0
                if self_calls0 is not None and self_calls1 is not None
                else None
            ),
            "kube_calls": kube.requests,
            "kube_calls_per_run": kube.requests / max(len(seen), 1),
            "kube_calls_by_verb": kube.by_verb_resource,
            "watches_idle": watches_idle,
            "watches_active": watches_active,
            "subject_mean_seconds": timings,
            "load_average": os.getloadavg()[0],
        }
        log(
            f"{subject.label} burst {n}: {len(seen)}/{n} Jobs in {elapsed:.1f}s "
            f"({result['runs_per_second'] or 0:.1f} runs/s), "
            f"{result['prefect_calls_per_run']:.1f} Prefect calls/run, "
            f"RSS {result['rss_active_mib']:.0f} MiB"
        )
        # Only now, after every figure of the window above: the harness's polls go to the
        # server directly (not counted), but they would still load it during the window.
        result.update(
            await _pids(http, run_ids, t0, t_last + PID_LIMIT_SECONDS if complete else 0.0)
        )
    pid_seconds = result["seconds_to_all_pids"]
    log(
        f"{subject.label} burst {n}: {result['pids_recorded']}/{n} pids, all by "
        + (f"{pid_seconds:.1f}s" if pid_seconds is not None else "- (not all recorded)")
        + f" (first poll at {result['pid_first_poll_seconds']:.1f}s)"
    )
    return result


async def _pids(
    http: httpx.AsyncClient, run_ids: list[str], t0: float, deadline: float
) -> dict[str, Any]:
    """When each run's ``infrastructure_pid`` is first seen in Prefect, polling every
    ``PID_POLL_SECONDS`` until all are in or ``deadline`` (wall clock; at least one poll).

    Polling starts only after the burst's window, so a pid already recorded by then is
    stamped with the first poll (sent at ``pid_first_poll_seconds``): ``seconds_to_all_pids``
    is exact to a poll only when ``pid_polls`` > 1, an upper bound otherwise.
    ``seconds_to_all_pids_server`` is a tighter bound from the server's side: per run, the
    earlier of the poll and the run's ``updated`` timestamp (its last write: the pid PATCH,
    unless something wrote to the run after it).
    """
    pid_seen: dict[str, float] = {}
    bound: dict[str, float] = {}
    polls: list[float] = []
    while True:
        polls.append(time.time())
        missing = [r for r in run_ids if r not in pid_seen]
        for run in await read_runs(http, missing):
            if run.get("infrastructure_pid"):
                run_id, now = str(run["id"]), time.time()
                pid_seen[run_id] = now
                updated = _ts(run["updated"]) if run.get("updated") else now
                bound[run_id] = min(now, updated)
        if len(pid_seen) == len(run_ids) or time.time() + PID_POLL_SECONDS > deadline:
            break
        await asyncio.sleep(PID_POLL_SECONDS)
    every = len(pid_seen) == len(run_ids)
    last = (max(pid_seen.values()) - t0) if pid_seen else None
    server = (max(bound.values()) - t0) if bound else None
    return {
        "pids_recorded": len(pid_seen),
        "seconds_to_all_pids": last if every else None,
        "seconds_to_all_pids_server": server if every else None,
        "pid_first_poll_seconds": polls[0] - t0,
        "pid_polls": len(polls),
        "runs_per_second_to_pid": (len(pid_seen) / server) if server else None,
    }


async def _at_rate(
    rate: float, count: int, make: Callable[[int], Awaitable[None]]
) -> list[asyncio.Task[None]]:
    start = time.monotonic()
    tasks = []
    for i in range(count):
        await asyncio.sleep(max(0.0, start + i / rate - time.monotonic()))
        tasks.append(asyncio.create_task(make(i)))
    await asyncio.gather(*tasks, return_exceptions=True)
    return tasks


async def steady(sc: Session, rate: float, seconds: float) -> dict[str, Any]:
    world, subject = sc.world, sc.subject
    count = max(1, int(rate * seconds))
    async with ps.setup_client(world.server.api_url) as http:
        dep = await _deployment(http, sc.pool, sc.ns, {})
        scheduled: dict[str, float] = {}
        creation_lag: list[float] = []

        async def make(i: int) -> None:
            run = await ps.create_flow_run(http, dep, scheduled_in_seconds=0)
            # Due from the later of its scheduled time and its creation: a slow create is
            # the server's delay, not the worker's.
            due = _ts(run["state"]["state_details"]["scheduled_time"])
            created = _ts(run["created"])
            scheduled[str(run["id"])] = max(due, created)
            creation_lag.append(created - due)

        async with NamespaceWatch(world.cluster, sc.ns) as watch:
            await _at_rate(rate, count, make)
            complete = await _wait(
                "steady Jobs", lambda: scheduled.keys() <= watch.seen.job_seen.keys(), 60
            )
            latencies = [
                watch.seen.job_seen[r] - t for r, t in scheduled.items() if r in watch.seen.job_seen
            ]
    result = {
        "load_average": os.getloadavg()[0],
        "rate_per_second": rate,
        "seconds": seconds,
        "runs": count,
        "complete": complete,
        "latency_seconds": summary(latencies),
        "creation_lag_seconds": summary(creation_lag),
    }
    log(f"{subject.label} steady: {result['latency_seconds']}")
    return result


async def crash(sc: Session, count: int, mode: str, rate: float = 2.0) -> dict[str, Any]:
    """``mode``: "running" (the harness marks each run Running when its pod runs, as the flow
    engine would) or "pending" (the run never leaves Pending, e.g. a pod that dies at start)."""
    world, subject = sc.world, sc.subject
    async with ps.setup_client(world.server.api_url) as http:
        dep = await _deployment(http, sc.pool, sc.ns, FAIL)
        runs: list[str] = []
        started: dict[str, bool] = {}
        pending_tasks: set[asyncio.Task[None]] = set()

        async def mark_running(run_id: str) -> None:
            result = await ps.set_state(http, run_id, "RUNNING", "Running")
            started[run_id] = result.get("status") == "ACCEPT"

        def on_running(run_id: str) -> None:
            if mode == "running":
                task = asyncio.create_task(mark_running(run_id))
                pending_tasks.add(task)
                task.add_done_callback(pending_tasks.discard)

        async def make(i: int) -> None:
            runs.append(str((await ps.create_flow_run(http, dep, scheduled_in_seconds=0))["id"]))

        crashed: dict[str, dict[str, Any]] = {}

        async def poll_states() -> bool:
            for run in await read_runs(http, runs):
                if run["state"]["type"] == "CRASHED":
                    crashed[str(run["id"])] = run["state"]
            return len(crashed) >= len(runs)

        async with NamespaceWatch(
            world.cluster, sc.ns, pods=True, on_pod_running=on_running
        ) as watch:
            await _at_rate(rate, count, make)
            deadline = time.monotonic() + 120
            complete = False
            while time.monotonic() < deadline:
                if await poll_states():
                    complete = True
                    break
                await asyncio.sleep(1.0)
            failed = dict(watch.seen.pod_failed)
            finished_at = dict(watch.seen.pod_finished_at)
        for task in list(pending_tasks):
            with contextlib.suppress(Exception):
                await task
    considered = [r for r in runs if mode == "pending" or started.get(r)]
    latencies = [
        _ts(crashed[r]["timestamp"]) - failed[r] for r in considered if r in crashed and r in failed
    ]
    from_finished = [
        _ts(crashed[r]["timestamp"]) - finished_at[r]
        for r in considered
        if r in crashed and r in finished_at
    ]
    result = {
        "load_average": os.getloadavg()[0],
        "mode": mode,
        "runs": count,
        "considered": len(considered),
        "crashed": len(crashed),
        "complete": complete,
        "latency_seconds": summary(latencies),
        "latency_from_finished_at_seconds": summary(from_finished),
        "example_message": next(iter(crashed.values()))["message"] if crashed else None,
    }
    log(f"{subject.label} crash ({mode}): {result['latency_seconds']}")
    return result


# ------------------------------------------------------------------ ceilings

CEILING_JOB: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "spec": {
        "backoffLimit": 0,
        "template": {
            "metadata": {"annotations": HANG},
            "spec": {
                "restartPolicy": "Never",
                "containers": [
                    {"name": "prefect-job", "image": "prefecthq/prefect:3.9.1-python3.11"}
                ],
            },
        },
    },
}


@contextlib.asynccontextmanager
async def _batch_api(world: World) -> AsyncIterator[Any]:
    """A kubernetes_asyncio BatchV1Api as the admin (not audited, not a subject)."""
    from kubernetes_asyncio import client, config

    cfg = client.Configuration()
    await config.load_kube_config(
        config_file=str(world.cluster.kubeconfig), client_configuration=cfg
    )
    async with client.ApiClient(cfg) as api:
        api.user_agent = "pjo-bench-ceiling"
        yield client.BatchV1Api(api)


def _ceiling_job(name: str, run_id: str) -> dict[str, Any]:
    return {**CEILING_JOB, "metadata": {"name": name, "labels": {FLOW_RUN_LABEL: run_id}}}


async def _ceiling_runs(
    world: World, pool: str, ns: str, n: int, annotations: dict[str, str]
) -> list[str]:
    """A fresh pool with ``n`` Scheduled runs, created directly (not through the proxy)."""
    async with ps.setup_client(world.server.api_url) as http:
        await ps.create_work_pool(http, pool)
        dep = await _deployment(http, pool, ns, annotations)
        return await create_runs(http, dep, n, _create_concurrency(world))


async def _propose_pending(http: httpx.AsyncClient, run_id: str) -> None:
    result = await ps.set_state(http, run_id, "PENDING", "Pending")
    assert result["status"] == "ACCEPT", result


async def _record_pid(http: httpx.AsyncClient, run_id: str, pid: str) -> None:
    await ps.call(http, "PATCH", f"/flow_runs/{run_id}", {"infrastructure_pid": pid})


def _rate(n: int, concurrency: int, elapsed: float) -> dict[str, Any]:
    return {"n": n, "concurrency": concurrency, "seconds": elapsed, "per_second": n / elapsed}


async def kube_ceiling(world: World, n: int, concurrency: int = 8) -> dict[str, Any]:
    """Jobs/s a bare kubernetes_asyncio loop gets from this apiserver."""
    ns = f"ceiling-k8s-{_short()}"
    create_namespace(world.cluster, ns)
    async with _batch_api(world) as batch:
        sem = asyncio.Semaphore(concurrency)

        async def one(i: int) -> None:
            async with sem:
                await batch.create_namespaced_job(ns, _ceiling_job(f"ceiling-{i}", f"c{i}"))

        t0 = time.monotonic()
        await asyncio.gather(*(one(i) for i in range(n)))
        elapsed = time.monotonic() - t0
    log(f"ceiling kubernetes: {n} Jobs in {elapsed:.1f}s ({n / elapsed:.1f}/s)")
    return _rate(n, concurrency, elapsed)


async def prefect_ceiling(world: World, n: int, concurrency: int = 4) -> dict[str, Any]:
    """Runs/s of the minimal claim (Pending, then infrastructure_pid), through the proxy."""
    run_ids = await _ceiling_runs(world, f"bench-ceiling-{_short()}", "ceiling", n, {})
    sem = asyncio.Semaphore(concurrency)
    async with ps.setup_client(world.proxy_url) as http:

        async def one(run_id: str) -> None:
            async with sem:
                await _propose_pending(http, run_id)
                await _record_pid(http, run_id, f"ceiling:{run_id}")

        t0 = time.monotonic()
        await asyncio.gather(*(one(r) for r in run_ids))
        elapsed = time.monotonic() - t0
    log(f"ceiling prefect: {n} claims in {elapsed:.1f}s ({n / elapsed:.1f}/s)")
    return _rate(n, concurrency, elapsed)


async def worker_ceiling(world: World, n: int, concurrency: int = 8) -> dict[str, Any]:
    """Runs/s of the minimal work of any Job-creating worker, on this machine: propose
    Pending (through the proxy), create the Job, PATCH ``infrastructure_pid`` (proxy).

    No polling, no rendering, no retries: what no worker can beat here, since the Prefect
    server and the control plane share the machine. Fresh namespace and pool; the Jobs are
    ``CEILING_JOB`` with the run's label, their pods hang like a burst's.
    """
    suffix = _short()
    ns = f"ceiling-worker-{suffix}"
    create_namespace(world.cluster, ns)
    run_ids = await _ceiling_runs(world, f"bench-ceiling-worker-{suffix}", ns, n, HANG)
    sem = asyncio.Semaphore(concurrency)
    async with _batch_api(world) as batch, ps.setup_client(world.proxy_url) as http:

        async def one(run_id: str) -> None:
            name = f"ceiling-{run_id}"
            async with sem:
                await _propose_pending(http, run_id)
                await batch.create_namespaced_job(ns, _ceiling_job(name, run_id))
                await _record_pid(http, run_id, f"{ns}:{name}")

        t0 = time.monotonic()
        await asyncio.gather(*(one(r) for r in run_ids))
        elapsed = time.monotonic() - t0
    log(
        f"ceiling worker: {n} runs claimed with a Job in {elapsed:.1f}s "
        f"({n / elapsed:.1f}/s, concurrency {concurrency})"
    )
    return _rate(n, concurrency, elapsed)


__all__ = [
    "Path",
    "burst",
    "crash",
    "kube_ceiling",
    "prefect_ceiling",
    "read_runs",
    "steady",
    "worker_ceiling",
]

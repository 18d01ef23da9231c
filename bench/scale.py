"""Scale scenarios (options of ``python -m bench``, not in the default run).

- memory: one subject, active runs grown step by step (1000, 5000, 10000 by default):
  RSS, open watches and calls per run at each size; with ``--tracemalloc`` also the top
  allocation sites per added run (``bench/tracehook``).
- pools: many WorkPools on two replicas: leadership spread, failover of a killed replica,
  the fixed cost per idle pool; beside one idle upstream worker (the cost of one pool there).
- soak: runs at a steady rate for a long time, some crashing; RSS, tasks, connections and
  dispatch latency early against late.
"""

from __future__ import annotations

import asyncio
import json
import os
import pickle
import signal
import time
import tracemalloc
from pathlib import Path
from typing import Any

import yaml
from tests.infra import prefect_setup as ps
from tests.infra.operator_process import OperatorProcess

from bench import procs
from bench.kube import NamespaceWatch, create_namespace
from bench.scenarios import (
    FAIL,
    HANG,
    Session,
    _at_rate,
    _create_concurrency,
    _deployment,
    _short,
    _ts,
    _wait,
    create_runs,
    log,
    read_runs,
)
from bench.stats import summary
from bench.subjects import Upstream
from bench.world import REPO_ROOT, World

TRACEHOOK = REPO_ROOT / "bench" / "tracehook"
SETTLE_SECONDS = 15.0
"""After a step's last Job: pods start, the follow-up lane and status writes finish."""
WRITE_VERBS = ("create", "update", "patch", "delete")


def tracemalloc_env(trace_dir: Path) -> dict[str, str]:
    """Environment that makes a subject load ``bench/tracehook/sitecustomize.py``."""
    trace_dir.mkdir(parents=True, exist_ok=True)
    path = os.pathsep.join([str(TRACEHOOK), str(REPO_ROOT / "operator"), str(REPO_ROOT)])
    return {"PYTHONPATH": path, "PJO_BENCH_TRACEMALLOC_DIR": str(trace_dir)}


async def _snapshot(pid: int, trace_dir: Path, n: int) -> Path | None:
    """SIGUSR1 the subject and wait for its snapshot ``n``."""
    os.kill(pid, signal.SIGUSR1)
    done = trace_dir / f"{n}.done"
    if not await _wait(f"tracemalloc snapshot {n}", done.exists, 120, 0.5):
        return None
    return trace_dir / f"snapshot-{n}.pickle"


def _top_growth(before: Path, after: Path, runs: int, top: int = 10) -> list[dict[str, Any]]:
    """Allocation sites that grew most between two snapshots, in bytes per added run.

    Grouped by the innermost frame outside the standard library (the code that asked for
    the memory: the operator, kopf, aiohttp, ...), so ``json`` or ``copy`` lines are charged
    to their caller.
    """
    with before.open("rb") as fh:
        s0: tracemalloc.Snapshot = pickle.load(fh)
    with after.open("rb") as fh:
        s1: tracemalloc.Snapshot = pickle.load(fh)
    owners: dict[str, list[int]] = {}
    for st in s1.compare_to(s0, "traceback"):
        where = _owner(st.traceback)
        acc = owners.setdefault(where, [0, 0])
        acc[0] += st.size_diff
        acc[1] += st.count_diff
    ranked = sorted(owners.items(), key=lambda kv: -kv[1][0])[:top]
    total = sum(v[0] for v in owners.values())
    out: list[dict[str, Any]] = [{"where": "TOTAL traced", "bytes_per_run": round(total / runs)}]
    out += [
        {
            "where": where,
            "bytes_per_run": round(size / runs),
            "blocks_per_run": round(count / runs, 2),
        }
        for where, (size, count) in ranked
    ]
    return out


def _owner(tb: tracemalloc.Traceback) -> str:
    """The innermost frame that is not the standard library (or the innermost frame)."""
    frames = list(reversed(tb))  # a Traceback lists the oldest frame first
    for frame in frames:
        name = frame.filename
        if name.startswith("<"):
            continue
        if "/lib/python3" not in name or "site-packages" in name:
            return f"{_short_path(name)}:{frame.lineno}"
    return f"{_short_path(frames[0].filename)}:{frames[0].lineno}" if frames else "?"


def _short_path(path: str) -> str:
    for marker in ("site-packages/", "operator/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


async def memory(
    sc: Session, sizes: list[int], step_limit: float, trace_dir: Path | None
) -> dict[str, Any]:
    """Grow the active runs (hanging pods) to each size in turn; measure after each step.

    Each step creates its runs with the queue paused, resumes it, waits until every run has
    a Job (at most ``step_limit`` s: a subject that cannot keep up is reported where it
    stopped) and ``SETTLE_SECONDS`` more, then samples RSS, watches and the step's calls.
    """
    world, subject = sc.world, sc.subject
    steps: list[dict[str, Any]] = []
    run_ids: list[str] = []
    snaps: list[Path | None] = []
    async with ps.setup_client(world.server.api_url) as http:
        queue = f"/work_pools/{sc.pool}/queues/default"
        dep = await _deployment(http, sc.pool, sc.ns, HANG)
        await asyncio.sleep(3)
        idle = procs.sample(subject.pid)
        if trace_dir is not None:
            snaps.append(await _snapshot(subject.pid, trace_dir, 0))
        async with NamespaceWatch(world.cluster, sc.ns) as watch:
            for size in sizes:
                add = size - len(run_ids)
                await ps.call(http, "PATCH", queue, {"is_paused": True})
                t = time.monotonic()
                new = await create_runs(http, dep, add, _create_concurrency(world))
                run_ids += new
                took = time.monotonic() - t
                log(f"{subject.label} memory {size}: created {add} runs in {took:.0f}s")
                world.proxy_reset()
                cpu0 = procs.sample(subject.pid).cpu_seconds
                t0 = time.time()
                await ps.call(http, "PATCH", queue, {"is_paused": False})
                wanted = set(run_ids)
                complete = await _wait(
                    f"{size} Jobs",
                    lambda w=wanted: w <= watch.seen.job_seen.keys(),  # type: ignore[misc]
                    step_limit,
                    0.5,
                )
                jobs = len(wanted & watch.seen.job_seen.keys())
                await asyncio.sleep(SETTLE_SECONDS)
                t_end = time.time()
                calls = world.proxy_stats()
                kube = world.audit.window(t0, t_end)
                s = procs.sample(subject.pid)
                step: dict[str, Any] = {
                    "size": size,
                    "complete": complete,
                    "jobs": jobs,
                    "seconds": round(t_end - t0 - SETTLE_SECONDS, 1),
                    "rss_mib": round(s.rss_bytes / 2**20, 1),
                    "rss_kib_per_active_run": round(
                        (s.rss_bytes - idle.rss_bytes) / 1024 / max(jobs, 1), 2
                    ),
                    "cpu_seconds": round(s.cpu_seconds - cpu0, 1),
                    "prefect_calls_per_added_run": round(sum(calls.values()) / max(add, 1), 2),
                    "prefect_calls_by_route": dict(
                        sorted(calls.items(), key=lambda kv: -kv[1])[:8]
                    ),
                    "kube_calls_per_added_run": round(kube.requests / max(add, 1), 2),
                    "kube_calls_by_verb": kube.by_verb_resource,
                    "watches": world.audit.open_watches(time.time()),
                    "load_average": os.getloadavg()[0],
                }
                if trace_dir is not None:
                    snaps.append(await _snapshot(subject.pid, trace_dir, len(snaps)))
                    first, last = snaps[0], snaps[-1]
                    if first is not None and last is not None:
                        step["tracemalloc_top_per_run"] = _top_growth(first, last, max(jobs, 1))
                steps.append(step)
                log(
                    f"{subject.label} memory {size}: {jobs}/{size} Jobs, RSS {step['rss_mib']} MiB "
                    f"({step['rss_kib_per_active_run']} KiB/run over idle), "
                    f"{step['prefect_calls_per_added_run']} Prefect calls/run"
                )
                if not complete:
                    break
    return {
        "rss_idle_mib": round(idle.rss_bytes / 2**20, 1),
        "tracemalloc": trace_dir is not None,
        "steps": steps,
    }


# ------------------------------------------------------------------ many pools


def _workpool(name: str, ns: str, pool: str) -> dict[str, Any]:
    """A WorkPool with the operator's defaults (what an idle pool costs when set up plainly)."""
    return {
        "apiVersion": "prefect-job-operator.dev/v1alpha1",
        "kind": "WorkPool",
        "metadata": {"name": name, "namespace": ns},
        "spec": {"poolName": pool},
    }


def _holders(world: World, ns: str) -> dict[str, str]:
    """WorkPool lease name → holder identity ('' when none)."""
    out = world.cluster.kubectl("get", "leases", "-n", ns, "-o", "json", check=False)
    if out.returncode != 0:
        return {}
    holders = {}
    for item in json.loads(out.stdout).get("items", []):
        name = item["metadata"]["name"]
        if name.startswith("prefect-job-operator."):
            holders[name] = (item.get("spec") or {}).get("holderIdentity") or ""
    return holders


def _rss_mib(pids: list[int]) -> float:
    return round(sum(procs.sample(p).rss_bytes for p in pids) / 2**20, 1)


async def _idle_cost(world: World, seconds: float, pids: list[int]) -> dict[str, Any]:
    world.proxy_reset()
    t0 = time.time()
    await asyncio.sleep(seconds)
    t1 = time.time()
    calls = world.proxy_stats()
    kube = world.audit.window(t0, t1)
    writes = sum(v for k, v in kube.by_verb_resource.items() if k.split(" ", 1)[0] in WRITE_VERBS)
    minutes = (t1 - t0) / 60
    return {
        "seconds": round(t1 - t0, 1),
        "prefect_calls_per_min": round(sum(calls.values()) / minutes, 1),
        "prefect_calls_by_route": dict(sorted(calls.items(), key=lambda kv: -kv[1])[:8]),
        "kube_requests_per_min": round(kube.requests / minutes, 1),
        "kube_writes_per_min": round(writes / minutes, 1),
        "kube_calls_by_verb": kube.by_verb_resource,
        "rss_mib": _rss_mib(pids),
    }


async def pools(
    world: World,
    n_pools: int,
    runs_per_pool: int,
    idle_seconds: float,
    lease_seconds: int,
    logdir: Path,
) -> dict[str, Any]:
    """``n_pools`` WorkPools in one namespace, two operator replicas started together."""
    suffix = _short()
    ns = f"pools-{suffix}"
    create_namespace(world.cluster, ns)
    docs = [_workpool(f"p{i:03d}", ns, f"bench-pools-{suffix}-{i:03d}") for i in range(n_pools)]
    world.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump_all(docs))
    kube_env = {**world.cluster.env, "KUBECONFIG": str(world.subject_kubeconfig)}
    replicas = [
        OperatorProcess(
            kube_env=kube_env,
            api_url=world.proxy_url,
            log_path=logdir / f"pools-{ns}-r{i}.log",
            namespaces=[ns],
            instance=f"pjo-{ns}"[:63],
            identity=f"replica-{i}",
            extra_env={
                "PJO_SWEEP_INTERVAL_SECONDS": "10",
                "PJO_STATUS_INTERVAL_SECONDS": "5",
                "PJO_RECOVERY_SWEEP_INTERVAL_SECONDS": "30",
                "PJO_LEASE_DURATION_SECONDS": str(lease_seconds),
                "PJO_CANCEL_GRACE_SECONDS": "30",
            },
        )
        for i in range(2)
    ]
    out: dict[str, Any] = {"pools": n_pools, "lease_seconds": lease_seconds}
    try:
        t0 = time.monotonic()
        for r in replicas:
            r.start(wait=False)
        for r in replicas:
            r.wait_healthy(120)
        ok = await _wait(
            f"{n_pools} leases held",
            lambda: sum(1 for h in _holders(world, ns).values() if h) >= n_pools,
            300,
            1.0,
        )
        out["seconds_to_all_leases"] = round(time.monotonic() - t0, 1)
        out["all_leases_held"] = ok
        await asyncio.sleep(20)  # first syncs and pool creations settle
        holders = _holders(world, ns)
        share = {r.identity: sum(1 for h in holders.values() if h == r.identity) for r in replicas}
        out["leases_by_replica"] = share
        out["max_share"] = round(max(share.values()) / max(n_pools, 1), 3)
        pids = [r.proc.pid for r in replicas if r.proc is not None]
        out["idle"] = await _idle_cost(world, idle_seconds, pids)
        idle = out["idle"]
        out["idle_per_pool"] = {
            "prefect_calls_per_min": round(idle["prefect_calls_per_min"] / n_pools, 2),
            "kube_writes_per_min": round(idle["kube_writes_per_min"] / n_pools, 2),
            "kube_requests_per_min": round(idle["kube_requests_per_min"] / n_pools, 2),
            "rss_mib": round(idle["rss_mib"] / n_pools, 2),
        }
        log(f"pools {n_pools}: leases {share}, idle per pool {out['idle_per_pool']}")
        if runs_per_pool:
            out["runs"] = await _pool_runs(world, ns, suffix, n_pools, runs_per_pool)
        # Failover: SIGKILL the replica holding more pools; time until the other holds all.
        victim = max(replicas, key=lambda r: share.get(r.identity, 0))
        survivor = next(r for r in replicas if r is not victim)
        lost = share.get(victim.identity, 0)
        t_kill = time.monotonic()
        victim.kill()
        done = await _wait(
            "failover",
            lambda: all(h == survivor.identity for h in _holders(world, ns).values()),
            lease_seconds * 6 + 60,
            0.5,
        )
        out["failover"] = {
            "pools_moved": lost,
            "seconds": round(time.monotonic() - t_kill, 1) if done else None,
            "complete": done,
        }
        log(f"pools {n_pools}: failover of {lost} pools in {out['failover']['seconds']} s")
    finally:
        for r in replicas:
            r.stop()
    return out


async def _pool_runs(
    world: World, ns: str, suffix: str, n_pools: int, per_pool: int
) -> dict[str, Any]:
    """``per_pool`` runs in each pool at once; time until every run has a Job."""
    async with ps.setup_client(world.server.api_url) as http:
        run_ids: list[str] = []
        for i in range(n_pools):
            dep = await _deployment(http, f"bench-pools-{suffix}-{i:03d}", ns, HANG)
            run_ids += await create_runs(http, dep, per_pool, _create_concurrency(world))
        t0 = time.time()
        async with NamespaceWatch(world.cluster, ns) as watch:
            wanted = set(run_ids)
            complete = await _wait(
                "pool runs", lambda: wanted <= watch.seen.job_seen.keys(), 300, 0.5
            )
            seen = [watch.seen.job_seen[r] for r in run_ids if r in watch.seen.job_seen]
    # Runs were due while they were being created: measure from the first Job.
    spread = (max(seen) - min(seen)) if seen else None
    out = {"runs": len(run_ids), "jobs": len(seen), "complete": complete, "seconds": spread}
    log(f"pools: {len(seen)}/{len(run_ids)} Jobs ({t0:.0f})")
    return out


async def upstream_idle(world: World, idle_seconds: float, logdir: Path) -> dict[str, Any]:
    """One idle upstream worker on one pool, its defaults: what one pool costs upstream."""
    ns = f"up-idle-{_short()}"
    create_namespace(world.cluster, ns)
    up = Upstream(world, 10, logdir)
    try:
        await up.start(f"bench-up-idle-{_short()}", ns)
        await asyncio.sleep(15)
        return await _idle_cost(world, idle_seconds, [up.pid])
    finally:
        up.stop()


# ------------------------------------------------------------------ soak


def _open_connections(pid: int) -> int:
    """TCP sockets of the process (``/proc/<pid>/fd`` entries that are sockets)."""
    try:
        return sum(
            1 for fd in Path(f"/proc/{pid}/fd").iterdir() if os.readlink(fd).startswith("socket:")
        )
    except OSError:
        return -1


async def soak(
    sc: Session, seconds: float, rate: float, crash_every: int, window: float
) -> dict[str, Any]:
    """``rate`` runs/s for ``seconds``; every ``crash_every``-th run's pod fails after 1 s, the
    others finish. RSS, sockets and the operator's table size sampled every 30 s; dispatch
    latency (due → Job) in the first and the last ``window`` seconds."""
    world, subject = sc.world, sc.subject
    count = max(1, int(rate * seconds))
    done_after = {"pjo.test/outcome": "succeed", "pjo.test/after": "2s"}
    async with ps.setup_client(world.server.api_url) as http:
        ok_dep = await _deployment(http, sc.pool, sc.ns, done_after)
        crash_dep = await _deployment(http, sc.pool, sc.ns, FAIL)
        due: dict[str, float] = {}
        samples: list[dict[str, Any]] = []
        t_start = time.time()

        async def make(i: int) -> None:
            dep = crash_dep if crash_every and i % crash_every == 0 else ok_dep
            run = await ps.create_flow_run(http, dep, scheduled_in_seconds=0)
            due[str(run["id"])] = max(
                _ts(run["state"]["state_details"]["scheduled_time"]), _ts(run["created"])
            )

        def take_sample() -> None:
            s = procs.sample(subject.pid)
            samples.append(
                {
                    "t": round(time.time() - t_start),
                    "rss_mib": round(s.rss_bytes / 2**20, 1),
                    "sockets": _open_connections(subject.pid),
                    "metrics": _gauges(subject),
                }
            )

        async def sampler() -> None:
            while True:
                take_sample()
                await asyncio.sleep(30)

        async with NamespaceWatch(world.cluster, sc.ns) as watch:
            task = asyncio.create_task(sampler())
            try:
                await _at_rate(rate, count, make)
                await _wait("soak Jobs", lambda: due.keys() <= watch.seen.job_seen.keys(), 60)
                await asyncio.sleep(60)  # the last runs finish
                take_sample()
            finally:
                task.cancel()
            latency = {
                r: watch.seen.job_seen[r] - t for r, t in due.items() if r in watch.seen.job_seen
            }
        states: dict[str, int] = {}
        for run in await read_runs(http, list(due)):
            states[run["state"]["type"]] = states.get(run["state"]["type"], 0) + 1
    first = [v for r, v in latency.items() if due[r] - t_start <= window]
    last = [v for r, v in latency.items() if due[r] - t_start >= seconds - window]
    at_10min = next((x for x in samples if x["t"] >= min(600, seconds / 6)), samples[0])
    end = samples[-1]
    return {
        "seconds": seconds,
        "rate": rate,
        "runs": count,
        "states": states,
        "latency_first_window": summary(first),
        "latency_last_window": summary(last),
        "rss_mib_at_10min": at_10min["rss_mib"],
        "rss_mib_end": end["rss_mib"],
        "rss_end_vs_10min": round(end["rss_mib"] / max(at_10min["rss_mib"], 0.1), 3),
        "samples": samples,
    }


def _gauges(subject: Any) -> dict[str, float]:
    """The operator's own gauges of tasks and tracked runs, when it exposes them."""
    op = getattr(subject, "op", None)
    if op is None:
        return {}
    out: dict[str, float] = {}
    try:
        text = op.metrics()
    except Exception:
        return out
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in ("prefect_job_operator_runs_by_state", "prefect_job_operator_asyncio_tasks"):
            key = line.rsplit(" ", 1)[0]
            out[key] = float(line.rsplit(" ", 1)[1])
    return out


__all__ = ["memory", "pools", "soak", "tracemalloc_env", "upstream_idle"]

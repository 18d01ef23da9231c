"""``python -m bench``: prefect-job-operator against the upstream kubernetes worker.

Both run one after the other, on identical workloads, against the same local control plane
and the same Prefect server; see docs/benchmarks.md for the method and the caveats.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from bench import report, scale, scenarios
from bench.scenarios import log
from bench.subjects import LEAN_PROFILE, Ours, Profile, Subject, Upstream
from bench.world import REPO_ROOT, World, world

DOCS = REPO_ROOT / "docs" / "benchmarks.md"


@dataclass
class Plan:
    sizes: list[int]
    steady_rate: float = 2.0
    steady_seconds: float = 60.0
    crash_runs: int = 30
    crash_modes: list[str] = field(default_factory=lambda: ["running", "pending"])
    ceiling_jobs: int = 500
    ceiling_claims: int = 500
    """Runs of the Prefect ceiling and of the worker ceiling (each its own pool)."""
    worker_ceiling_concurrency: int = 8
    """The worker ceiling's concurrency: our submitConcurrency unless given."""
    subjects: list[str] = field(default_factory=lambda: ["ours", "upstream"])
    lean: bool = True
    poll_seconds: int = 2
    submit_concurrency: int = 8
    sqlite: bool = False
    quick: bool = False
    shared: bool = False
    """One session (namespace, pool, subject process) per subject instead of per scenario."""
    tail_seconds: float = scenarios.TAIL_SECONDS
    scale_only: bool = False
    """Only the scale scenarios below (no ceilings, bursts, steady or crash)."""
    memory_sizes: list[int] = field(default_factory=list)
    """Active runs per step of the memory scenario (e.g. 1000,5000,10000); empty = off."""
    memory_step_limit: float = 900.0
    tracemalloc: bool = False
    memory_upstream: bool = True
    """Measure upstream in the memory scenario too (it takes about 1 s per run)."""
    pools: int = 0
    """WorkPools of the many-pools scenario on two replicas; 0 = off."""
    pool_runs: int = 10
    pool_idle_seconds: float = 120.0
    pool_lease_seconds: int = 15
    soak_seconds: float = 0.0
    soak_rate: float = 1.0
    soak_crash_every: int = 10


def parse(argv: list[str] | None = None) -> tuple[Plan, argparse.Namespace]:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="small sizes, short phases (< 3 min)")
    p.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    p.add_argument("--sizes", help="burst sizes, e.g. 200,1000,2000")
    p.add_argument("--only", choices=("ours", "upstream"), help="measure one subject only")
    p.add_argument("--steady-seconds", type=float)
    p.add_argument("--steady-rate", type=float)
    p.add_argument("--crash-runs", type=int)
    p.add_argument("--crash-modes", help="running,pending")
    p.add_argument("--ceiling-n", type=int, help="Jobs and claims of the ceiling loops")
    p.add_argument("--no-lean", action="store_true", help="skip our lean profile")
    p.add_argument("--lean", action="store_true", help="measure our lean profile in --quick")
    p.add_argument("--shared", action="store_true", help="one session per subject")
    p.add_argument("--no-ceilings", action="store_true")
    p.add_argument("--poll-seconds", type=int, default=2)
    p.add_argument("--submit-concurrency", type=int, default=8)
    p.add_argument(
        "--worker-ceiling-concurrency",
        type=int,
        help="concurrency of the worker ceiling loop (default: --submit-concurrency)",
    )
    p.add_argument("--workdir", type=Path, help="default: a fresh temporary directory")
    p.add_argument("--docs", type=Path, default=DOCS, help="markdown to update ('-' = none)")
    p.add_argument("--json", type=Path, help="also write the raw results here")
    p.add_argument("--report", type=Path, help="only render the table and docs from a results JSON")
    scale = p.add_argument_group("scale scenarios (off unless named; may run outside CI)")
    scale.add_argument(
        "--scale-only", action="store_true", help="run only the scale scenarios named below"
    )
    scale.add_argument(
        "--memory",
        metavar="SIZES",
        help="active runs per step, e.g. 1000,5000,10000: RSS, watches and calls per run",
    )
    scale.add_argument("--memory-step-limit", type=float, default=900.0, help="s per step")
    scale.add_argument(
        "--tracemalloc",
        action="store_true",
        help="memory: also the top allocation sites per run (inflates the RSS it reports)",
    )
    scale.add_argument(
        "--no-upstream-memory", action="store_true", help="memory: our operator only"
    )
    scale.add_argument("--pools", type=int, default=0, help="WorkPools on two replicas, e.g. 100")
    scale.add_argument("--pool-runs", type=int, default=10, help="runs per pool (0 = idle only)")
    scale.add_argument("--pool-idle-seconds", type=float, default=120.0)
    scale.add_argument("--pool-lease-seconds", type=int, default=15)
    scale.add_argument("--soak", type=float, default=0.0, metavar="SECONDS", help="e.g. 3600")
    scale.add_argument("--soak-rate", type=float, default=1.0, help="runs/s")
    scale.add_argument("--soak-crash-every", type=int, default=10, help="every n-th run crashes")
    args = p.parse_args(argv)
    if args.quick:
        plan = Plan(
            sizes=[50],
            steady_seconds=15,
            crash_runs=6,
            crash_modes=["running"],
            ceiling_jobs=100,
            ceiling_claims=100,
            lean=False,
            quick=True,
            shared=True,
            tail_seconds=3.0,
        )
    else:
        plan = Plan(sizes=[200, 1000, 2000])
    if args.sizes:
        plan.sizes = [int(s) for s in args.sizes.split(",") if s]
    if args.only:
        plan.subjects = [args.only]
    if args.steady_seconds is not None:
        plan.steady_seconds = args.steady_seconds
    if args.steady_rate is not None:
        plan.steady_rate = args.steady_rate
    if args.crash_runs is not None:
        plan.crash_runs = args.crash_runs
    if args.crash_modes:
        plan.crash_modes = [m for m in args.crash_modes.split(",") if m]
    if args.ceiling_n is not None:
        plan.ceiling_jobs = plan.ceiling_claims = args.ceiling_n
    if args.no_ceilings:
        plan.ceiling_jobs = plan.ceiling_claims = 0
    plan.lean = plan.lean and not args.no_lean and "ours" in plan.subjects
    if args.lean:
        plan.lean = True
    if args.shared:
        plan.shared = True
    plan.poll_seconds = args.poll_seconds
    plan.submit_concurrency = args.submit_concurrency
    plan.worker_ceiling_concurrency = args.worker_ceiling_concurrency or args.submit_concurrency
    plan.sqlite = args.sqlite
    plan.scale_only = args.scale_only
    plan.memory_sizes = [int(x) for x in (args.memory or "").split(",") if x]
    plan.memory_step_limit = args.memory_step_limit
    plan.tracemalloc = args.tracemalloc
    plan.memory_upstream = not args.no_upstream_memory
    plan.pools = args.pools
    plan.pool_runs = args.pool_runs
    plan.pool_idle_seconds = args.pool_idle_seconds
    plan.pool_lease_seconds = args.pool_lease_seconds
    plan.soak_seconds = args.soak
    plan.soak_rate = args.soak_rate
    plan.soak_crash_every = args.soak_crash_every
    if plan.scale_only:
        plan.sizes, plan.lean = [], False
        plan.ceiling_jobs = plan.ceiling_claims = 0
    return plan, args


async def measure_subject(
    w: World, subject: Subject, plan: Plan, sizes: list[int]
) -> dict[str, Any]:
    """Burst sizes, then steady, then crash; a fresh session each unless ``plan.shared``."""
    out: dict[str, Any] = {"burst": [], "crash": []}
    full = subject.label in ("ours", "upstream")
    jobs: list[tuple[str, Callable[[scenarios.Session], Awaitable[dict[str, Any]]]]] = []
    for n in sizes:
        jobs.append((f"burst{n}", lambda s, n=n: scenarios.burst(s, n, plan.tail_seconds)))
    if full and plan.steady_seconds > 0:
        jobs.append(
            ("steady", lambda s: scenarios.steady(s, plan.steady_rate, plan.steady_seconds))
        )
    if full:
        for mode in plan.crash_modes:
            jobs.append((f"crash-{mode}", lambda s, m=mode: scenarios.crash(s, plan.crash_runs, m)))

    def store(kind: str, result: dict[str, Any]) -> None:
        if kind == "steady":
            out["steady"] = result
        elif kind.startswith("crash"):
            out["crash"].append({"mode": kind.split("-", 1)[1], **result})
        else:
            out["burst"].append({"n": int(kind[5:]), **result})

    if plan.shared:
        try:
            async with scenarios.Session(w, subject, "all") as session:
                for kind, job in jobs:
                    store(kind, await _guard(f"{subject.label} {kind}", job(session)))
        except Exception as exc:
            log(f"{subject.label}: session failed: {exc!r}")
            out["error"] = f"{type(exc).__name__}: {exc}"
        return out
    for kind, job in jobs:

        async def in_session(kind: str = kind, job: Any = job) -> dict[str, Any]:
            async with scenarios.Session(w, subject, kind) as session:
                result: dict[str, Any] = await job(session)
                return result

        store(kind, await _guard(f"{subject.label} {kind}", in_session()))
    return out


async def _guard(what: str, coro: Any) -> dict[str, Any]:
    """A failed scenario is reported, not fatal: the other numbers are still worth having."""
    try:
        result: dict[str, Any] = await coro
        return result
    except Exception as exc:
        log(f"{what} FAILED: {exc!r}")
        return {"error": f"{type(exc).__name__}: {exc}"}


async def run(plan: Plan, w: World) -> dict[str, Any]:
    results: dict[str, Any] = {"plan": asdict(plan), "subjects": {}, "ceilings": {}}
    logdir = w.workdir / "subject-logs"
    logdir.mkdir(exist_ok=True)
    if plan.ceiling_jobs:
        results["ceilings"]["kubernetes_jobs"] = await _guard(
            "kubernetes ceiling", scenarios.kube_ceiling(w, plan.ceiling_jobs)
        )
    if plan.ceiling_claims:
        results["ceilings"]["prefect_claims"] = await _guard(
            "prefect ceiling", scenarios.prefect_ceiling(w, plan.ceiling_claims)
        )
        results["ceilings"]["worker_claim_and_job"] = await _guard(
            "worker ceiling",
            scenarios.worker_ceiling(w, plan.ceiling_claims, plan.worker_ceiling_concurrency),
        )
    ours_profile = Profile(
        "default", poll_seconds=plan.poll_seconds, submit_concurrency=plan.submit_concurrency
    )
    scale_results = await run_scale(plan, w, ours_profile, logdir)
    if scale_results:
        results["scale"] = scale_results
    if plan.scale_only:
        return results
    if "ours" in plan.subjects:
        results["subjects"]["ours"] = await measure_subject(
            w, Ours(w, ours_profile, logdir), plan, plan.sizes
        )
    if "upstream" in plan.subjects:
        results["subjects"]["upstream"] = await measure_subject(
            w, Upstream(w, plan.poll_seconds, logdir), plan, plan.sizes
        )
    if plan.lean:
        lean = replace(
            LEAN_PROFILE,
            poll_seconds=plan.poll_seconds,
            submit_concurrency=plan.submit_concurrency,
        )
        results["subjects"]["ours-lean"] = await measure_subject(
            w, Ours(w, lean, logdir), plan, [max(plan.sizes)]
        )
    return results


async def run_scale(plan: Plan, w: World, profile: Profile, logdir: Path) -> dict[str, Any]:
    """The scale scenarios that ``plan`` names (memory, pools, soak), each subject in turn."""
    out: dict[str, Any] = {}
    if plan.memory_sizes:
        out["memory"] = {}
        for label in plan.subjects:
            if label == "upstream" and not plan.memory_upstream:
                continue
            trace_dir = w.workdir / f"tracemalloc-{label}" if plan.tracemalloc else None
            subject: Subject
            if label == "ours":
                env = scale.tracemalloc_env(trace_dir) if trace_dir is not None else None
                subject = Ours(w, profile, logdir, extra_env=env)
            else:
                subject = Upstream(w, plan.poll_seconds, logdir)
                trace_dir = None  # the hook is only wired into our subprocess

            async def one(s: Subject = subject, t: Path | None = trace_dir) -> dict[str, Any]:
                async with scenarios.Session(w, s, "memory") as session:
                    return await scale.memory(session, plan.memory_sizes, plan.memory_step_limit, t)

            out["memory"][label] = await _guard(f"{label} memory", one())
    if plan.pools:
        out["pools"] = await _guard(
            "pools",
            scale.pools(
                w,
                plan.pools,
                plan.pool_runs,
                plan.pool_idle_seconds,
                plan.pool_lease_seconds,
                logdir,
            ),
        )
        if "upstream" in plan.subjects:
            out["pools_upstream_one_worker"] = await _guard(
                "upstream idle", scale.upstream_idle(w, plan.pool_idle_seconds, logdir)
            )
    if plan.soak_seconds:
        out["soak"] = {}
        for label in plan.subjects:
            subj: Subject = (
                Ours(w, profile, logdir)
                if label == "ours"
                else Upstream(w, plan.poll_seconds, logdir)
            )

            async def soak_one(s: Subject = subj) -> dict[str, Any]:
                async with scenarios.Session(w, s, "soak") as session:
                    return await scale.soak(
                        session,
                        plan.soak_seconds,
                        plan.soak_rate,
                        plan.soak_crash_every,
                        window=min(600.0, plan.soak_seconds / 6),
                    )

            out["soak"][label] = await _guard(f"{label} soak", soak_one())
    return out


def main(argv: list[str] | None = None) -> int:
    plan, args = parse(argv)
    if args.report:
        results = json.loads(args.report.read_text())
        if results["plan"].get("sizes"):
            print(report.table(results))
        if results.get("scale"):
            print(report.scale_section(results))
        if str(args.docs) != "-":
            report.write_docs(args.docs, results)
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="pjo-bench-"))
    started = time.monotonic()
    meta = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.system()} {platform.machine()}, {_cpus()} CPUs, "
        f"Python {platform.python_version()}",
    }
    meta["load_average_start"] = os.getloadavg()[0]
    with world(workdir, sqlite=plan.sqlite) as w:
        meta["database"] = w.database
        results = asyncio.run(run(plan, w))
    meta["load_average_end"] = os.getloadavg()[0]
    meta["total_seconds"] = round(time.monotonic() - started)
    results["meta"] = meta
    if plan.sizes:
        print(report.table(results))
    if results.get("scale"):
        print(report.scale_section(results))
    raw = args.json or workdir / "results.json"
    raw.write_text(json.dumps(results, indent=2, default=str))
    print(f"raw results: {raw}", file=sys.stderr)
    if str(args.docs) != "-":
        report.write_docs(args.docs, results)
        print(f"updated {args.docs}", file=sys.stderr)
    return 0


def _cpus() -> int:
    return os.cpu_count() or 0

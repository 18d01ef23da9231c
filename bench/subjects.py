"""The two workers under test, each started fresh per scenario in its own pool + namespace.

- ``Ours``: prefect-job-operator as a subprocess (``OperatorProcess``) watching one namespace,
  driven by a WorkPool CR in that namespace.
- ``Upstream``: ``prefect worker start --type kubernetes`` (prefect-kubernetes 0.8.0 from the
  venv) with its in-process observer limited to the namespace.

Both reach Prefect through the counting proxy and Kubernetes as the audited ServiceAccount.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml
from tests.infra import prefect_setup as ps
from tests.infra.cluster import kill_group
from tests.infra.operator_process import OperatorProcess

from bench.world import REPO_ROOT, World

DEFAULT_TEMPLATE = REPO_ROOT / "tests" / "data" / "oracle" / "default-base-job-template.json"
PREFETCH_SECONDS = 10


@dataclass(frozen=True)
class Profile:
    """Our worker knobs; upstream only shares the poll interval.

    The defaults are the operator's own (labels on, the Pending "Submitting" proposal off,
    worker events on), so the "default" profile is what a WorkPool gets when it sets none;
    the lean profile turns off everything that is only for the Prefect UI.
    """

    name: str
    poll_seconds: int = 2
    submit_concurrency: int = 4
    run_labels: bool = True
    submitting_state: bool = False
    emit_events: bool = True
    pod_events: bool = True


DEFAULT_PROFILE = Profile("default")
LEAN_PROFILE = Profile(
    "lean", run_labels=False, submitting_state=False, emit_events=False, pod_events=False
)


class Subject(Protocol):
    label: str

    @property
    def pid(self) -> int: ...

    async def start(self, pool: str, namespace: str) -> None: ...

    def stop(self) -> None: ...

    def self_reported_api_calls(self) -> int | None: ...

    def timings(self) -> dict[str, tuple[float, float]]: ...

    def log_tail(self, lines: int = 40) -> str: ...


class Ours:
    def __init__(
        self,
        world: World,
        profile: Profile,
        logdir: Path,
        extra_env: dict[str, str] | None = None,
    ) -> None:
        self.world = world
        self.profile = profile
        self.label = "ours" if profile.name == "default" else f"ours-{profile.name}"
        self.logdir = logdir
        self.extra_env = dict(extra_env or {})
        """Added to the operator's environment (e.g. ``bench.tracehook``'s switch)."""
        self.op: OperatorProcess | None = None

    @property
    def pid(self) -> int:
        assert self.op is not None and self.op.proc is not None
        return self.op.proc.pid

    async def start(self, pool: str, namespace: str) -> None:
        p = self.profile
        body = {
            "apiVersion": "prefect-job-operator.dev/v1alpha1",
            "kind": "WorkPool",
            "metadata": {"name": "bench", "namespace": namespace},
            "spec": {
                "poolName": pool,
                "worker": {
                    "pollIntervalSeconds": p.poll_seconds,
                    "prefetchSeconds": PREFETCH_SECONDS,
                    "submitConcurrency": p.submit_concurrency,
                    "runLabels": p.run_labels,
                    "submittingState": p.submitting_state,
                    "emitEvents": p.emit_events,
                    "podEvents": p.pod_events,
                },
            },
        }
        self.world.cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        kube_env = {**self.world.cluster.env, "KUBECONFIG": str(self.world.subject_kubeconfig)}
        self.op = OperatorProcess(
            kube_env=kube_env,
            api_url=self.world.proxy_url,
            log_path=self.logdir / f"{self.label}-{namespace}.log",
            namespaces=[namespace],
            instance=f"pjo-{namespace}"[:63],
            identity=f"bench-{namespace}",
            # Production intervals, not the e2e tests' fast ones.
            extra_env={
                "PJO_SWEEP_INTERVAL_SECONDS": "10",
                "PJO_STATUS_INTERVAL_SECONDS": "5",
                "PJO_LEASE_DURATION_SECONDS": "15",
                "PJO_CANCEL_GRACE_SECONDS": "30",
                **self.extra_env,
            },
        )
        # Under tracemalloc the imports alone take minutes on a loaded machine.
        self.op.start(wait=False)
        self.op.wait_healthy(600 if self.extra_env else 60)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            out = self.world.cluster.kubectl(
                "get", "workpool", "bench", "-n", namespace, "-o", "json", check=False
            )
            if out.returncode == 0:
                status = json.loads(out.stdout).get("status") or {}
                ready = [c for c in status.get("conditions") or [] if c.get("type") == "Ready"]
                if ready and ready[0].get("status") == "True":
                    return
            await asyncio.sleep(0.5)
        raise RuntimeError(f"WorkPool never became Ready:\n{self.op.log_tail()}")

    def stop(self) -> None:
        if self.op is not None:
            self.op.stop()

    def self_reported_api_calls(self) -> int | None:
        if self.op is None:
            return None
        total = 0.0
        for line in self.op.metrics().splitlines():
            if line.startswith("prefect_job_operator_prefect_api_requests_total{"):
                total += float(line.rsplit(" ", 1)[1])
        return int(total)

    def log_tail(self, lines: int = 40) -> str:
        return self.op.log_tail(lines) if self.op else ""

    def timings(self) -> dict[str, tuple[float, float]]:
        """(sum, count) of our latency histograms, per series: where a run's time goes."""
        if self.op is None:
            return {}
        out: dict[str, tuple[float, float]] = {}
        for line in self.op.metrics().splitlines():
            for suffix, index in (("_sum", 0), ("_count", 1)):
                name = line.split("{", 1)[0]
                if name.endswith(f"_seconds{suffix}") and name.startswith("prefect_job_operator"):
                    series = line.rsplit(" ", 1)[0].replace(suffix, "", 1)
                    current = list(out.get(series, (0.0, 0.0)))
                    current[index] = float(line.rsplit(" ", 1)[1])
                    out[series] = (current[0], current[1])
        return out


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a subject in its own process group (stopped as a group)."""
    with log_path.open("ab") as fh:
        return subprocess.Popen(
            argv,
            env=env,
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )


class Upstream:
    label = "upstream"

    def __init__(self, world: World, poll_seconds: int, logdir: Path) -> None:
        self.world = world
        self.poll_seconds = poll_seconds
        self.logdir = logdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    async def start(self, pool: str, namespace: str) -> None:
        template: dict[str, Any] = json.loads(DEFAULT_TEMPLATE.read_text())
        async with ps.setup_client(self.world.server.api_url) as http:
            await ps.create_work_pool(http, pool, base_job_template=template)
        home = self.logdir / f"upstream-home-{namespace}"
        home.mkdir(parents=True, exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "PJO_"))}
        env.update(
            {
                "KUBECONFIG": str(self.world.subject_kubeconfig),
                "PREFECT_HOME": str(home),
                "PREFECT_API_URL": self.world.proxy_url,
                "PREFECT_WORKER_QUERY_SECONDS": str(self.poll_seconds),
                "PREFECT_WORKER_PREFETCH_SECONDS": str(PREFETCH_SECONDS),
                "PREFECT_INTEGRATIONS_KUBERNETES_OBSERVER_NAMESPACES": namespace,
                "PYTHONUNBUFFERED": "1",
            }
        )
        self.log_path = self.logdir / f"upstream-{namespace}.log"
        argv = [sys.executable, "-m", "prefect", "worker", "start"]
        argv += ["--type", "kubernetes", "--pool", pool, "--name", f"bench-{namespace}"]
        self.proc = _spawn(argv, env, self.log_path)
        deadline = time.monotonic() + 90
        async with ps.setup_client(self.world.server.api_url) as http:
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"prefect worker exited:\n{self.log_tail()}")
                workers = await ps.call(http, "POST", f"/work_pools/{pool}/workers/filter", {})
                if workers:
                    break
                await asyncio.sleep(0.5)
            else:
                raise RuntimeError(f"prefect worker never heartbeated:\n{self.log_tail()}")
        # The observer (kopf, in a thread) starts alongside; give its watches a moment.
        await asyncio.sleep(3)

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc.pid, grace=15)

    def self_reported_api_calls(self) -> int | None:
        return None

    def timings(self) -> dict[str, tuple[float, float]]:
        return {}

    def log_tail(self, lines: int = 40) -> str:
        if self.log_path is None:
            return ""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


__all__ = ["DEFAULT_PROFILE", "LEAN_PROFILE", "Ours", "Profile", "Subject", "Upstream"]

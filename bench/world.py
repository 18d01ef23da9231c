"""The shared setup of one benchmark run: control plane, database, Prefect server, proxy.

Everything is local, loopback only, and torn down on exit (process groups, pid files).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.infra.cluster import free_port, kill_group, wait_crd_established, wait_for
from tests.infra.prefect_server import PrefectServer, start_postgres, start_prefect_server

from bench.kube import AuditedCluster, AuditLog, subject_kubeconfig

REPO_ROOT = Path(__file__).resolve().parents[1]
CRD = REPO_ROOT / "crds" / "workpools.prefect-job-operator.dev.yaml"
SERVER_ENV = {
    # Marking waiting runs Late is a write per run that would land in the middle of a burst.
    "PREFECT_SERVER_SERVICES_LATE_RUNS_ENABLED": "false",
}


@dataclass
class World:
    cluster: AuditedCluster
    server: PrefectServer
    proxy_url: str
    """What the subjects use as PREFECT_API_URL (counted); the harness uses server.api_url."""
    subject_kubeconfig: Path
    audit: AuditLog
    workdir: Path
    database: str

    def proxy_stats(self) -> dict[str, int]:
        base = self.proxy_url.removesuffix("/api")
        counts: dict[str, int] = httpx.get(f"{base}/__bench__/stats", timeout=10).json()["requests"]
        return counts

    def proxy_reset(self) -> None:
        httpx.post(f"{self.proxy_url.removesuffix('/api')}/__bench__/reset", timeout=10)


def ensure_postgres() -> None:
    """Debian's PostgreSQL, installed with apt-get when missing and we are root."""
    if list(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl")):
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise SystemExit(
            "bench: PostgreSQL is not installed. Run `apt-get install -y postgresql` as root "
            "(or use --sqlite for a quick, less representative run)."
        )
    print("bench: installing PostgreSQL with apt-get ...", file=sys.stderr)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "postgresql"], check=True, env=env)


@contextlib.contextmanager
def _proxy(upstream_api: str, log: Path) -> Iterator[str]:
    port = free_port()
    base = upstream_api.removesuffix("/api")
    with log.open("ab") as fh:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bench.proxy", "--port", str(port), "--upstream", base],
            stdout=fh,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=REPO_ROOT,
            start_new_session=True,
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for("counting proxy", lambda: httpx.get(f"{url}/api/health").status_code == 200, 30)
        yield f"{url}/api"
    finally:
        kill_group(proc.pid, grace=5)


@contextlib.contextmanager
def world(
    workdir: Path, *, sqlite: bool, pod_duration: float = 1.0, kwok_nodes: int = 4
) -> Iterator[World]:
    workdir.mkdir(parents=True, exist_ok=True)
    if not sqlite:
        ensure_postgres()
    t0 = time.monotonic()
    with contextlib.ExitStack() as stack:
        cluster = AuditedCluster(workdir / "k8s", kwok_nodes=kwok_nodes, pod_duration=pod_duration)
        stack.callback(cluster.stop)
        cluster.start()
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
        wait_crd_established(cluster, "workpools.prefect-job-operator.dev")
        kubeconfig = subject_kubeconfig(cluster, workdir / "subject.kubeconfig")
        database_url = None
        if not sqlite:
            pg = stack.enter_context(start_postgres(tmpdir=None))
            database_url = pg.url
        server = stack.enter_context(
            start_prefect_server(
                database_url=database_url, home=workdir / "prefect-home", extra_env=SERVER_ENV
            )
        )
        proxy_url = stack.enter_context(_proxy(server.api_url, workdir / "proxy.log"))
        print(f"bench: world ready in {time.monotonic() - t0:.0f}s ({workdir})", file=sys.stderr)
        yield World(
            cluster=cluster,
            server=server,
            proxy_url=proxy_url,
            subject_kubeconfig=kubeconfig,
            audit=AuditLog(cluster.audit_log),
            workdir=workdir,
            database="SQLite" if sqlite else "PostgreSQL",
        )

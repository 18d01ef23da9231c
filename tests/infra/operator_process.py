"""Run the operator as a real subprocess (`python -m prefect_job_operator run`).

Tests, the demo and the benchmarks use it so that SIGKILL and restarts are real.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.infra.cluster import free_port, kill_group, rss_bytes

REPO_ROOT = Path(__file__).resolve().parents[2]


class OperatorProcess:
    """One operator replica; ``start()``, ``kill()`` (SIGKILL), ``stop()``, ``restart()``."""

    def __init__(
        self,
        *,
        kube_env: Mapping[str, str],
        api_url: str,
        log_path: Path,
        namespaces: Sequence[str] = (),
        instance: str = "prefect-job-operator",
        identity: str = "operator-0",
        extra_env: Mapping[str, str] | None = None,
    ) -> None:
        self.kube_env = dict(kube_env)
        self.api_url = api_url
        self.log_path = log_path
        self.namespaces = list(namespaces)
        self.instance = instance
        self.identity = identity
        self.extra_env = dict(extra_env or {})
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in self.kube_env.items() if not k.startswith(("PREFECT_", "PJO_"))}
        env.update(
            {
                "PJO_API_URL": self.api_url,
                "PJO_INSTANCE": self.instance,
                "PJO_IDENTITY": self.identity,
                "PJO_HEALTH_HOST": "127.0.0.1",
                "PJO_HEALTH_PORT": str(self.port),
                "PJO_LOG_FORMAT": "plain",
                "PJO_SWEEP_INTERVAL_SECONDS": "2",
                "PJO_RECOVERY_SWEEP_INTERVAL_SECONDS": "4",
                "PJO_STATUS_INTERVAL_SECONDS": "1",
                "PJO_CANCEL_GRACE_SECONDS": "2",
                "PJO_LEASE_DURATION_SECONDS": "6",
                "PYTHONPATH": os.pathsep.join([str(REPO_ROOT / "operator"), str(REPO_ROOT)]),
                "PYTHONUNBUFFERED": "1",
            }
        )
        env.update(self.extra_env)
        return env

    def start(self, wait: bool = True) -> OperatorProcess:
        argv = [sys.executable, "-m", "prefect_job_operator", "run"]
        for ns in self.namespaces:
            argv += ["--namespace", ns]
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        log.write(f"\n===== start #{self.starts + 1} =====\n".encode())
        log.flush()
        self.proc = subprocess.Popen(
            argv, env=self.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()
        if self.starts == 0:
            atexit.register(self.kill)  # never leave an operator behind a crashed test run
        self.starts += 1
        if wait:
            self.wait_healthy()
        return self

    def wait_healthy(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(
                    f"operator exited with {self.proc.returncode}:\n{self.log_tail()}"
                )
            try:
                if httpx.get(f"{self.url}/healthz", timeout=2).status_code in (200, 503):
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError(f"operator did not serve /healthz in {timeout}s:\n{self.log_tail()}")

    def kill(self) -> None:
        """SIGKILL the whole process group: no cleanup, no lease release."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        """SIGTERM (graceful: the Lease is released), SIGKILL after 20 s."""
        if self.proc is None or self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(20)  # reaps it; polling the group would see the zombie
        except subprocess.TimeoutExpired:
            kill_group(self.proc.pid, grace=0)
            self.proc.wait(10)

    def restart(self) -> None:
        self.kill()
        self.start()

    def rss(self) -> int:
        return rss_bytes(self.proc.pid) if self.proc is not None else 0

    def metrics(self) -> str:
        return httpx.get(f"{self.url}/metrics", timeout=5).text

    def health(self) -> tuple[int, Any]:
        r = httpx.get(f"{self.url}/healthz", timeout=5)
        return r.status_code, r.json()

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

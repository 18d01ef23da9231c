"""End-to-end harness: a WorkPool in a fresh namespace, its operator, and Prefect helpers."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx
import yaml

from tests.infra import prefect_setup as ps
from tests.infra.cluster import LocalCluster
from tests.infra.operator_process import OperatorProcess

T = TypeVar("T")
FINAL = {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}


async def eventually(
    what: str,
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = 30.0,
    interval: float = 0.25,
) -> T:
    """Poll until probe returns a truthy value; fail naming `what` and the last value."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        value = await probe()
        if value:
            return value
        last = value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


class E2E:
    """One test's world: namespace, WorkPool CR, operator process, Prefect client."""

    def __init__(
        self, cluster: LocalCluster, namespace: str, api_url: str, workdir: Path, pool_name: str
    ) -> None:
        self.cluster = cluster
        self.ns = namespace
        self.api_url = api_url
        self.pool = pool_name
        self.http = ps.setup_client(api_url)
        self.operator = OperatorProcess(
            kube_env=cluster.env,
            api_url=api_url,
            log_path=workdir / "operator.log",
            namespaces=[namespace],
            instance=f"pjo-{namespace}"[:63],
            identity=f"op-{namespace}",
        )

    # -- Kubernetes -------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> Any:
        return self.cluster.kubectl(*args, input=input, check=check)

    def apply_workpool(self, spec: dict[str, Any], name: str = "pool") -> None:
        body = {
            "apiVersion": "prefect-job-operator.dev/v1alpha1",
            "kind": "WorkPool",
            "metadata": {"name": name, "namespace": self.ns},
            "spec": {"poolName": self.pool, **spec},
        }
        self.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-n", self.ns, "-o", "json").stdout)

    def jobs(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json("jobs")["items"]
        return items

    def jobs_by_run(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for job in self.jobs():
            run_id = job["metadata"]["labels"].get("prefect.io/flow-run-id")
            out.setdefault(run_id, []).append(job)
        return out

    def workpool_status(self, name: str = "pool") -> dict[str, Any]:
        status: dict[str, Any] = self.get_json("workpool", name).get("status") or {}
        return status

    def condition(self, type_: str, name: str = "pool") -> dict[str, Any]:
        for cond in self.workpool_status(name).get("conditions") or []:
            if cond["type"] == type_:
                return dict(cond)
        return {}

    # -- Prefect --------------------------------------------------------------------------
    async def deployment(self, job_variables: dict[str, Any] | None = None, **kw: Any) -> str:
        flow = await ps.create_flow(self.http, ps.unique("flow"))
        dep = await ps.create_deployment(
            self.http,
            flow_id=flow["id"],
            name=ps.unique("dep"),
            work_pool_name=self.pool,
            job_variables={"namespace": self.ns, **(job_variables or {})},
            **kw,
        )
        return str(dep["id"])

    async def run(self, deployment_id: str, **kw: Any) -> str:
        return str((await ps.create_flow_run(self.http, deployment_id, **kw))["id"])

    async def flow_run(self, run_id: str) -> dict[str, Any]:
        return await ps.read_flow_run(self.http, run_id)

    async def wait_state(
        self, run_id: str, state_type: str, timeout: float = 30.0
    ) -> dict[str, Any]:
        async def probe() -> dict[str, Any] | None:
            run = await self.flow_run(run_id)
            return run if run["state"]["type"] == state_type else None

        return await eventually(f"flow run {run_id} to be {state_type}", probe, timeout)

    async def wait_pid(self, run_id: str, timeout: float = 30.0) -> str:
        async def probe() -> str | None:
            return (await self.flow_run(run_id)).get("infrastructure_pid")

        return await eventually(f"infrastructure_pid of {run_id}", probe, timeout)

    async def pool_json(self) -> dict[str, Any]:
        result: dict[str, Any] = await ps.call(self.http, "GET", f"/work_pools/{self.pool}")
        return result

    async def close(self) -> None:
        try:
            self.operator.stop()
        finally:
            await self.http.aclose()


def fast_worker(**overrides: Any) -> dict[str, Any]:
    """Test intervals: poll every second, prefetch a little."""
    return {
        "pollIntervalSeconds": 1,
        "prefetchSeconds": 5,
        "heartbeatIntervalSeconds": 5,
        **overrides,
    }


async def wait_ready(e2e: E2E, timeout: float = 40.0) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        cond = e2e.condition("Ready")
        return cond if cond.get("status") == "True" else None

    try:
        return await eventually("WorkPool Ready=True", probe, timeout)
    except AssertionError:
        raise AssertionError(
            f"status: {e2e.workpool_status()}\noperator log:\n{e2e.operator.log_tail()}"
        ) from None


__all__ = ["E2E", "eventually", "fast_worker", "httpx", "wait_ready"]

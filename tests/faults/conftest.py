"""The fault suite's world: a control plane of its own (its apiserver and etcd get killed),
shared by the module; the session's Prefect server; a TCP proxy per operator replica."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.harness import E2E
from tests.infra import prefect_setup as ps
from tests.infra.cluster import LocalCluster, wait_crd_established, wait_for
from tests.infra.operator_process import OperatorProcess
from tests.infra.prefect_server import PrefectServer
from tests.infra.tcp_proxy import TcpProxy, kubeconfig_via

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD = REPO_ROOT / "crds" / "workpools.prefect-job-operator.dev.yaml"


@pytest.fixture(scope="module")
def fault_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Its own control plane: killing its apiserver never disturbs the session's tests."""
    cluster = LocalCluster(tmp_path_factory.mktemp("k8s-faults"), kwok_nodes=1).start()
    try:
        cluster.kubectl("apply", "--server-side", "-f", str(CRD))
        wait_crd_established(cluster, "workpools.prefect-job-operator.dev")
        yield cluster
    finally:
        cluster.stop()


@dataclass
class Tally:
    """The suite's totals: faults tried / survived / runs lost / duplicates."""

    tried: int = 0
    survived: int = 0
    lost: int = 0
    duplicates: int = 0
    lines: list[str] = field(default_factory=list)


TALLY = Tally()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if TALLY.tried:
        terminalreporter.section("fault suite")
        for line in TALLY.lines:
            terminalreporter.write_line(line)
        terminalreporter.write_line(
            f"faults tried / survived / runs lost / duplicates: {TALLY.tried} / "
            f"{TALLY.survived} / {TALLY.lost} / {TALLY.duplicates}"
        )


class FaultWorld(E2E):
    """An E2E world whose operator talks to the API server through a proxy."""

    def __init__(self, cluster: LocalCluster, ns: str, api_url: str, workdir: Path) -> None:
        super().__init__(cluster, ns, api_url, workdir, ps.unique("pool"))
        self.workdir = workdir
        self.proxies: list[TcpProxy] = []
        self.replicas: list[OperatorProcess] = []
        self.proxy = self.proxied(self.operator)

    def proxied(self, op: OperatorProcess) -> TcpProxy:
        """Point ``op`` at the API server through a new proxy of its own."""
        proxy = TcpProxy("127.0.0.1", self.cluster.ports["apiserver"]).start()
        self.proxies.append(proxy)
        cfg = kubeconfig_via(
            self.cluster.kubeconfig, self.workdir / f"via-{proxy.port}.kubeconfig", proxy.port
        )
        op.kube_env["KUBECONFIG"] = str(cfg)
        op.extra_env.setdefault("PJO_SUBMIT_RETRY_SECONDS", "8")
        return proxy

    def replica(self, suffix: str) -> tuple[OperatorProcess, TcpProxy]:
        op = OperatorProcess(
            kube_env=self.cluster.env,
            api_url=self.api_url,
            log_path=self.workdir / f"operator-{suffix}.log",
            namespaces=[self.ns],
            instance=self.operator.instance,
            identity=f"{self.operator.identity}-{suffix}",
        )
        self.replicas.append(op)
        return op, self.proxied(op)

    def events(self, reason: str | None = None) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json("events")["items"]
        return [e for e in items if reason is None or e.get("reason") == reason]

    async def verdict(self, runs: list[str], fault: str) -> None:
        """Every run got exactly one Job and its pid; none Crashed. Counted in the tally."""
        TALLY.tried += 1
        by_run = self.jobs_by_run()
        dup = sum(1 for r in runs if len(by_run.get(r, [])) > 1)
        lost = 0
        for r in runs:
            run = await self.flow_run(r)
            if run["state"]["type"] == "CRASHED" or len(by_run.get(r, [])) != 1:
                lost += 1
        TALLY.lost += lost
        TALLY.duplicates += dup
        ok = lost == 0 and dup == 0
        TALLY.survived += int(ok)
        TALLY.lines.append(f"{fault}: {len(runs)} runs, {lost} lost, {dup} duplicate Jobs")
        assert dup == 0, {r: [j["metadata"]["name"] for j in by_run[r]] for r in runs}
        assert lost == 0, f"{lost} of {len(runs)} runs lost to {fault}"

    async def close(self) -> None:
        try:
            for op in self.replicas:
                op.stop()
            await super().close()
        finally:
            for proxy in self.proxies:
                proxy.stop()


@pytest.fixture
async def world(
    fault_cluster: LocalCluster,
    prefect_server: PrefectServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[FaultWorld]:
    ns = f"f-{uuid.uuid4().hex[:8]}"
    fault_cluster.kubectl("create", "namespace", ns)
    wait_for(
        f"ServiceAccount {ns}/default",
        lambda: (
            fault_cluster.kubectl("get", "sa", "default", "-n", ns, check=False).returncode == 0
        ),
        30,
        0.2,
    )
    w = FaultWorld(fault_cluster, ns, prefect_server.api_url, tmp_path)
    try:
        yield w
    finally:
        rep = getattr(request.node, "rep_call", None)
        if rep is not None and rep.failed:
            for op in [w.operator, *w.replicas]:
                lines = [
                    line
                    for line in op.log_tail(100000).splitlines()
                    if not line.startswith("Handler '")
                ]
                print(f"--- {op.log_path} ---\n" + "\n".join(lines[-150:]))
        await w.close()
        fault_cluster.kubectl("delete", "namespace", ns, "--wait=false", check=False)
        # The next test starts on a recovered control plane (a restarted apiserver or etcd
        # left the controller-manager in client-go's watch backoff for over 30 s).
        await asyncio.to_thread(fault_cluster.wait_controllers_serve)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)

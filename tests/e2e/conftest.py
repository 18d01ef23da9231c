"""Fixtures of the end-to-end tier: the real control plane, a real Prefect server and the
operator as a subprocess, one namespace and one operator per test."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.e2e.harness import E2E
from tests.infra import prefect_setup as ps
from tests.infra.cluster import LocalCluster, wait_crd_established
from tests.infra.prefect_server import PrefectServer

REPO_ROOT = Path(__file__).resolve().parents[2]
CRD = REPO_ROOT / "crds" / "workpools.prefect-job-operator.dev.yaml"


@pytest.fixture(scope="session")
def workpool_crd(k8s_cluster: LocalCluster) -> LocalCluster:
    k8s_cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    wait_crd_established(k8s_cluster, "workpools.prefect-job-operator.dev")
    return k8s_cluster


@pytest.fixture
async def e2e(
    workpool_crd: LocalCluster,
    k8s_namespace: str,
    prefect_server: PrefectServer,
    tmp_path: Path,
    request: pytest.FixtureRequest,
) -> AsyncIterator[E2E]:
    world = E2E(workpool_crd, k8s_namespace, prefect_server.api_url, tmp_path, ps.unique("pool"))
    try:
        yield world
    finally:
        failed = getattr(request.node, "rep_call", None)
        if failed is not None and failed.failed:
            print(
                f"--- operator log ({world.operator.log_path}) ---\n{world.operator.log_tail(120)}"
            )
        await world.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    rep = outcome.get_result()
    setattr(item, f"rep_{rep.when}", rep)

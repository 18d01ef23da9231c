"""Issue #10's acceptance walk: the path a new user takes, exactly as the README writes it.

A fresh cluster with the real node (the operator and flow-run images built here, nothing
pulled). The README's `kubectl create secret` and `helm install` commands run as written (and
once more with namespaced RBAC added), examples/workpool.yaml goes into its own namespace with
the default job template, a deployment with **no** job variables gets a flow run, and the run
reaches Completed in a container on the node; `kubectl get wp` and `kubectl describe wp` show it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import docs
from tests.infra import images as image_archives
from tests.infra import prefect_setup as ps
from tests.infra.cluster import REAL_NODE_NAME, LocalCluster
from tests.infra.prefect_server import start_prefect_server

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect, pytest.mark.slow]

POOL_NS = "datatrap"  # not `default`: the namespace that used to crash every run
EXTRA = {
    "cluster": "",
    "namespaced": f" --set rbac.mode=namespaced --set 'watchNamespaces={{{POOL_NS}}}'",
}


@pytest.fixture(scope="module")
def images() -> tuple[Path, ...]:
    """The operator and flow-run image archives (`make image`; cached by their inputs)."""
    return image_archives.build("operator", "flow-run")


@pytest.fixture
def cluster(tmp_path: Path, images: tuple[Path, ...]) -> Iterator[LocalCluster]:
    c = LocalCluster(tmp_path / "k8s", kwok_nodes=0, real_node=True, node_images=images).start()
    try:
        yield c
    finally:
        c.stop()


def readme_install_commands() -> list[str]:
    """The README's secret and `helm install` commands, as the user copies them."""
    commands = [c for b in docs.markdown_blocks(docs.ROOT / "README.md") for c in b.commands]
    wanted = [c for c in commands if c.startswith(("kubectl create secret", "helm install"))]
    assert len(wanted) == 2, commands
    return wanted


def shell(command: str, env: dict[str, str]) -> str:
    proc = docs.run_command(command, env, timeout=400)
    assert proc.returncode == 0, f"`{command}`: {proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.mark.parametrize("mode", sorted(EXTRA))
async def test_the_readme_path_completes_a_run_in_a_namespace_of_its_own(
    mode: str, cluster: LocalCluster, tmp_path: Path
) -> None:
    started = time.monotonic()
    with start_prefect_server(home=tmp_path / "prefect") as server:
        env = {k: v for k, v in cluster.env.items() if not k.startswith(("PJO_", "PREFECT_"))}
        env.update(
            PREFECT_API_URL=cluster.pod_url(server.api_url),
            PREFECT_API_KEY="pnu_readme-path-test-key",
            HELM_CACHE_HOME=str(tmp_path / "helm-cache"),
            HELM_CONFIG_HOME=str(tmp_path / "helm-config"),
            HELM_DATA_HOME=str(tmp_path / "helm-data"),
        )
        secret, install = readme_install_commands()
        cluster.kubectl("create", "namespace", POOL_NS)  # a namespaced install needs it first
        shell(secret, env)
        shell(install + EXTRA[mode], env)
        shell(f"kubectl apply -n {POOL_NS} -f examples/workpool.yaml", env)
        cluster.kubectl(
            "wait", "-n", POOL_NS, "--for=condition=Ready", "workpool/demo-pool", "--timeout=120s"
        )

        async with ps.setup_client(server.api_url) as http:
            flow = await ps.create_flow(http, "hello")
            dep = await ps.create_deployment(  # no job variables: the default template must do
                http,
                flow_id=flow["id"],
                name="hello-k8s",
                work_pool_name="demo-pool",
                entrypoint="hello_flow.py:hello",
                pull_steps=ps.BAKED_FLOWS_PULL_STEPS,
            )
            assert not dep.get("job_variables")
            run = await ps.create_flow_run(http, dep["id"])
            deadline = time.monotonic() + 300
            state = ""
            while time.monotonic() < deadline:
                fr = await ps.read_flow_run(http, run["id"])
                state = fr["state"]["type"]
                if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                    break
                await asyncio.sleep(1)
        assert state == "COMPLETED", fr["state"]
        print(
            f"{mode}: flow run COMPLETED {time.monotonic() - started:.1f}s after the install began"
        )

        pods = json.loads(
            cluster.kubectl(
                "get", "pods", "-n", POOL_NS, "-l", f"prefect.io/flow-run-id={run['id']}",
                "-o", "json",
            ).stdout
        )["items"]  # fmt: skip
        assert len(pods) == 1, pods
        (pod,) = pods
        jobs = cluster.kubectl(
            "get", "jobs", "-n", POOL_NS, "-l", f"prefect.io/flow-run-id={run['id']}", "-o", "name"
        ).stdout.split()  # fmt: skip
        job_name = pod["metadata"]["labels"]["job-name"]
        assert jobs == [f"job.batch/{job_name}"], jobs  # one submission, one Job
        assert pod["spec"]["nodeName"] == REAL_NODE_NAME
        # prefect-kubernetes 0.8's format: "<namespace>:<job name>"
        assert fr["infrastructure_pid"] == f"{POOL_NS}:{job_name}"
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"].endswith("prefecthq/prefect:3.9.1-python3.11"), status
        deadline = time.monotonic() + 60
        while "terminated" not in status["state"] and time.monotonic() < deadline:
            await asyncio.sleep(1)
            pod = json.loads(
                cluster.kubectl(
                    "get", "pod", "-n", POOL_NS, pod["metadata"]["name"], "-o", "json"
                ).stdout
            )
            (status,) = pod["status"]["containerStatuses"]
        assert status["state"]["terminated"]["exitCode"] == 0, status

        table = shell(f"kubectl get wp -n {POOL_NS}", env).splitlines()
        assert table[0].split()[:4] == ["NAME", "POOL", "TYPE", "READY"], table
        assert table[1].split()[:4] == ["demo-pool", "demo-pool", "kubernetes", "True"], table
        described = shell(f"kubectl describe wp demo-pool -n {POOL_NS}", env)
        assert "Ready" in described and "Events:" in described, described
        assert "PoolSynced" in described, described

"""Real container semantics, end to end through the operator installed by its chart.

One world for the module: the local control plane with only the real node (kubelet +
containerd + runc), a Prefect server, `helm install` of the chart (two operator replicas as
Pods of the image built from the Dockerfile, in-cluster configuration) and one WorkPool whose
flow runs execute in containers of the flow-run image (prefect 3.9.1 with the flows of
tools/images/flow-run/flows baked in). Each test reads the outcome where a user would: the
flow run's state in Prefect, and the pod as `kubectl` shows it. Nothing is simulated: the
kernel OOM-kills, containerd fails the pull, the kubelet sends SIGTERM and serves the logs.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import _MEASUREMENTS, Measure
from tests.e2e.harness import FINAL, eventually, fast_worker
from tests.infra import images
from tests.infra import prefect_setup as ps
from tests.infra.cluster import REAL_NODE_NAME, LocalCluster, wait_for
from tests.infra.prefect_server import start_prefect_server

pytestmark = [pytest.mark.e2e, pytest.mark.cluster, pytest.mark.prefect, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "prefect-job-operator"
OPERATOR_NS = "pjo-system"
RUNS_NS = "runs"
RELEASE = "pjo"
OPERATOR_SELECTOR = "app.kubernetes.io/name=prefect-job-operator"
# Every registry of the real node resolves to a closed loopback port (tests/infra/real_node.py):
# this pull fails at once and never leaves the machine.
MISSING_IMAGE = "registry.invalid/pjo/does-not-exist:1"


@dataclass
class World:
    cluster: LocalCluster
    api_url: str  # the Prefect server, from this host
    pool: str
    flow_run_image: str

    def kubectl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.cluster.kubectl(*args, check=check)

    def get_json(self, *args: str) -> Any:
        return json.loads(self.kubectl("get", *args, "-o", "json").stdout)

    def run_pods(self, run_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json(
            "pods", "-n", RUNS_NS, "-l", f"prefect.io/flow-run-id={run_id}"
        )["items"]
        return items

    def run_jobs(self, run_id: str) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json(
            "jobs", "-n", RUNS_NS, "-l", f"prefect.io/flow-run-id={run_id}"
        )["items"]
        return items

    def operator_pods(self) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = self.get_json(
            "pods", "-n", OPERATOR_NS, "-l", OPERATOR_SELECTOR
        )["items"]
        return items

    def lease_holder(self) -> str | None:
        status = self.get_json("workpool", "pool", "-n", RUNS_NS).get("status") or {}
        holder = status.get("leaseHolder")
        return str(holder) if holder else None

    def operator_logs(self) -> str:
        out = []
        for pod in self.operator_pods():
            name = pod["metadata"]["name"]
            logs = self.kubectl("logs", "-n", OPERATOR_NS, name, "--tail=60", check=False)
            out.append(f"--- {name} ---\n{logs.stdout}{logs.stderr}")
        return "\n".join(out)


def _build_images() -> tuple[Path, Path]:
    operator, flow_run = images.build("operator", "flow-run")
    return operator, flow_run


def _image_name(archive: Path) -> str:
    """The name the archive carries (a docker-archive's manifest.json RepoTags)."""
    listed = subprocess.run(
        ["tar", "-xOf", str(archive), "manifest.json"], check=True, capture_output=True
    ).stdout
    (tag,) = json.loads(listed)[0]["RepoTags"]
    return str(tag)


def _record(name: str, value: object) -> None:
    """`measure` for the module's fixture (the fixture itself is function-scoped)."""
    _MEASUREMENTS[name] = str(value)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    measure = _record
    work = tmp_path_factory.mktemp("realruns")
    started = time.monotonic()
    operator_image, flow_run_image = _build_images()
    measure("real node runs: images (build or cache)", f"{time.monotonic() - started:.1f}s")
    with contextlib.ExitStack() as stack:
        t0 = time.monotonic()
        cluster = LocalCluster(
            work / "k8s",
            kwok_nodes=0,
            real_node=True,
            node_images=(operator_image, flow_run_image),
        ).start()
        stack.callback(cluster.stop)
        measure("real node runs: cluster + node start", f"{time.monotonic() - t0:.1f}s")
        server = stack.enter_context(start_prefect_server(home=work / "prefect"))
        t0 = time.monotonic()
        # The chart's defaults (webhook included: on the real node the API server reaches it
        # at its pod's IP), two replicas: one holds the pool's Lease, the other stands by.
        cluster.helm(
            "install", RELEASE, str(CHART), "-n", OPERATOR_NS, "--create-namespace",
            "--wait", "--timeout", "300s", "--set", "replicas=2",
            "--set", f"prefect.apiUrl={cluster.pod_url(server.api_url)}",
        )  # fmt: skip
        measure("real node runs: helm install --wait", f"{time.monotonic() - t0:.1f}s")
        cluster.kubectl("create", "namespace", RUNS_NS)
        pool = ps.unique("real")
        body = {
            "apiVersion": "prefect-job-operator.dev/v1alpha1",
            "kind": "WorkPool",
            "metadata": {"name": "pool", "namespace": RUNS_NS},
            "spec": {"poolName": pool, "worker": fast_worker()},
        }
        cluster.kubectl("apply", "-f", "-", input=yaml.safe_dump(body))
        cluster.kubectl(
            "wait", "-n", RUNS_NS, "--for=condition=Ready", "workpool/pool", "--timeout=180s"
        )
        yield World(cluster, server.api_url, pool, _image_name(flow_run_image))


@pytest.fixture
async def http(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with ps.setup_client(world.api_url) as client:
        yield client


async def start_run(
    http: httpx.AsyncClient,
    world: World,
    entrypoint: str,
    parameters: dict[str, Any] | None = None,
    job_variables: dict[str, Any] | None = None,
) -> str:
    """A deployment of a baked flow (`behaviours.py:<flow>`) on the pool, and one run of it."""
    flow = await ps.create_flow(http, entrypoint.rsplit(":", 1)[1])
    dep = await ps.call(
        http,
        "POST",
        "/deployments/",
        {
            "name": ps.unique("dep"),
            "flow_id": flow["id"],
            "work_pool_name": world.pool,
            "entrypoint": entrypoint,
            "parameters": parameters or {},
            "job_variables": {"namespace": RUNS_NS, **(job_variables or {})},
            "pull_steps": ps.BAKED_FLOWS_PULL_STEPS,
        },
    )
    return str((await ps.create_flow_run(http, dep["id"]))["id"])


async def final_state(
    http: httpx.AsyncClient, world: World, run_id: str, timeout: float = 300
) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        run = await ps.read_flow_run(http, run_id)
        return run if run["state"]["type"] in FINAL else None

    try:
        return await eventually(f"flow run {run_id} to finish", probe, timeout, 0.5)
    except AssertionError:
        raise AssertionError(
            f"{await ps.read_flow_run(http, run_id)}\n{world.operator_logs()}"
        ) from None


async def pod_events(http: httpx.AsyncClient, run_id: str) -> list[dict[str, Any]]:
    """The operator's `prefect.kubernetes.pod.*` events about the run's pod, in Prefect."""
    body = {
        "filter": {
            "occurred": {"since": (datetime.now(UTC) - timedelta(hours=1)).isoformat()},
            "event": {"prefix": ["prefect.kubernetes.pod."]},
            "related": {"id": [f"prefect.flow-run.{run_id}"]},
        },
        "limit": 50,
    }
    events: list[dict[str, Any]] = (await ps.call(http, "POST", "/events/filter", body))["events"]
    return events


def finished_pod(world: World, run_id: str) -> dict[str, Any]:
    """The run's pod once its container has terminated (the kubelet reports it)."""

    def probe() -> dict[str, Any] | None:
        for pod in world.run_pods(run_id):
            for st in pod["status"].get("containerStatuses") or []:
                if "terminated" in st["state"]:
                    return pod
        return None

    result: dict[str, Any] = wait_for(f"the pod of {run_id} to terminate", probe, 60, 0.5)
    return result


def job_container(pod: dict[str, Any]) -> dict[str, Any]:
    (status,) = [s for s in pod["status"]["containerStatuses"] if s["name"] == "prefect-job"]
    return dict(status)


async def test_exit_code_3_crashes_the_run_naming_it(
    world: World, http: httpx.AsyncClient, measure: Measure
) -> None:
    # The container's own process exits 3 before Prefect starts (a broken command): only the
    # operator can tell Prefect. (A flow that exits 3 inside `prefect flow-run execute` is
    # reported by Prefect's runner in the container, which itself then exits 0.)
    t0 = time.monotonic()
    run_id = await start_run(
        http, world, "hello_flow.py:hello", job_variables={"command": "python -c 'exit(3)'"}
    )
    run = await final_state(http, world, run_id)
    measure("real node runs: exit code 3 -> Crashed", f"{time.monotonic() - t0:.1f}s")
    assert run["state"]["type"] == "CRASHED", run["state"]
    assert "container prefect-job exited with code 3" in run["state"]["message"], run["state"]
    pod = finished_pod(world, run_id)
    status = job_container(pod)
    assert pod["spec"]["nodeName"] == REAL_NODE_NAME
    assert status["state"]["terminated"]["exitCode"] == 3
    assert status["image"] == world.flow_run_image
    # kubectl describe shows the same, as a user reads it
    described = world.kubectl("describe", "pod", "-n", RUNS_NS, pod["metadata"]["name"]).stdout
    assert "Exit Code:    3" in described, described
    image = pod["spec"]["containers"][0]["image"]  # the template's short name
    assert world.flow_run_image.endswith(f"/{image}")
    assert re.search(rf"^\s+Image:\s+{re.escape(image)}$", described, re.M), described


async def test_over_its_memory_limit_the_kernel_oom_kills_the_container(
    world: World, http: httpx.AsyncClient, measure: Measure
) -> None:
    t0 = time.monotonic()
    run_id = await start_run(
        http,
        world,
        "behaviours.py:allocate",
        {"mib": 1024, "hold_seconds": 60},
        {"memory_limit": "320Mi", "memory_request": "320Mi"},
    )
    run = await final_state(http, world, run_id)
    measure("real node runs: OOMKilled -> Crashed", f"{time.monotonic() - t0:.1f}s")
    pod = finished_pod(world, run_id)
    status = job_container(pod)
    assert pod["spec"]["containers"][0]["resources"]["limits"]["memory"] == "320Mi"
    # The kernel killed the flow's process (the largest in the container's memory cgroup):
    # Prefect's runner in the container saw it die of SIGKILL and crashed the run, and
    # containerd saw the cgroup's OOM kill. The runner then exits 0, so the pod Succeeded:
    # it is the operator's pod event that tells Prefect the reason, OOMKilled.
    assert run["state"]["type"] == "CRASHED", run["state"]
    assert "status code: -9" in run["state"]["message"], run["state"]
    assert "SIGKILL" in run["state"]["message"], run["state"]
    assert status["state"]["terminated"]["reason"] == "OOMKilled", status

    async def oom_event() -> list[dict[str, Any]]:
        return [
            e
            for e in await pod_events(http, run_id)
            if e["resource"].get("kubernetes.diagnosis") == "OOMKilled"
        ]

    (event, *_) = await eventually("the pod event naming OOMKilled", oom_event, 60, 0.5)
    assert event["resource"]["prefect.resource.name"] == pod["metadata"]["name"]


async def test_a_missing_image_crashes_the_run_at_the_pod_watch_timeout(
    world: World, http: httpx.AsyncClient, measure: Measure
) -> None:
    timeout = 30
    run_id = await start_run(
        http,
        world,
        "hello_flow.py:hello",
        job_variables={"image": MISSING_IMAGE, "pod_watch_timeout_seconds": timeout},
    )

    def pulling() -> str | None:
        for pod in world.run_pods(run_id):
            for st in pod["status"].get("containerStatuses") or []:
                reason = st["state"].get("waiting", {}).get("reason")
                if reason in ("ErrImagePull", "ImagePullBackOff"):
                    return str(reason)
        return None

    seen = await asyncio.to_thread(wait_for, "ErrImagePull/ImagePullBackOff", pulling, 120, 0.5)
    t0 = time.monotonic()
    run = await final_state(http, world, run_id, timeout=180)
    measure("real node runs: image pull failure -> Crashed after", f"{time.monotonic() - t0:.1f}s")
    assert run["state"]["type"] == "CRASHED", run["state"]
    message = run["state"]["message"]
    assert f"Pod did not start within {timeout}s" in message, message
    assert "ErrImagePull" in message or "ImagePullBackOff" in message, message
    assert seen in ("ErrImagePull", "ImagePullBackOff")


async def test_cancelling_sends_sigterm_to_the_container_and_the_run_ends_cancelled(
    world: World, http: httpx.AsyncClient, measure: Measure
) -> None:
    # A container that is busy before Prefect starts in it (a long EXTRA_PIP_PACKAGES install,
    # say): nothing in it watches for cancellation, so the operator deletes the Job and the
    # kubelet stops the container with SIGTERM (SIGKILL only after the grace period).
    run_id = await start_run(
        http,
        world,
        "hello_flow.py:hello",
        job_variables={"command": "python -c 'import time; time.sleep(600)'"},
    )

    def running_pod() -> dict[str, Any] | None:
        for pod in world.run_pods(run_id):
            if pod["status"].get("phase") == "Running":
                return pod
        return None

    pod = await asyncio.to_thread(wait_for, "the run's container to run", running_pod, 180, 0.5)
    name = pod["metadata"]["name"]
    grace = pod["spec"]["terminationGracePeriodSeconds"]
    # Every update of the pod until it is gone: the kubelet reports how the container ended.
    watch = subprocess.Popen(
        [
            "kubectl", "get", "pod", name, "-n", RUNS_NS, "--watch", "--output-watch-events",
            "-o", "json",
        ],
        env=world.cluster.env,
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        t0 = time.monotonic()
        await ps.set_state(http, run_id, "CANCELLING")
        run = await final_state(http, world, run_id, timeout=120)
        assert run["state"]["type"] == "CANCELLED", run["state"]
        assert "prefect-job-operator" in run["state"]["message"], run["state"]

        def gone() -> bool:
            return not world.run_pods(run_id)

        await asyncio.to_thread(wait_for, "the pod to be deleted", gone, 2 * grace + 30, 0.5)
        stopped = time.monotonic() - t0
    finally:
        with contextlib.suppress(subprocess.TimeoutExpired):
            watch.wait(10)
        watch.kill()
        out, _ = watch.communicate()
    decoder = json.JSONDecoder()
    events, pos = [], 0
    while (pos := _skip_ws(out, pos)) < len(out):
        event, pos = decoder.raw_decode(out, pos)
        events.append(event)
    terminated = [
        st["state"]["terminated"]
        for e in events
        for st in e["object"]["status"].get("containerStatuses") or []
        if st["name"] == "prefect-job" and "terminated" in st["state"]
    ]
    measure("real node runs: cancel -> pod gone", f"{stopped:.1f}s (grace {grace}s)")
    assert terminated, [e["type"] for e in events]
    # 143 = 128 + SIGTERM: the process ended on the SIGTERM, before any SIGKILL (137).
    assert terminated[-1]["exitCode"] == 143, terminated[-1]
    assert stopped < grace, f"took {stopped:.1f}s: the SIGTERM did not stop it"


async def test_a_running_flow_cancelled_stops_in_its_container_and_ends_cancelled(
    world: World, http: httpx.AsyncClient, measure: Measure
) -> None:
    # With Prefect running in the container, its supervisor sees the cancellation and stops
    # the flow's process itself (the operator waits cancel_grace_seconds before it would
    # delete the Job).
    run_id = await start_run(http, world, "behaviours.py:sleep_for", {"seconds": 600})

    async def running() -> dict[str, Any] | None:
        run = await ps.read_flow_run(http, run_id)
        assert run["state"]["type"] not in FINAL, run["state"]
        return run if run["state"]["type"] == "RUNNING" else None

    await eventually("the flow to run in its container", running, 300, 0.5)
    t0 = time.monotonic()
    await ps.set_state(http, run_id, "CANCELLING")
    run = await final_state(http, world, run_id, timeout=120)
    measure("real node runs: running flow cancelled in", f"{time.monotonic() - t0:.1f}s")
    assert run["state"]["type"] == "CANCELLED", run["state"]
    pod = finished_pod(world, run_id)
    assert "terminated" in job_container(pod)["state"]
    assert len(world.run_jobs(run_id)) == 1


def _skip_ws(text: str, pos: int) -> int:
    while pos < len(text) and text[pos].isspace():
        pos += 1
    return pos


async def test_kubectl_logs_of_a_flow_run_pod_are_served_by_the_kubelet(
    world: World, http: httpx.AsyncClient
) -> None:
    run_id = await start_run(http, world, "hello_flow.py:hello", {"name": "the real node"})
    run = await final_state(http, world, run_id)
    assert run["state"]["type"] == "COMPLETED", run["state"]
    pod = finished_pod(world, run_id)
    assert job_container(pod)["state"]["terminated"]["exitCode"] == 0
    logs = world.kubectl("logs", "-n", RUNS_NS, pod["metadata"]["name"]).stdout
    assert "Hello from a Kubernetes Job dispatched by the real node!" in logs, logs
    assert run_id in logs or "Finished in state Completed" in logs, logs


async def test_deleting_the_leading_operator_pod_hands_over_without_a_duplicate_job(
    world: World, http: httpx.AsyncClient, measure: Measure
) -> None:
    leader = await asyncio.to_thread(wait_for, "a lease holder", world.lease_holder, 60, 0.5)
    pods = {p["metadata"]["name"] for p in world.operator_pods()}
    assert leader in pods, (leader, pods)
    before = [await start_run(http, world, "hello_flow.py:hello") for _ in range(3)]

    async def dispatched() -> bool:
        return all([(await ps.read_flow_run(http, r)).get("infrastructure_pid") for r in before])

    await eventually("the first runs to be dispatched", dispatched, 120, 0.5)
    t0 = time.monotonic()
    world.kubectl("delete", "pod", "-n", OPERATOR_NS, leader, "--wait=false")
    after = [await start_run(http, world, "hello_flow.py:hello") for _ in range(3)]

    def new_holder() -> str | None:
        holder = world.lease_holder()
        return holder if holder and holder != leader else None

    successor = await asyncio.to_thread(wait_for, "another lease holder", new_holder, 120, 0.5)
    measure(
        "real node runs: operator pod deleted -> new lease holder", f"{time.monotonic() - t0:.1f}s"
    )
    for run_id in before + after:
        run = await final_state(http, world, run_id)
        assert run["state"]["type"] == "COMPLETED", run["state"]
    jobs = {r: len(world.run_jobs(r)) for r in before + after}
    assert all(n == 1 for n in jobs.values()), jobs
    assert successor != leader

    # the Deployment replaced the deleted Pod: two replicas again, the old one gone
    def replaced() -> set[str] | None:
        names = {p["metadata"]["name"] for p in world.operator_pods()}
        return names if len(names) == 2 and leader not in names else None

    await asyncio.to_thread(wait_for, "the Deployment to replace the pod", replaced, 120, 0.5)

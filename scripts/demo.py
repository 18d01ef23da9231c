"""The main job, on embedded defaults: a local control plane with a real node (kubelet +
containerd), a Prefect server, `helm install` of the chart (the operator runs as a Pod from the
image built by `make image`), examples/workpool.yaml, and a flow run that really executes as a
Kubernetes Job in a container of the flow-run image.

    make demo            # or: .venv/bin/python scripts/demo.py [--keep]

Everything runs on loopback and is torn down at the end (``--keep`` leaves it running until
Ctrl-C so you can poke at it with the printed KUBECONFIG and PREFECT_API_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from tests.infra import images  # noqa: E402
from tests.infra import prefect_setup as ps  # noqa: E402
from tests.infra.cluster import LocalCluster  # noqa: E402
from tests.infra.prefect_server import start_prefect_server  # noqa: E402

CHART = REPO / "charts" / "prefect-job-operator"
OPERATOR_NS = "prefect-job-operator"


def build_images() -> list[Path]:
    """The operator and flow-run image archives (`make image`; cached)."""
    return list(images.build("operator", "flow-run"))


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


async def demo(work: Path, keep: bool) -> int:
    t0 = time.monotonic()
    say("Building (or reusing) the operator and flow-run images")
    images = build_images()
    say(
        "Starting the local Kubernetes control plane (etcd, apiserver, controller-manager, "
        "scheduler) and a real node (kubelet + containerd), images imported"
    )
    cluster = LocalCluster(work / "k8s", kwok_nodes=0, real_node=True, node_images=images).start()
    try:
        say("Starting a Prefect server (SQLite)")
        with start_prefect_server(home=work / "prefect") as server:
            pod_api_url = cluster.pod_url(server.api_url)  # where pods reach it
            say(f"helm install (chart defaults; prefect.apiUrl={pod_api_url})")
            cluster.kubectl("create", "namespace", OPERATOR_NS)
            print(
                cluster.helm(
                    "install", "pjo", str(CHART), "-n", OPERATOR_NS, "--wait", "--timeout",
                    "300s", "--set", f"prefect.apiUrl={pod_api_url}",
                ).stdout
            )  # fmt: skip
            print(cluster.kubectl("get", "pods", "-n", OPERATOR_NS, "-o", "wide").stdout)
            say("kubectl apply -f examples/workpool.yaml")
            print(cluster.kubectl("apply", "-f", str(REPO / "examples" / "workpool.yaml")).stdout)
            cluster.kubectl("wait", "--for=condition=Ready", "workpool/demo-pool", "--timeout=120s")
            print(cluster.kubectl("get", "wp").stdout)

            say("Creating a deployment of a real flow and one flow run")
            async with ps.setup_client(server.api_url) as http:
                flow = await ps.create_flow(http, "hello")
                dep = await ps.create_deployment(
                    http,
                    flow_id=flow["id"],
                    name="hello-k8s",
                    work_pool_name="demo-pool",
                    entrypoint="hello_flow.py:hello",
                    pull_steps=ps.BAKED_FLOWS_PULL_STEPS,
                )
                run = await ps.create_flow_run(http, dep["id"])
                print(f"flow run {run['name']} ({run['id']}) scheduled")
                say("Waiting for the operator to dispatch it as a Job and for it to complete")
                deadline = time.monotonic() + 300
                last = None
                while time.monotonic() < deadline:
                    fr = await ps.read_flow_run(http, run["id"])
                    state = f"{fr['state']['type']} ({fr['state']['name']})"
                    if state != last:
                        pid = fr.get("infrastructure_pid")
                        print(f"  {time.monotonic() - t0:6.1f}s  {state}  pid={pid}")
                        last = state
                    if fr["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED"):
                        break
                    await asyncio.sleep(0.5)
            selector = f"prefect.io/flow-run-id={run['id']}"
            # Prefect's state is Completed just before the container exits: wait for the pod.
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                phases = cluster.kubectl(
                    "get", "pods", "-A", "-l", selector, "-o", "jsonpath={.items[*].status.phase}"
                ).stdout.split()
                if phases and all(ph in ("Succeeded", "Failed") for ph in phases):
                    break
                await asyncio.sleep(0.5)
            print(cluster.kubectl("get", "jobs,pods", "-A", "-l", selector, "-o", "wide").stdout)
            pods = json.loads(
                cluster.kubectl("get", "pods", "-A", "-l", selector, "-o", "json").stdout
            )["items"]
            for pod in pods:
                ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
                say(f"kubectl logs -n {ns} {name} (tail)")
                logs = cluster.kubectl("logs", "-n", ns, name, check=False).stdout
                print("\n".join(logs.splitlines()[-8:]))
                for st in pod["status"].get("containerStatuses", []):
                    term = st["state"].get("terminated", {})
                    print(f"image {st['image']}  exit code {term.get('exitCode')}")
            say("kubectl get wp")
            print(cluster.kubectl("get", "wp").stdout)
            ok = fr["state"]["type"] == "COMPLETED"
            say(
                f"Flow run {fr['state']['type']} in {time.monotonic() - t0:.1f}s "
                f"since the demo started — {'OK' if ok else 'NOT OK'}"
            )
            if keep:
                print(
                    f"export KUBECONFIG={cluster.kubeconfig}\n"
                    f"export PREFECT_API_URL={server.api_url}\nCtrl-C to stop."
                )
                await asyncio.Event().wait()
            return 0 if ok else 1
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", action="store_true", help="keep everything running")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="pjo-demo-") as tmp:
        try:
            return asyncio.run(demo(Path(tmp), args.keep))
        except KeyboardInterrupt:
            return 130


if __name__ == "__main__":
    raise SystemExit(main())

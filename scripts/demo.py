"""The main job, on embedded defaults: a local control plane, a Prefect server, the operator,
examples/workpool.yaml, and a flow run that really executes as a Kubernetes Job.

    make demo            # or: .venv/bin/python scripts/demo.py [--keep]

Everything runs on loopback and is torn down at the end (``--keep`` leaves it running until
Ctrl-C so you can poke at it with the printed KUBECONFIG and PREFECT_API_URL).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "operator")]

from tests.infra import prefect_setup as ps  # noqa: E402
from tests.infra.cluster import PROCESS_NODE_LABEL, PROCESS_NODE_NAME, LocalCluster  # noqa: E402
from tests.infra.operator_process import OperatorProcess  # noqa: E402
from tests.infra.prefect_server import start_prefect_server  # noqa: E402

FLOW = textwrap.dedent(
    """
    from prefect import flow

    @flow(log_prints=True)
    def hello(name: str = "prefect-job-operator") -> str:
        print(f"Hello from a Kubernetes Job dispatched by {name}!")
        return "done"
    """
)


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


async def demo(work: Path, keep: bool) -> int:
    t0 = time.monotonic()
    flows = work / "flows"
    flows.mkdir(parents=True)
    (flows / "hello_flow.py").write_text(FLOW)

    say(
        "Starting the local Kubernetes control plane (etcd, apiserver, controller-manager, "
        "scheduler, a node that runs pods as processes)"
    )
    cluster = LocalCluster(work / "k8s", kwok_nodes=0, process_node=True).start()
    try:
        # The demo's only node runs pods for real: let ordinary pods land there.
        cluster.kubectl("taint", "nodes", PROCESS_NODE_NAME, f"{PROCESS_NODE_LABEL}-", check=False)
        say("Starting a Prefect server (SQLite)")
        with start_prefect_server(home=work / "prefect") as server:
            say("Installing the WorkPool CRD and starting the operator")
            crd = REPO / "crds" / "workpools.prefect-job-operator.dev.yaml"
            cluster.kubectl("apply", "-f", str(crd))
            cluster.kubectl(
                "wait",
                "--for=condition=Established",
                "crd/workpools.prefect-job-operator.dev",
                "--timeout=60s",
            )
            operator = OperatorProcess(
                kube_env=cluster.env,
                api_url=server.api_url,
                log_path=work / "operator.log",
                extra_env={"PJO_LOG_FORMAT": "plain"},
            ).start()
            try:
                say("kubectl apply -f examples/workpool.yaml")
                print(
                    cluster.kubectl("apply", "-f", str(REPO / "examples" / "workpool.yaml")).stdout
                )
                cluster.kubectl(
                    "wait", "--for=condition=Ready", "workpool/demo-pool", "--timeout=90s"
                )
                print(cluster.kubectl("get", "wp").stdout)

                say("Creating a deployment of a real flow and one flow run")
                async with ps.setup_client(server.api_url) as http:
                    flow = await ps.create_flow(http, "hello")
                    dep = await ps.call(
                        http,
                        "POST",
                        "/deployments/",
                        {
                            "name": "hello-k8s",
                            "flow_id": flow["id"],
                            "work_pool_name": "demo-pool",
                            "entrypoint": "hello_flow.py:hello",
                            "pull_steps": [
                                {
                                    "prefect.deployments.steps.set_working_directory": {
                                        "directory": str(flows)
                                    }
                                }
                            ],
                        },
                    )
                    run = await ps.create_flow_run(http, dep["id"])
                    print(f"flow run {run['name']} ({run['id']}) scheduled")
                    say("Waiting for the operator to dispatch it as a Job and for it to complete")
                    deadline = time.monotonic() + 180
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
                print(
                    cluster.kubectl("get", "jobs,pods", "-A", "-l", "prefect.io/flow-run-id").stdout
                )
                for log in sorted(cluster.pod_logs_dir.glob("*.log")):
                    print(f"--- {log.name} (tail) ---")
                    print("\n".join(log.read_text(errors="replace").splitlines()[-8:]))
                say("kubectl get wp")
                print(cluster.kubectl("get", "wp").stdout)
                print(
                    cluster.kubectl(
                        "get", "events", "--field-selector", "involvedObject.kind=WorkPool"
                    ).stdout
                )
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
                operator.stop()
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

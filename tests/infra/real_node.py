"""A real Kubernetes node for the local test cluster: kubelet + containerd + runc + CNI.

The kubelet (k8s.io/kubernetes v1.36.3, the control plane's pin) and
containerd 2.x come from ``tools/nodebin/build.sh``; runc, the CNI plugins and
iptables from Debian. Pods run in real containers with real cgroup limits,
each in its own network namespace on a bridge of this node.

Network (workplace rule: traffic only to loopback and into namespaces the
tests create). Every node takes a *slot* ``N`` (0-255, a host-wide lock file):

- bridge ``pjo-br<N>``, host side ``198.18.N.1/24``; pods get ``198.18.N.0/24``
  (RFC 2544 benchmarking range, never routed anywhere). Pods have no default
  route: only their bridge subnet and the service range are reachable.
- services ``198.19.0.0/24`` (the apiserver's ``--service-cluster-ip-range``;
  the ``kubernetes`` Service is ``198.19.0.1:443``).
- one NAT chain ``PJO-NODE-<N>`` (table nat, hooked from PREROUTING for packets
  entering the bridge): ``198.19.0.1:443`` -> the apiserver on
  ``127.0.0.1:<port>``, and ``198.18.N.1:<any port>`` -> ``127.0.0.1:<same
  port>``, so a pod reaches any loopback server of the tests (the Prefect
  server) at ``http://198.18.N.1:<port>`` (``route_localnet`` on the bridge
  only). No kube-proxy: its global chains would clash between the parallel
  clusters of parallel test sessions.
- ``net.ipv4.ip_forward`` is never touched (the bridge plugin runs with
  ``isGateway: false``; we assign the bridge address ourselves).

Host state created, and removed by :meth:`RealNode.stop` (also at exit, and
for a slot left behind by a killed run, when the slot is taken again): the
bridge, the NAT chain and its jump, cgroups ``<own memory cgroup>/pjo-node-<N>``
in every v1 hierarchy (so container memory stays accounted to the session
that started it), mounts under the node dir, ``/var/log/containers`` links
into it, and the kernel tunables the kubelet sets at start (restored).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import yaml

from tests.infra import pki as pkimod

SERVICE_CIDR = "198.19.0.0/24"
KUBERNETES_SERVICE_IP = "198.19.0.1"
POD_NET_PREFIX = "198.18"
SLOTS = 256
SLOT_DIR = Path("/run/pjo-node")
CNI_BIN_DIR = Path("/usr/lib/cni")
CGROUP_V1 = Path("/sys/fs/cgroup")
PAUSE_IMAGE = "pjo.local/pause:1"
BUSYBOX_IMAGE = "pjo.local/busybox:1"
NODE_LABEL = "pjo.test/real-node"
# The kubelet sets these at start (vm.overcommit_memory=1, kernel.panic_on_oops=1, ...);
# we put the host's values back at stop.
KERNEL_TUNABLES = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)


class NodeError(RuntimeError):
    """The real node could not start on this machine (never a skip)."""


@dataclass(frozen=True)
class NodeNet:
    """Addresses and names of one node slot."""

    slot: int

    @property
    def bridge(self) -> str:
        return f"pjo-br{self.slot}"

    @property
    def chain(self) -> str:
        return f"PJO-NODE-{self.slot}"

    @property
    def pod_cidr(self) -> str:
        return f"{POD_NET_PREFIX}.{self.slot}.0/24"

    @property
    def host_ip(self) -> str:
        """The node's address as pods see it: loopback servers are reachable here."""
        return f"{POD_NET_PREFIX}.{self.slot}.1"

    @property
    def cgroup_name(self) -> str:
        return f"pjo-node-{self.slot}"

    def nat_rules(self, apiserver_port: int) -> list[list[str]]:
        """iptables argument lists (after ``-t nat -A <chain>``), in order."""
        return [
            ["-d", KUBERNETES_SERVICE_IP, "-p", "tcp", "--dport", "443", "-j", "DNAT",
             "--to-destination", f"127.0.0.1:{apiserver_port}"],
            ["-d", self.host_ip, "-p", "tcp", "-j", "DNAT", "--to-destination", "127.0.0.1"],
        ]  # fmt: skip


def cni_config(net: NodeNet, data_dir: Path) -> dict[str, Any]:
    """The CNI network: a bridge, host-local IPAM, no default route, no forwarding."""
    return {
        "cniVersion": "1.0.0",
        "name": f"pjo-{net.slot}",
        "plugins": [
            {
                "type": "bridge",
                "bridge": net.bridge,
                "isGateway": False,
                "ipMasq": False,
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "dataDir": str(data_dir),
                    "ranges": [[{"subnet": net.pod_cidr, "gateway": net.host_ip}]],
                    "routes": [{"dst": SERVICE_CIDR, "gw": net.host_ip}],
                },
            },
            {"type": "loopback"},
        ],
    }


def containerd_config(d: Path, bin_dir: Path) -> str:
    """containerd 2.x config (version 3): everything under ``d``, CRI with our pause image."""
    cri_rt = "plugins.'io.containerd.cri.v1.runtime'"
    return f"""version = 3
root = "{d / "root"}"
state = "{d / "state"}"
disabled_plugins = [
  "io.containerd.nri.v1.nri",
  "io.containerd.snapshotter.v1.blockfile",
  "io.containerd.snapshotter.v1.erofs",
  "io.containerd.snapshotter.v1.native",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d / "containerd.sock"}"

[ttrpc]
  address = "{d / "containerd.sock.ttrpc"}"

[plugins.'io.containerd.internal.v1.opt']
  path = "{d / "opt"}"

[plugins.'io.containerd.cri.v1.images']
  snapshotter = "overlayfs"
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "{PAUSE_IMAGE}"
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = "{d / "certs.d"}"

[{cri_rt}]
  netns_mounts_under_state_dir = true
  # This machine kind's root lacks CAP_SYS_RESOURCE: oom_score_adj can only go up,
  # so the kubelet's -998 (sandbox) / -997 (Guaranteed) are clamped to containerd's own.
  restrict_oom_score_adj = true
  [{cri_rt}.containerd]
    default_runtime_name = "runc"
    [{cri_rt}.containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [{cri_rt}.containerd.runtimes.runc.options]
        BinaryName = "{os.environ.get("PJO_RUNC", shutil.which("runc") or "/usr/sbin/runc")}"
        Root = "{d / "runc"}"
        SystemdCgroup = false
  [{cri_rt}.cni]
    bin_dirs = ["{CNI_BIN_DIR}"]
    conf_dir = "{d / "cni"}"
    max_conf_num = 1

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
"""


# Every registry resolves to a closed loopback port: a pull fails at once
# (ErrImagePull) and never leaves the machine.
REGISTRY_HOSTS_TOML = 'server = "http://127.0.0.1:1"\n'


def kubelet_config(
    *, d: Path, sock: Path, address: str, port: int, healthz_port: int, cgroup_root: str, ca: Path,
    cert: Path, key: Path, max_pods: int = 50,
) -> dict[str, Any]:  # fmt: skip
    """KubeletConfiguration for a dev machine: cgroup v1 allowed, relaxed eviction."""
    endpoint = f"unix://{sock}"
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "failCgroupV1": False,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": cgroup_root,
        "cgroupsPerQOS": True,
        "enforceNodeAllocatable": ["pods"],
        "containerRuntimeEndpoint": endpoint,
        "imageServiceEndpoint": endpoint,
        "address": address,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": healthz_port,
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(ca)},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": str(cert),
        "tlsPrivateKeyFile": str(key),
        "registerNode": True,
        "failSwapOn": False,
        "resolvConf": str(d / "resolv.conf"),
        "podLogsDir": str(d / "pod-logs"),
        "maxPods": max_pods,
        "serializeImagePulls": False,
        # A shared dev disk and memory: never evict, never collect images.
        "evictionHard": {
            "memory.available": "1Mi",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
        },
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "localStorageCapacityIsolation": False,
        "protectKernelDefaults": False,
        "nodeStatusUpdateFrequency": "5s",
        "syncFrequency": "10s",
        "fileCheckFrequency": "0s",
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
    }


def own_memory_cgroup() -> str:
    """This process's memory cgroup (v1), e.g. ``/`` or ``/process_api/<id>``."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return path
    raise NodeError("no cgroup v1 memory controller: this node needs the v1 hierarchy")


def v1_hierarchies(unified: bool = False) -> list[Path]:
    """Mounted cgroup v1 hierarchies (``/sys/fs/cgroup/<name>``), plus the hybrid v2 one."""
    kinds = ("cgroup", "cgroup2") if unified else ("cgroup",)
    return [
        Path(line.split()[1])
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[2] in kinds
    ]


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below ``root``, deepest first (for unmounting)."""
    found = []
    prefix = str(root).rstrip("/") + "/"
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].replace("\\040", " ")
        if mp == str(root) or mp.startswith(prefix):
            found.append(mp)
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    if check and proc.returncode != 0:
        raise NodeError(f"{' '.join(argv)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _wait(what: str, probe: Callable[[], bool], timeout: float, alive: Callable[[], None]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive()
        with contextlib.suppress(Exception):
            if probe():
                return
        time.sleep(0.1)
    raise NodeError(f"timed out after {timeout:.0f}s waiting for {what}")


class RealNode:
    """kubelet + containerd for one LocalCluster; see the module docstring."""

    def __init__(
        self,
        *,
        workdir: Path,
        bin_dir: Path,
        name: str,
        kubeconfig: Path,
        pki: pkimod.Pki,
        apiserver_port: int,
        spawn: Callable[[str, list[str], dict[str, str]], subprocess.Popen[bytes]],
        images: tuple[Path, ...] = (),
    ) -> None:
        self.dir = workdir
        self.bin_dir = bin_dir
        self.name = name
        self.kubeconfig = kubeconfig
        self.pki = pki
        self.apiserver_port = apiserver_port
        self._spawn = spawn
        self.extra_images = images
        self.net: NodeNet | None = None
        self.port = 0
        self.timings: dict[str, float] = {}
        self._slot_lock: IO[str] | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._tunables: dict[str, str] = {}
        self._cgroups: list[Path] = []

    # -- public -------------------------------------------------------------------

    @property
    def sock(self) -> Path:
        return self.dir / "containerd.sock"

    @property
    def host_ip(self) -> str:
        assert self.net is not None
        return self.net.host_ip

    def ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run ``ctr`` against this node's containerd (namespace k8s.io)."""
        return _run(str(self.bin_dir / "ctr"), f"--address={self.sock}", "-n", "k8s.io", *args,
                    check=check)  # fmt: skip

    def import_image(self, archive: Path) -> None:
        """Import an OCI/Docker archive into the CRI namespace (unpacked for overlayfs)."""
        self.ctr("images", "import", "--snapshotter=overlayfs", str(archive))

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self._procs.items() if p.poll() is None}

    def start(self) -> None:
        """Slot, network, cgroups, containerd (+ images), kubelet. Raises NodeError."""
        t0 = time.monotonic()
        self._preflight()
        self.dir.mkdir(parents=True, exist_ok=True)
        self.net = self._take_slot()
        self._setup_network(self.net)
        self._setup_cgroups(self.net)
        self.timings["host-setup"] = time.monotonic() - t0

        t = time.monotonic()
        for sub in ("root", "state", "cni", "opt", "runc", "kubelet", "pod-logs", "ipam"):
            (self.dir / sub).mkdir(exist_ok=True)
        (self.dir / "cni" / "10-pjo.conflist").write_text(
            json.dumps(cni_config(self.net, self.dir / "ipam"), indent=2)
        )
        (self.dir / "containerd.toml").write_text(containerd_config(self.dir, self.bin_dir))
        (self.dir / "resolv.conf").write_text("")
        (self.dir / "certs.d" / "_default").mkdir(parents=True, exist_ok=True)
        (self.dir / "certs.d" / "_default" / "hosts.toml").write_text(REGISTRY_HOSTS_TOML)
        path = f"{self.bin_dir}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
        self._procs["containerd"] = self._spawn(
            "containerd",
            [str(self.bin_dir / "containerd"), f"--config={self.dir / 'containerd.toml'}"],
            {"PATH": path},
        )
        _wait("containerd socket", lambda: self.ctr("version").returncode == 0, 60, self._alive)
        self.timings["containerd"] = time.monotonic() - t

        t = time.monotonic()
        for archive in (self.bin_dir / "images" / "pause.tar",
                        self.bin_dir / "images" / "busybox.tar", *self.extra_images):  # fmt: skip
            self.import_image(archive)
        self.timings["images"] = time.monotonic() - t

        t = time.monotonic()
        self._tunables = self._read_tunables()
        self.port = _free_port()
        config = kubelet_config(
            d=self.dir, sock=self.sock, address=self.net.host_ip, port=self.port,
            healthz_port=_free_port(), cgroup_root=self._cgroup_root(self.net),
            ca=self.pki.ca_crt, cert=self.pki.serving_crt(self.name),
            key=self.pki.serving_key(self.name),
        )  # fmt: skip
        # The kubelet refuses a loopback node IP: the node's address is its bridge
        # address, where the apiserver reaches it for `kubectl logs`.
        pkimod.write_serving_cert(self.pki, self.name, ["127.0.0.1", self.net.host_ip])
        (self.dir / "kubelet.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
        self._procs["kubelet"] = self._spawn(
            "kubelet",
            [
                str(self.bin_dir / "kubelet"),
                f"--config={self.dir / 'kubelet.yaml'}",
                f"--kubeconfig={self.kubeconfig}",
                f"--root-dir={self.dir / 'kubelet'}",
                f"--cert-dir={self.dir / 'kubelet' / 'pki'}",
                f"--hostname-override={self.name}",
                f"--node-ip={self.net.host_ip}",
                f"--node-labels={NODE_LABEL}=true",
                "--v=1",
            ],
            {"PATH": path},
        )
        self.timings["kubelet-spawn"] = time.monotonic() - t

    def check_alive(self) -> None:
        self._alive()

    def stop(self) -> None:
        """Stop kubelet, every container, containerd; remove all host state. Safe to repeat."""
        kubelet = self._procs.pop("kubelet", None)
        if kubelet is not None:
            _terminate(kubelet)
        if self.sock.exists() and "containerd" in self._procs:
            self._remove_containers()
        containerd = self._procs.pop("containerd", None)
        if containerd is not None:
            _terminate(containerd)
        cleanup_dir(self.dir)
        if self.net is not None:
            self._teardown_network(self.net)
            self._teardown_cgroups(self.net)
        self._restore_tunables()
        if self._slot_lock is not None and self.net is not None:
            (SLOT_DIR / f"slot-{self.net.slot}.dir").unlink(missing_ok=True)
            self._slot_lock.close()
            self._slot_lock = None

    # -- steps ----------------------------------------------------------------------

    def _alive(self) -> None:
        for name, proc in self._procs.items():
            if proc.poll() is not None:
                raise NodeError(f"{name} exited with {proc.returncode}; see its log")

    def _preflight(self) -> None:
        if os.geteuid() != 0:
            raise NodeError("the real node needs root (cgroups, mounts, a bridge, iptables)")
        missing = [
            p for p in (self.bin_dir / "kubelet", self.bin_dir / "containerd",
                        CNI_BIN_DIR / "bridge", CNI_BIN_DIR / "host-local")
            if not p.exists()
        ] + [t for t in ("runc", "iptables", "ip") if shutil.which(t) is None]  # fmt: skip
        if missing:
            raise NodeError(f"missing {missing}: run tools/nodebin/build.sh (installs them)")

    def _take_slot(self) -> NodeNet:
        SLOT_DIR.mkdir(parents=True, exist_ok=True)
        for slot in range(SLOTS):
            fh = (SLOT_DIR / f"slot-{slot}.lock").open("w")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                continue
            net = NodeNet(slot)
            stale = SLOT_DIR / f"slot-{slot}.dir"
            if stale.exists():  # a killed run's leftovers: clean them before reuse
                cleanup_dir(Path(stale.read_text()))
                self._teardown_network(net)
                self._teardown_cgroups(net)
            stale.write_text(str(self.dir))
            self._slot_lock = fh
            return net
        raise NodeError(f"all {SLOTS} node slots under {SLOT_DIR} are taken")

    def _setup_network(self, net: NodeNet) -> None:
        br = net.bridge
        _run("ip", "link", "add", br, "type", "bridge")
        _run("ip", "addr", "add", f"{net.host_ip}/24", "dev", br)
        _run("ip", "link", "set", br, "up")
        Path(f"/proc/sys/net/ipv4/conf/{br}/route_localnet").write_text("1")
        _run("iptables", "-w", "-t", "nat", "-N", net.chain)
        for rule in net.nat_rules(self.apiserver_port):
            _run("iptables", "-w", "-t", "nat", "-A", net.chain, *rule)
        _run("iptables", "-w", "-t", "nat", "-I", "PREROUTING", "-i", br, "-j", net.chain)

    @staticmethod
    def _teardown_network(net: NodeNet) -> None:
        ipt = ("iptables", "-w", "-t", "nat")
        while _run(*ipt, "-D", "PREROUTING", "-i", net.bridge, "-j", net.chain,
                   check=False).returncode == 0:  # fmt: skip
            pass
        _run(*ipt, "-F", net.chain, check=False)
        _run(*ipt, "-X", net.chain, check=False)
        if Path(f"/sys/class/net/{net.bridge}").exists():
            _run("ip", "link", "del", net.bridge, check=False)

    @staticmethod
    def _cgroup_root(net: NodeNet) -> str:
        return f"{own_memory_cgroup().rstrip('/')}/{net.cgroup_name}"

    def _setup_cgroups(self, net: NodeNet) -> None:
        """``<own memory cgroup>/pjo-node-N`` in every v1 hierarchy (the kubelet's cgroupRoot)."""
        root = self._cgroup_root(net).lstrip("/")
        for h in v1_hierarchies():
            parts = Path(root).parts
            for i in range(1, len(parts)):  # parents we create are removed at stop
                if not h.joinpath(*parts[:i]).exists():
                    self._cgroups.append(h.joinpath(*parts[:i]))
            (h / root).mkdir(parents=True, exist_ok=True)
            if (h / "cpuset.cpus").exists():  # cpuset children start empty: inherit
                parts = Path(root).parts
                for i in range(1, len(parts) + 1):
                    d, parent = h.joinpath(*parts[:i]), h.joinpath(*parts[: i - 1])
                    for f in ("cpuset.cpus", "cpuset.mems"):
                        if not (d / f).read_text().strip():
                            (d / f).write_text((parent / f).read_text())

    def _teardown_cgroups(self, net: NodeNet) -> None:
        root = self._cgroup_root(net).lstrip("/")
        # The kubelet's libcontainer also mirrors the tree into the hybrid v2 mount.
        for h in v1_hierarchies(unified=True):
            top = h / root
            if not top.is_dir():
                continue
            for d in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
                _rmdir_cgroup(d)
            _rmdir_cgroup(top)
        for d in sorted(self._cgroups, key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):  # only if empty: another node may share it
                d.rmdir()
        self._cgroups = []

    def _remove_containers(self) -> None:
        """Kill every task (SIGKILL), delete tasks and containers: the shims then exit."""
        tasks = self.ctr("tasks", "ls", "-q", check=False).stdout.split()
        for task in tasks:
            self.ctr("tasks", "kill", "-a", "-s", "SIGKILL", task, check=False)
        for task in tasks:
            for _ in range(50):
                if self.ctr("tasks", "delete", "-f", task, check=False).returncode == 0:
                    break
                time.sleep(0.1)
        for c in self.ctr("containers", "ls", "-q", check=False).stdout.split():
            self.ctr("containers", "delete", c, check=False)

    @staticmethod
    def _read_tunables() -> dict[str, str]:
        out = {}
        for t in KERNEL_TUNABLES:
            with contextlib.suppress(OSError):
                out[t] = (Path("/proc/sys") / t).read_text().strip()
        return out

    def _restore_tunables(self) -> None:
        for t, value in self._tunables.items():
            with contextlib.suppress(OSError):
                p = Path("/proc/sys") / t
                if p.read_text().strip() != value:
                    p.write_text(value)
        self._tunables = {}


def cleanup_dir(d: Path) -> None:
    """Kill processes that name ``d`` (shims), unmount everything under it, drop log links."""
    if not str(d).startswith("/") or str(d) == "/":
        return
    for pid in _pids_mentioning(str(d)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    for mp in mounts_under(d):
        _run("umount", "-l", mp, check=False)
    logs = Path("/var/log/containers")
    if logs.is_dir():
        for link in logs.iterdir():
            with contextlib.suppress(OSError):
                if link.is_symlink() and os.readlink(link).startswith(str(d) + "/"):
                    link.unlink()


def _pids_mentioning(text: str) -> Iterator[int]:
    """Processes whose command line contains ``text`` (our unique node dir), not us."""
    needle = text.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        with contextlib.suppress(OSError):
            if needle in (entry / "cmdline").read_bytes():
                yield int(entry.name)


def _rmdir_cgroup(d: Path) -> None:
    """Remove a cgroup dir, killing any task still in it first."""
    for _ in range(50):
        with contextlib.suppress(OSError):
            for pid in (d / "cgroup.procs").read_text().split():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)


def _terminate(proc: subprocess.Popen[bytes], grace: float = 10) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=5)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])

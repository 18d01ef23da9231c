"""The real node's generated configuration and image archives (pure logic)."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import tarfile
import tomllib
from pathlib import Path
from types import ModuleType

from tests.infra import real_node as rn

REPO = Path(__file__).resolve().parents[2]


def _mkimage() -> ModuleType:
    spec = importlib.util.spec_from_file_location("mkimage", REPO / "tools/nodebin/mkimage.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_slot_addresses_stay_in_the_benchmarking_range() -> None:
    net = rn.NodeNet(7)
    assert (net.bridge, net.chain, net.pod_cidr, net.host_ip) == (
        "pjo-br7",
        "PJO-NODE-7",
        "198.18.7.0/24",
        "198.18.7.1",
    )
    assert len(rn.NodeNet(255).bridge) <= 15  # IFNAMSIZ - 1
    rules = net.nat_rules(6443)
    assert rules[0][:2] == ["-d", rn.KUBERNETES_SERVICE_IP]
    assert rules[0][-1] == "127.0.0.1:6443"
    # Every NAT target is loopback: nothing leaves the machine.
    assert all(r[r.index("--to-destination") + 1].startswith("127.0.0.1") for r in rules)


def test_cni_network_has_no_default_route_and_never_forwards(tmp_path: Path) -> None:
    conf = rn.cni_config(rn.NodeNet(3), tmp_path)
    bridge = conf["plugins"][0]
    assert bridge["isGateway"] is False and bridge["ipMasq"] is False
    ipam = bridge["ipam"]
    assert ipam["ranges"] == [[{"subnet": "198.18.3.0/24", "gateway": "198.18.3.1"}]]
    assert ipam["routes"] == [{"dst": rn.SERVICE_CIDR, "gw": "198.18.3.1"}]
    assert ipam["dataDir"] == str(tmp_path)


def test_containerd_config_keeps_everything_in_its_dir(tmp_path: Path) -> None:
    conf = tomllib.loads(rn.containerd_config(tmp_path, tmp_path / "bin"))
    assert conf["version"] == 3
    assert conf["root"].startswith(str(tmp_path)) and conf["state"].startswith(str(tmp_path))
    assert conf["grpc"]["address"] == str(tmp_path / "containerd.sock")
    plugins = conf["plugins"]
    assert plugins["io.containerd.cri.v1.images"]["pinned_images"]["sandbox"] == rn.PAUSE_IMAGE
    runtime = plugins["io.containerd.cri.v1.runtime"]
    assert runtime["netns_mounts_under_state_dir"] is True
    assert runtime["restrict_oom_score_adj"] is True  # no CAP_SYS_RESOURCE here
    assert runtime["cni"]["conf_dir"] == str(tmp_path / "cni")
    runc = runtime["containerd"]["runtimes"]["runc"]["options"]
    assert runc["Root"] == str(tmp_path / "runc") and runc["SystemdCgroup"] is False
    assert "io.containerd.nri.v1.nri" in conf["disabled_plugins"]  # NRI's socket is host-global
    registry = plugins["io.containerd.cri.v1.images"]["registry"]
    assert registry["config_path"] == str(tmp_path / "certs.d")
    assert tomllib.loads(rn.REGISTRY_HOSTS_TOML)["server"].startswith("http://127.0.0.1:")


def test_kubelet_config_allows_cgroup_v1_and_binds_the_node_address(tmp_path: Path) -> None:
    conf = rn.kubelet_config(
        d=tmp_path, sock=tmp_path / "c.sock", address="198.18.0.1", port=1, healthz_port=2,
        cgroup_root="/x/pjo-node-0",
        ca=tmp_path / "ca", cert=tmp_path / "crt", key=tmp_path / "key",
    )  # fmt: skip
    assert conf["failCgroupV1"] is False and conf["cgroupDriver"] == "cgroupfs"
    assert conf["address"] == "198.18.0.1" and conf["healthzBindAddress"] == "127.0.0.1"
    assert conf["readOnlyPort"] == 0 and conf["authentication"]["anonymous"]["enabled"] is False
    assert conf["containerRuntimeEndpoint"] == f"unix://{tmp_path / 'c.sock'}"
    assert conf["failSwapOn"] is False and conf["cgroupRoot"] == "/x/pjo-node-0"


def test_mounts_under_lists_deepest_first(tmp_path: Path) -> None:
    # /proc/self/mountinfo always has "/" mounted; nothing is under a fresh tmp dir.
    assert rn.mounts_under(tmp_path) == []
    assert "/" not in rn.mounts_under(tmp_path)


def test_mkimage_writes_a_valid_oci_layout(tmp_path: Path) -> None:
    mk = _mkimage()
    binary = tmp_path / "pause"
    binary.write_bytes(b"\x7fELF-not-really")
    layer = mk.layer_tar([(str(binary), "/pause")], [("/bin/sh", "busybox")])
    archive = mk.image_archive("pjo.local/pause:1", layer, ["/pause"], [])
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        files = {m.name: tar.extractfile(m).read() for m in tar if m.isfile()}  # type: ignore[union-attr]
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    for name, data in files.items():  # every blob is content-addressed correctly
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    entry = json.loads(files["index.json"])["manifests"][0]
    assert entry["annotations"]["io.containerd.image.name"] == "pjo.local/pause:1"
    manifest = json.loads(files[f"blobs/sha256/{entry['digest'].split(':')[1]}"])
    config = json.loads(files[f"blobs/sha256/{manifest['config']['digest'].split(':')[1]}"])
    assert config["config"]["Entrypoint"] == ["/pause"]
    assert config["rootfs"]["diff_ids"] == ["sha256:" + hashlib.sha256(layer).hexdigest()]
    with tarfile.open(fileobj=io.BytesIO(layer)) as tar:
        members = {m.name: m for m in tar}
    assert members["pause"].mode == 0o755 and members["bin/sh"].linkname == "busybox"
    assert members["tmp"].mode == 0o1777
    # Deterministic: the same inputs give the same bytes (a stable cache and digest).
    assert mk.image_archive("pjo.local/pause:1", layer, ["/pause"], []) == archive

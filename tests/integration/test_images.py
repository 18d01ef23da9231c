"""The images `make image` builds (tools/images/build.sh), run as a container runtime runs them.

Each docker-archive is unpacked as an OCI bundle (skopeo + umoci: rootfs and config.json from
the image's configuration) and run with runc: the operator image as its user 10001 on a
read-only root filesystem (what the chart's securityContext asks); the flow-run image running
a real flow run of the demo's flow against a real Prefect server, with the arguments a Job
gives it (`prefect flow-run execute`). Builds are cached by their inputs; a cold build takes
minutes, hence `slow`.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
import time
import tomllib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Measure
from tests.infra import prefect_setup as ps
from tests.infra.prefect_server import PrefectServer, start_prefect_server

pytestmark = [pytest.mark.slow, pytest.mark.prefect]

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
(PREFECT_PIN,) = [
    r for r in PYPROJECT["project"]["optional-dependencies"]["test"] if r.startswith("prefect==")
]
PREFECT_VERSION = PREFECT_PIN.split("==")[1]


def sh(
    *argv: str | Path, timeout: float = 600, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if check:
        assert proc.returncode == 0, f"{argv}: exit {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@dataclass
class Image:
    archive: Path
    tags: list[str]
    config: dict[str, Any]  # the image configuration's "config": User, Entrypoint, Cmd, Env…
    bundle: Path  # an OCI runtime bundle unpacked from the archive

    def run(
        self,
        args: list[str] | None = None,
        *,
        command: list[str] | None = None,
        readonly: bool = False,
        host_network: bool = False,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run the image once with runc, as a kubelet would a container with this `command`
        and `args` (`command` replaces the Entrypoint, `args` the Cmd), as the image's User,
        with its Env and WorkingDir. The container is deleted afterwards."""
        config = json.loads((self.bundle / "config.image.json").read_text())
        process = config["process"]
        process["terminal"] = False
        if command is not None:
            process["args"] = [*command, *(args or [])]
        elif args is not None:
            process["args"] = [*(self.config.get("Entrypoint") or []), *args]
        process["env"] += [f"{k}={v}" for k, v in (env or {}).items()]
        config["root"]["readonly"] = readonly
        if host_network:  # reach a server on this host's loopback, as a pod reaches its node
            namespaces = config["linux"]["namespaces"]
            config["linux"]["namespaces"] = [ns for ns in namespaces if ns["type"] != "network"]
        (self.bundle / "config.json").write_text(json.dumps(config))
        name = f"pjo-test-{uuid.uuid4().hex[:12]}"
        try:
            return sh("runc", "run", "--bundle", self.bundle, name, timeout=timeout, check=False)
        finally:
            sh("runc", "delete", "--force", name, check=False)


def read_archive(archive: Path) -> tuple[list[str], dict[str, Any]]:
    """A docker-archive's tags and image configuration, read straight from the tarball."""
    with tarfile.open(archive) as tar:
        (manifest,) = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
        config = json.load(tar.extractfile(manifest["Config"]))  # type: ignore[arg-type]
    return manifest["RepoTags"], config["config"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Image]:
    started = time.monotonic()
    proc = sh(ROOT / "tools" / "images" / "build.sh", "operator", "flow-run", timeout=3600)
    print(f"images built or reused from cache in {time.monotonic() - started:.1f}s")
    out = {}
    for name, path in zip(("operator", "flow-run"), proc.stdout.split(), strict=True):
        archive = Path(path)
        tags, config = read_archive(archive)
        work = tmp_path_factory.mktemp(name)
        sh("skopeo", "copy", "--quiet", f"docker-archive:{archive}", f"oci:{work / 'oci'}:img")
        # `raw` unpack: the rootfs without umoci's mtree bookkeeping (minutes on a busy host),
        # then the runtime config.json umoci derives from the image configuration.
        (work / "bundle").mkdir()
        image_ref = f"{work / 'oci'}:img"
        sh("umoci", "raw", "unpack", "--image", image_ref, work / "bundle" / "rootfs")
        sh(
            "umoci",
            "raw",
            "runtime-config",
            "--image",
            image_ref,
            "--rootfs",
            work / "bundle" / "rootfs",
            work / "bundle" / "config.json",
        )
        shutil.copy(work / "bundle" / "config.json", work / "bundle" / "config.image.json")
        out[name] = Image(archive, tags, config, work / "bundle")
    return out


@pytest.fixture(scope="module")
def server() -> Iterator[PrefectServer]:
    with start_prefect_server() as srv:
        yield srv


def chart_default_image() -> str:
    import yaml

    chart = ROOT / "charts" / "prefect-job-operator"
    values = yaml.safe_load((chart / "values.yaml").read_text())
    app_version = yaml.safe_load((chart / "Chart.yaml").read_text())["appVersion"]
    repository = values["image"]["repository"]
    if "/" not in repository:  # how containerd and kind name a short reference
        repository = f"docker.io/library/{repository}"
    return f"{repository}:{app_version}"


def test_the_operator_image_is_what_the_chart_runs(images: dict[str, Image]) -> None:
    image = images["operator"]
    assert chart_default_image() in image.tags  # `helm install` with defaults finds it
    assert image.config["User"] == "10001:10001"
    assert image.config["Entrypoint"] == ["prefect-job-operator"]
    assert image.config["Cmd"] == ["run"]
    assert "8080/tcp" in image.config["ExposedPorts"]


def test_the_operator_runs_as_10001_on_a_read_only_root(
    images: dict[str, Image], measure: Measure
) -> None:
    image = images["operator"]
    started = time.monotonic()
    proc = image.run(["--version"], readonly=True)
    measure("operator --version in a container (s)", round(time.monotonic() - started, 2))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"prefect-job-operator {VERSION}"
    # The image holds this tree's operator: its generated CRD is the committed one.
    proc = image.run(["crds"], readonly=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == (ROOT / "crds" / "workpools.prefect-job-operator.dev.yaml").read_text()
    # Everything `run` imports is there (the locked set is complete), as uid 10001, with no
    # bytecode written and nothing writable on /.
    probe = (
        "import os, prefect_job_operator.runner, prefect_job_operator.handlers\n"
        "try:\n    open('/opt/venv/probe', 'w')\nexcept OSError as e:\n    print(e.strerror)\n"
        "print(os.getuid(), os.getgid())\n"
    )
    proc = image.run(command=["python", "-c", probe], readonly=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n")[:2] == ["Read-only file system", "10001 10001"]
    # No pip, no compiler, no source tree crossed into the runtime stage.
    rootfs = image.bundle / "rootfs"
    assert not (rootfs / "opt" / "venv" / "bin" / "pip").exists()
    assert not (rootfs / "src").exists()
    assert not list((rootfs / "usr" / "bin").glob("gcc*"))


def test_the_flow_run_image_carries_the_tests_prefect(images: dict[str, Image]) -> None:
    image = images["flow-run"]
    assert f"docker.io/prefecthq/prefect:{PREFECT_VERSION}-python3.11" in image.tags
    assert image.config["Entrypoint"] == ["/usr/bin/tini", "-g", "--", "/opt/prefect/entrypoint.sh"]
    assert image.config["WorkingDir"] == "/opt/prefect"
    proc = image.run(["prefect", "version"])
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"^Version:\s+{re.escape(PREFECT_VERSION)}$", proc.stdout, re.M), proc.stdout


async def test_the_flow_run_image_runs_the_demo_flow_to_completion(
    images: dict[str, Image], server: PrefectServer, measure: Measure
) -> None:
    """What a Job's container does: `prefect flow-run execute` with the run's id, loading
    the demo's flow baked into the image (a set_working_directory pull step), reporting to
    the server."""
    image = images["flow-run"]
    async with ps.setup_client(server.api_url) as http:
        flow = await ps.create_flow(http, "hello")
        dep = await ps.create_deployment(
            http,
            flow_id=flow["id"],
            name=ps.unique("hello-image"),
            work_pool_name=None,
            entrypoint="hello_flow.py:hello",
            pull_steps=ps.BAKED_FLOWS_PULL_STEPS,
        )
        run = await ps.create_flow_run(http, dep["id"])
        started = time.monotonic()
        proc = image.run(
            ["prefect", "flow-run", "execute"],
            host_network=True,
            env={"PREFECT_API_URL": server.api_url, "PREFECT__FLOW_RUN_ID": run["id"]},
        )
        measure("flow run in the flow-run image (s)", round(time.monotonic() - started, 1))
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "Hello from a Kubernetes Job dispatched by prefect-job-operator!" in (
            proc.stdout + proc.stderr
        )
        final = await ps.read_flow_run(http, run["id"])
        assert final["state"]["type"] == "COMPLETED", final["state"]

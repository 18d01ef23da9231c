"""The ``--cluster=kind`` backend: a kind cluster via pytest-kind (needs Docker).

Test infrastructure only, for machines with Docker (CI runners, laptops). It
offers the same surface as LocalCluster (``kubeconfig``, ``env``,
``kubectl``, ``helm``) but real kubelets: the ``pjo.test/*`` kwok
annotations have no effect there, so tests that need them must check
``isinstance(cluster, LocalCluster)``.
Not runnable on the development machine (no Docker). ``PJO_KIND_LOAD_IMAGES`` (Docker
image names, space-separated) are loaded into the cluster after it starts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from tests.infra.cluster import _run, _venv_tool


class KindBackend:
    def __init__(self, config_file: Path, name: str = "pjo-test", keep: bool = False) -> None:
        self.config_file = config_file
        self.name = name
        self.keep = keep
        self._cluster: object | None = None

    def start(self) -> KindBackend:
        from pytest_kind import KindCluster  # type: ignore[import-untyped]

        cluster = KindCluster(self.name)
        cluster.create(config_file=self.config_file)
        self._cluster = cluster
        # Images built on the runner (CI: the operator image from the Dockerfile, tagged as
        # the chart's default), so pods find them without a registry.
        for image in os.environ.get("PJO_KIND_LOAD_IMAGES", "").split():
            cluster.load_docker_image(image)
        return self

    def stop(self) -> None:
        if self._cluster is not None and not self.keep:
            self._cluster.delete()  # type: ignore[attr-defined]
        self._cluster = None

    @property
    def kubeconfig(self) -> Path:
        assert self._cluster is not None, "start() first"
        return Path(self._cluster.kubeconfig_path).resolve()  # type: ignore[attr-defined]

    @property
    def env(self) -> dict[str, str]:
        path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
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
        webhook_without_route: str | None = None,  # kind routes Services
    ) -> subprocess.CompletedProcess[str]:
        helm = shutil.which("helm", path=self.env["PATH"]) or "helm"
        return _run(
            [helm, f"--kubeconfig={self.kubeconfig}", *args], self.env, input, check, timeout
        )

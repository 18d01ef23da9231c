"""Docs as tests: run every shell command the documents tell users to run, as written.

For each document with runnable blocks (found by tests/infra/docs.py: every Markdown file git
tracks, and the chart's NOTES.txt as rendered by `helm install`), a fresh local control plane
(a new user's cluster: no CRD, no release), then each unmarked block's commands in order, one
`bash -o pipefail -u -c` each, from the repository root. Only the documented environment
variables are set: PREFECT_API_URL (the local Prefect server) and PREFECT_API_KEY (a test
key). Each command must exit 0; a command that shows its output's header as a trailing
comment (`kubectl get wp   # NAME  POOL  ...`) must print that header.

Each cluster has the real node (kubelet + containerd) with the operator image built from the
Dockerfile imported under the chart's default name, so `helm install` runs the operator as a
Pod, its admission webhook admits the documented WorkPools, and `kubectl logs` is served by the
kubelet. PREFECT_API_URL is the Prefect server as pods reach it (the node's bridge address).
"""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.infra import docs, images
from tests.infra.cluster import LocalCluster
from tests.infra.prefect_server import PrefectServer

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TEST_API_KEY = "pnu_docs-test-key-not-a-real-one"
# NOTES.txt is read after the install its own document (the chart README) shows.
NOTES_INSTALLS = {
    "cluster-wide": (
        "helm install prefect-job-operator charts/prefect-job-operator "
        "--namespace prefect-job-operator --create-namespace "
        "--set prefect.apiUrl=$PREFECT_API_URL"
    ),
    "namespaced": (
        "kubectl create namespace team-a && "
        "helm install prefect-job-operator charts/prefect-job-operator "
        "--namespace prefect-job-operator --create-namespace "
        "--set rbac.mode=namespaced --set 'watchNamespaces={team-a}' "
        "--set prefect.apiUrl=$PREFECT_API_URL"
    ),
}


# The WorkPools a document's path must bring to Ready (the operator Pod, its webhook and the
# Prefect server all really in play): the README's quick start and both NOTES installs.
READY_AFTER = {"README.md": [("default", "demo-pool")]}
NOTES_POOLS = {"cluster-wide": ("default", "my-pool"), "namespaced": ("team-a", "my-pool")}


def wait_ready(cluster: LocalCluster, namespace: str, name: str, timeout: float = 120) -> None:
    """The WorkPool's Ready condition turns True (the operator Pod reached Prefect)."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        last = cluster.kubectl(
            "get", "wp", name, "-n", namespace, "-o",
            'jsonpath={.status.conditions[?(@.type=="Ready")].status}',
            check=False,
        ).stdout  # fmt: skip
        if last == "True":
            return
        time.sleep(1)
    described = cluster.kubectl("describe", "wp", name, "-n", namespace, check=False).stdout
    raise AssertionError(f"WorkPool {namespace}/{name} not Ready in {timeout}s:\n{described}")


def runnable_documents() -> list[str]:
    return [
        docs.relative(path)
        for path in docs.documents()
        if any(b.skip_reason is None and b.commands for b in docs.markdown_blocks(path))
    ]


@pytest.fixture(scope="module")
def operator_image() -> Path:
    """The operator image archive `make image` builds (cached by its inputs)."""
    (archive,) = images.build("operator")
    return archive


@pytest.fixture
def fresh_cluster(tmp_path: Path, operator_image: Path) -> Iterator[LocalCluster]:
    """A new user's cluster: one real node, nothing installed, nothing to pull."""
    cluster = LocalCluster(
        tmp_path / "k8s",
        kwok_nodes=0,
        real_node=True,
        node_images=(operator_image,),
    ).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def shell_env(
    fresh_cluster: LocalCluster, prefect_server: PrefectServer, tmp_path: Path
) -> dict[str, str]:
    """The cluster's PATH and KUBECONFIG, the documented variables, and nothing else of ours."""
    env = {k: v for k, v in fresh_cluster.env.items() if not k.startswith(("PJO_", "PREFECT_"))}
    env.update(
        PREFECT_API_URL=fresh_cluster.pod_url(prefect_server.api_url),
        PREFECT_API_KEY=TEST_API_KEY,
        # helm's own cache and repositories, away from the user's.
        HELM_CACHE_HOME=str(tmp_path / "helm-cache"),
        HELM_CONFIG_HOME=str(tmp_path / "helm-config"),
        HELM_DATA_HOME=str(tmp_path / "helm-data"),
    )
    return env


def run(command: str, env: dict[str, str], where: str) -> subprocess.CompletedProcess[str]:
    """One documented command, as written; fail with where it is documented and what it said."""
    started = time.monotonic()
    proc = docs.run_command(command, env, timeout=300)
    elapsed = time.monotonic() - started
    print(f"{where}: {command!r} -> {proc.returncode} in {elapsed:.1f}s")
    assert proc.returncode == 0, (
        f"{where}: `{command}` exited {proc.returncode}\n"
        f"stdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    )
    header = docs.expected_header(command)
    if header is not None:
        first = proc.stdout.splitlines()[0] if proc.stdout else ""
        assert re.split(r"\s{2,}", first.strip()) == header, (
            f"{where}: `{command}` printed the header {first!r}, the document shows {header}"
        )
    return proc


@pytest.mark.parametrize("document", runnable_documents())
def test_every_runnable_block_of_the_document_works_as_written(
    document: str, shell_env: dict[str, str], fresh_cluster: LocalCluster
) -> None:
    blocks = docs.markdown_blocks(docs.ROOT / document)
    ran = 0
    for block in blocks:
        if block.skip_reason is not None:
            print(f"{block.where}: skipped ({block.skip_reason})")
            continue
        for command in block.commands:
            run(command, shell_env, block.where)
            ran += 1
    assert ran > 0
    for namespace, name in READY_AFTER.get(document, []):
        wait_ready(fresh_cluster, namespace, name)
    marked = sum(b.skip_reason is not None for b in blocks)
    print(f"{document}: {ran} commands ran, {marked} blocks marked")


@pytest.mark.parametrize("install", sorted(NOTES_INSTALLS))
def test_every_command_of_the_chart_notes_works_as_rendered(
    install: str, shell_env: dict[str, str], fresh_cluster: LocalCluster
) -> None:
    notes = run(NOTES_INSTALLS[install], shell_env, f"NOTES ({install} install)").stdout
    sources = docs.notes_blocks()
    patterns = [(block, docs.notes_pattern(block.text)) for block in sources]
    seen: set[int] = set()
    rendered = docs.rendered_notes_commands(notes)
    assert rendered, notes
    for command in rendered:
        matches = [block for block, pattern in patterns if pattern.match(command)]
        assert len(matches) == 1, f"{command!r} matches {len(matches)} NOTES.txt lines:\n{notes}"
        (block,) = matches
        seen.add(block.line)
        if block.skip_reason is None:
            run(command, shell_env, f"{block.where} rendered as {command!r}")
    unseen = [b.where for b in sources if b.line not in seen]
    assert unseen == [], f"NOTES.txt lines never rendered: {unseen}"
    wait_ready(fresh_cluster, *NOTES_POOLS[install])
